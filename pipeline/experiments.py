"""DVC experiments side by side: the submission's CV (the blend's) on all rows and without the
outlier rows, the params each changed, and the public score `house-prices submit` logged for
each (leaderboard.csv).

An experiment's score is matched by the experiment name given at submit time, a commit's by its
hash; the latest submission wins. Rows are sorted by the CV on all rows (what Kaggle scores);
each row is judged against the baseline commit by the project's rule (pipeline/compare.py: a
paired bootstrap over houses of the blend's out-of-fold errors, on all rows and on the normal
houses; a tie under two standard errors; by folds for commits older than the per-house errors),
and the params it changed from the baseline follow it. Fits 120 columns. One shuffle's verdict
is a first look: confirm a change on other fold seeds, or with bench/nested_cv.py
(docs/model-search.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from pipeline import compare
from pipeline.cli_support import run_cli, stage_parser
from pipeline.errors import PipelineError, safe_text
from pipeline.submit import read_log

# The submission's own CV: the blend's where there is one, else the MLP's (older commits).
HEADLINE_METRICS = ("metrics/blend.json", "metrics/cv.json")
# The blend's per-fold scores (the blend stage writes them; kept in git, so each experiment's
# commit has its own), on all rows and without the outlier rows.
FOLDS_FILE = "metrics/blend_folds.json"
FOLD_KEYS = ("fold_rmse", "fold_rmse_no_outliers")
WIDTH = 120  # columns the table fits


def _metrics(data: dict) -> dict:
    found = data.get("metrics") or {}
    for path in HEADLINE_METRICS:
        if path in found:
            return found[path].get("data") or {}
    return {}


def _flat(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = value
    return out


def _params(data: dict) -> dict:
    entry = (data.get("params") or {}).get("params.yaml") or {}
    return _flat("", entry.get("data") or {}, {})


def flatten_exp_show(shown: list) -> list[dict]:
    """dvc exp show --json -> one dict per baseline commit and experiment."""
    rows = []
    for baseline in shown:
        is_commit = baseline["rev"] != "workspace"
        entries = [(baseline.get("name") or (baseline["rev"] if not is_commit
                                              else baseline["rev"][:7]), baseline["rev"],
                    baseline.get("data"), is_commit)]
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                entries.append((rev.get("name") or exp.get("name") or rev["rev"][:7], rev["rev"],
                                rev.get("data"), False))
        for name, rev, data, is_baseline in entries:
            metrics = _metrics(data or {})
            rows.append({"name": name, "rev": rev, "baseline": is_baseline,
                         "cv_rmse": metrics.get("cv_rmse"),
                         "cv_rmse_std": metrics.get("cv_rmse_std"),
                         "cv_rmse_no_outliers": metrics.get("cv_rmse_no_outliers"),
                         "params": _params(data or {})})
    return rows


def join_scores(experiments: list[dict], logged: list[dict]) -> list[dict]:
    """Attach the latest logged public score to each experiment or commit."""
    by_name, by_commit = {}, {}
    for row in logged:  # file order is time order: later rows win
        if row.get("experiment"):
            by_name[row["experiment"]] = row
        else:
            by_commit[row["commit"]] = row
    joined = []
    for exp in experiments:
        hit = by_name.get(exp["name"]) or by_commit.get(exp["rev"])
        joined.append({**exp, "public_score": (hit["public_score"] or "pending") if hit else "",
                       "submitted": hit["utc_time"] if hit else ""})
    return joined


def fold_scores(rev: str, path: str = FOLDS_FILE) -> dict | None:
    """The blend's per-fold scores of a commit or experiment (the workspace's from the file);
    None where it has none (a commit older than the file, or a run that has not finished)."""
    if rev == "workspace":
        data = Path(path).read_bytes() if Path(path).is_file() else None
    else:
        proc = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True)
        data = proc.stdout if proc.returncode == 0 else None
    try:
        scores = json.loads(data.decode("utf-8")) if data else None
        out = {key: [float(v) for v in scores[key].values()] for key in FOLD_KEYS}
        if isinstance(scores.get("house_squared_error"), list):  # newer commits
            out["houses"] = [float(v) for v in scores["house_squared_error"]]
            out["outlier_rows"] = [int(i) for i in scores.get("outlier_rows", [])]
        return out
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None


def against(row: dict, base: dict) -> str:
    """The tie rule (pipeline/compare.py) for a row against the baseline, on the same folds."""
    if row is base:
        return "(baseline)"
    mine, theirs = row.get("folds"), base.get("folds")
    if not mine or not theirs:
        return "no fold scores"
    all_rows, clean = FOLD_KEYS
    plan = ("train.folds", "train.fold_seed", "train.exclude_outliers")
    if any(row["params"].get(k) != base["params"].get(k) for k in plan) or len(
            mine[all_rows]) != len(theirs[all_rows]):
        return "other folds"
    diff, _ = compare.paired(mine[all_rows], theirs[all_rows])
    if mine.get("houses") and len(mine["houses"]) == len(theirs.get("houses") or []):
        import numpy as np

        abnormal = np.zeros(len(mine["houses"]), dtype=bool)
        abnormal[mine["outlier_rows"]] = True
        diffs = compare.houses(mine["houses"], theirs["houses"], abnormal)
        verdict = compare.decide(diffs)
        diff, se = diffs["all rows"]
        return f"{verdict} ({diff:+.4f} ± {se:.4f})"
    verdict = compare.verdict(mine[all_rows], theirs[all_rows], mine[clean], theirs[clean])
    return f"{verdict} ({diff:+.4f}, by folds)"


def _number(value) -> str:
    return f"{value:.5f}" if isinstance(value, float) else "-"


def table(rows: list[dict], width: int = WIDTH) -> str:
    """A text table, best CV on all rows first (experiments with no metrics last), each row
    judged against the baseline (the commit the experiments start from) by the tie rule; under
    each row, wrapped to `width` columns, the params it changed from the baseline."""
    base = next((r for r in rows if r.get("baseline")), rows[0] if rows else None)
    ordered = sorted(rows, key=lambda r: (not isinstance(r["cv_rmse"], float), r["cv_rmse"] or 0.0))
    cells = [[r["name"], _number(r["cv_rmse"]), _number(r["cv_rmse_no_outliers"]),
              against(r, base), safe_text(r["public_score"], 20) or "-"] for r in ordered]
    header = ["experiment", "CV all rows", "no outliers", "vs baseline (tie rule)", "public"]
    sizes = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(n) for h, n in zip(header, sizes, strict=True)).rstrip()]
    for r, row_cells in zip(ordered, cells, strict=True):
        lines.append("  ".join(c.ljust(n) for c, n in zip(row_cells, sizes, strict=True)).rstrip())
        params = [f"{k}={json.dumps(value)}" for k, value in sorted(r["params"].items())
                  if value != base["params"].get(k)]
        lines += textwrap.wrap(", ".join(params), width, initial_indent="    ",
                               subsequent_indent="    ", break_on_hyphens=False)
    return "\n".join(lines)


def stale_stages() -> list[str]:
    """The stages whose outputs are out of date in the workspace (params or code changed since
    its last `dvc repro`). The parameter check is left out: it is listed after any edit of
    params.yaml's bytes (a comment too) and changes no output."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], capture_output=True,
                          text=True)
    try:
        status = json.loads(proc.stdout) if proc.returncode == 0 else {}
    except ValueError:
        return []
    return sorted(name for name in status if name != "check_params")


