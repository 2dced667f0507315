"""A sweep's results as tables: ranked, judged against the baseline by the tie rule, shown in
120 columns on the terminal and written whole to .csv and .md."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.common.atomic import atomic_path, write_text
from pipeline.scoring import compare


def ranked_table(rows: list[dict], folds: list[dict], spec: dict, baseline: tuple,
                 outlier: np.ndarray) -> pd.DataFrame:
    """The trials ranked by rank_by, with the fold-paired ties with the best and each one's
    house-level verdict against the baseline (the blend's errors when ranked by the blend)."""
    rank_by = spec["rank_by"]
    shown = [{k: (show_value(v) if k in spec["space"] else v) for k, v in row.items()} for row in rows]
    table = pd.DataFrame(shown)
    order = table.sort_values([rank_by, "config"], kind="stable").index
    table = table.loc[order].reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    if rank_by in folds[0]:
        mark_ties(table, [folds[i][rank_by] for i in order])
    errors = "blend_house_squared_error" if rank_by.startswith("blend_") else "house_squared_error"
    base_errors = np.array(baseline[1].get(errors, []))
    table["vs_baseline"] = [
        compare.decide(compare.houses(np.array(folds[i][errors]), base_errors, outlier))
        if errors in folds[i] and len(base_errors) else "" for i in order]
    return table


def mark_ties(table: pd.DataFrame, folds: list[list[float]]) -> None:
    """Add how far each config is behind the best, and whether that is a tie by the project's
    rule (pipeline/scoring/compare.py): paired over the folds (every config is scored on the same
    folds), a difference under two standard errors of the per-fold differences is a tie."""
    best = folds[0]
    behind, ties = [], []
    for row in folds:
        mean, se = compare.paired(row, best)
        behind.append(mean)
        ties.append(mean <= compare.SE_MULTIPLE * se)
    table["behind_best"] = behind
    table["tie_with_best"] = np.where(ties, "tie", "no")
    table.loc[0, "tie_with_best"] = "best"


def show_value(value):
    """Table cell for a parameter value (lists as YAML flow, e.g. [256, 128])."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return value


def cell_text(value, column: str = "") -> str:
    """A table cell: numbers to 4 significant digits (lr 0.0006975 stays 0.0006975); a gap
    behind the best in plain decimals (+0.00012, never 1.2e-04)."""
    if column == "behind_best" and isinstance(value, float | np.floating):
        return f"{value:+.5f}"
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return str(value)


def terminal_table(shown: pd.DataFrame, spec: dict, width: int = 120) -> str:
    """The ranked table for the terminal, within `width` columns: rank, score, the gap and tie
    with the best, the verdict against the baseline; under each row, the config's values
    (every column is in the .csv and .md files)."""
    import textwrap

    rank_by = spec["rank_by"]
    fixed = [c for c in ("rank", rank_by, "behind_best", "tie_with_best", "vs_baseline")
             if c in shown]
    cells = [[cell_text(row[c], c) for c in fixed] for _, row in shown.iterrows()]
    header = ["tie" if c == "tie_with_best" else c for c in fixed]
    sizes = [max(len(r[i]) for r in [header, *cells]) for i in range(len(fixed))]
    lines = ["  ".join(h.ljust(n) for h, n in zip(header, sizes, strict=True)).rstrip()]
    for (_, row), row_cells in zip(shown.iterrows(), cells, strict=True):
        lines.append("  ".join(c.ljust(n) for c, n in zip(row_cells, sizes, strict=True))
                     .rstrip()[:width])
        values = ", ".join(f"{k}={cell_text(row[k])}" for k in spec["space"] if k in shown)
        rerun = row.get("rerun_of")
        if isinstance(rerun, int | float) and not pd.isna(rerun):
            values += f" (trial {row['config']} re-runs trial {int(rerun)}, whose worker stopped)"
        lines += textwrap.wrap(values, width, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(lines)


def with_baseline(table: pd.DataFrame) -> pd.DataFrame:
    """The ranked table with the baseline's row (params.yaml's config) first, rank 0."""
    baseline = table.attrs.get("baseline")
    if not baseline:
        return table
    row = {c: baseline.get(c, "") for c in table.columns}
    row |= {"rank": 0, "vs_baseline": "(baseline)"}
    return pd.concat([pd.DataFrame([row]), table], ignore_index=True)


def write_tables(table: pd.DataFrame, out_dir: str | os.PathLike, name: str, rank_by: str
                 ) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    shown = with_baseline(table)
    with atomic_path(csv_path) as tmp:
        shown.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")
    header = "| " + " | ".join(shown.columns) + " |"
    lines = [f"# Sweep {name}", "", f"{len(table)} configs, ranked by {rank_by} (lower is "
             "better); rank 0 is the baseline, params.yaml's config, and vs_baseline each "
             "config's verdict against it on houses (pipeline/scoring/compare.py).", "", header,
             "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(cell_text(v, c) for c, v in zip(shown.columns, row, strict=True))
              + " |" for row in shown.itertuples(index=False)]
    write_text(md_path, "\n".join(lines) + "\n")
    return csv_path, md_path


def best_overrides(table: pd.DataFrame, spec: dict, rank: int = 1) -> dict:
    """The space keys of the config at `rank`, as params.yaml values."""
    row = table.loc[table["rank"] == rank].iloc[0]
    overrides = {}
    for key in spec["space"]:
        value = row[key]
        if isinstance(value, str):
            value = yaml.safe_load(value)  # lists are shown as YAML flow: [256, 128]
        overrides[key] = value.item() if hasattr(value, "item") else value
    return overrides