NEXT_STEP = ("next: confirm a gain on other fold seeds (dvc exp run -S train.fold_seed=1, 2, ...) "
             "or with bench/nested_cv.py; then dvc exp apply NAME, commit, and house-prices submit "
             "--experiment NAME")


def mark_stale(rows: list[dict], stale: list[str]) -> list[dict]:
    """The workspace row's name says when its scores are not those of its params and code."""
    if not stale:
        return rows
    return [{**r, "name": "workspace (stale)"} if r["rev"] == "workspace" else r for r in rows]


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("experiments", __doc__)
    parser.add_argument("--leaderboard", default="leaderboard.csv",
                        help="the submissions log that house-prices submit writes")
    args = parser.parse_args(argv)

    def stage() -> None:
        proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise PipelineError(f"experiments: dvc exp show failed: {proc.stderr.strip()}")
        rows = join_scores(flatten_exp_show(json.loads(proc.stdout)),
                           read_log(Path(args.leaderboard)))
        stale = stale_stages()
        print(table(mark_stale([{**r, "folds": fold_scores(r["rev"])} for r in rows], stale)))
        if stale:
            print(textwrap.fill(f"workspace: its outputs are stale ({', '.join(stale)} changed "
                                "since the last dvc repro): its scores are not those of its "
                                "params; run dvc repro", WIDTH))
        rare = rare_sales_in_workspace()
        if rare:
            print(textwrap.fill(rare, WIDTH))
        print(textwrap.fill(NEXT_STEP, WIDTH))

    run_cli(stage)


def rare_sales_in_workspace(path: str = "metrics/blend.json") -> str | None:
    """The test houses ensemble.rare_sales priced, and from which training houses (the
    workspace's blend metrics), or None when it is off or there are no metrics yet."""
    from pipeline.rare_sales import rare_sales_line

    try:
        rare = json.loads(Path(path).read_text()).get("rare_sales")
    except (OSError, ValueError, AttributeError):
        return None
    return f"workspace: {rare_sales_line(rare)}" if isinstance(rare, dict) else None


if __name__ == "__main__":
    main()
