"""DVC experiments side by side: the submission's CV (the blend's) on all rows and without the
outlier rows, the params each changed, and the public score `house-prices submit` logged for
each (leaderboard.csv).

An experiment's score is matched by the experiment name given at submit time, a commit's by its
hash; the latest submission wins. Rows are sorted by the CV on all rows (what Kaggle scores);
each row is judged against the baseline commit by the project's rule (pipeline/scoring/compare.py: a
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

from pipeline.common import paths
from pipeline.common.cli_support import run_cli, stage_parser
from pipeline.common.errors import PipelineError, safe_text
from pipeline.kaggle.leaderboard import read_log
from pipeline.scoring import compare
from pipeline.search.runs import (
    FOLD_KEYS,
    drop_idle_workspace,
    flatten_exp_show,
    fold_scores,
    join_scores,
    mark_stale,
    rare_sales_in_workspace,
    stale_stages,
)

WIDTH = 120  # columns the table fits


SEED = "train.fold_seed"
PLAN = ("train.folds", "train.exclude_outliers")  # a fold plan a baseline must share


def changes(row: dict, base: dict, skip: tuple[str, ...] = (SEED,)) -> tuple:
    """What a row changed from `base`'s params, fold seed aside: rows with the same changes
    are one experiment run on several fold seeds."""
    keys = (set(row["params"]) | set(base["params"])) - set(skip)
    return tuple(sorted((k, json.dumps(row["params"].get(k))) for k in keys
                        if row["params"].get(k) != base["params"].get(k)))


def _houses(row: dict):
    folds = row.get("folds") or {}
    return folds.get("houses")


def house_rmse(row: dict, normal: bool = False) -> float | None:
    """The blend's out-of-fold RMSE pooled over houses (what the rule compares and the table
    ranks by), on all rows or on the normal houses; None where the row has no per-house errors."""
    import numpy as np

    houses = _houses(row)
    if not houses:
        return None
    err = np.asarray(houses, dtype=float)
    if normal:
        err = np.delete(err, row["folds"].get("outlier_rows", []))
    return float(np.sqrt(err.mean()))


def seed_baselines(rows: list[dict], base: dict) -> dict:
    """fold seed -> the row that is `base` run on that fold seed (params equal but the seed)."""
    found = {}
    for r in rows:
        if not changes(r, base) and _houses(r) and r.get("rev") != "workspace":
            found.setdefault(r["params"].get(SEED), r)
    if _houses(base):
        found[base["params"].get(SEED)] = base
    return found


def against(row: dict, base: dict, rows: list[dict] | None = None) -> str:
    """The tie rule (pipeline/scoring/compare.py) for a row against `base`, like with like: on each fold
    seed the row was run on, against `base` run on that seed (found among `rows`), each house's
    squared error averaged over those seeds; by folds for commits older than per-house errors."""
    rows = rows if rows is not None else [row, base]
    if row is base:
        return "(baseline)"
    if not row.get("folds") or not base.get("folds"):
        return "no fold scores"
    if any(row["params"].get(k) != base["params"].get(k) for k in PLAN):
        return "other folds"
    key, seed = changes(row, base), row["params"].get(SEED)
    if not key and seed != base["params"].get(SEED):
        return f"(baseline, fold seed {seed})"
    if not _houses(row) or not _houses(base):
        return _by_folds(row, base)
    baselines = seed_baselines(rows, base)
    runs = ({seed: row} if not key else  # same params: a change of code, on this seed
            {r["params"].get(SEED): r for r in rows if changes(r, base) == key and _houses(r)})
    pairs = [(r, baselines[s]) for s, r in sorted(runs.items(), key=lambda kv: str(kv[0]))
             if s in baselines and len(_houses(r)) == len(_houses(baselines[s]))]
    if not pairs:
        return f"no baseline at fold seed {seed} (run it: -S {SEED}={seed})"
    import numpy as np

    mine = np.mean([_houses(r) for r, _ in pairs], axis=0)
    theirs = np.mean([_houses(b) for _, b in pairs], axis=0)
    abnormal = np.zeros(len(mine), dtype=bool)
    abnormal[row["folds"].get("outlier_rows", [])] = True
    diffs = compare.houses(mine, theirs, abnormal)
    diff, se = diffs["all rows"]
    seeds = f", {len(pairs)} seeds" if len(pairs) > 1 else ""
    return f"{compare.decide(diffs)} ({diff:+.4f} ± {se:.4f}{seeds})"


def _by_folds(row: dict, base: dict) -> str:
    """The old instrument, for commits without per-house errors: paired over the folds."""
    all_rows, clean = FOLD_KEYS
    mine, theirs = row["folds"], base["folds"]
    if row["params"].get(SEED) != base["params"].get(SEED) or len(mine[all_rows]) != len(
            theirs[all_rows]):
        return "other folds"
    diff, _ = compare.paired(mine[all_rows], theirs[all_rows])
    verdict = compare.verdict(mine[all_rows], theirs[all_rows], mine[clean], theirs[clean])
    return f"{verdict} ({diff:+.4f}, by folds)"


def _number(value) -> str:
    return f"{value:.5f}" if isinstance(value, float) else "-"


def _score(row: dict, normal: bool = False) -> float | None:
    """The figure a row is shown and ranked by: pooled over houses where it has them (the
    figure the rule's difference is of), else its mean fold CV (older commits)."""
    pooled = house_rmse(row, normal)
    if pooled is not None:
        return pooled
    value = row["cv_rmse_no_outliers" if normal else "cv_rmse"]
    return value if isinstance(value, float) else None


def table(rows: list[dict], width: int = WIDTH, base: dict | None = None) -> str:
    """A text table, best out-of-fold RMSE over houses first (experiments with no metrics last),
    each row judged against `base` (default: the commit the experiments start from) by the tie
    rule, like with like across fold seeds; under each row, wrapped to `width` columns, the
    params it changed from the baseline."""
    base = base or next((r for r in rows if r.get("baseline")), rows[0] if rows else None)
    ordered = sorted(rows, key=lambda r: (_score(r) is None, _score(r) or 0.0))
    cells = [[r["name"], _number(_score(r)), _number(_score(r, normal=True)),
              against(r, base, rows), safe_text(r["public_score"], 20) or "-"] for r in ordered]
    header = ["experiment", "RMSE all rows", "normal houses", "vs baseline (tie rule)", "public"]
    sizes = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(n) for h, n in zip(header, sizes, strict=True)).rstrip()]
    for r, row_cells in zip(ordered, cells, strict=True):
        lines.append("  ".join(c.ljust(n) for c, n in zip(row_cells, sizes, strict=True)).rstrip())
        params = [f"{k}={json.dumps(value)}" for k, value in sorted(r["params"].items())
                  if value != base["params"].get(k)]
        lines += textwrap.wrap(", ".join(params), width, initial_indent="    ",
                               subsequent_indent="    ", break_on_hyphens=False)
    return "\n".join(lines)


NEXT_STEP = ("next: confirm a gain on other fold seeds: run the baseline and the experiment "
             "with -S train.fold_seed=1 (and 2, ...); this table then pools each experiment's "
             "seeds against the baseline's on the same seeds; or bench/nested_cv.py; then dvc exp "
             "apply NAME, commit, and house-prices submit --experiment NAME")


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("experiments", __doc__)
    parser.add_argument("--leaderboard", default=paths.LEADERBOARD,
                        help="the submissions log that house-prices submit writes")
    parser.add_argument("--against", metavar="NAME",
                        help="judge every row against this experiment or commit instead of the "
                             "baseline commit (its runs on other fold seeds are found too)")
    args = parser.parse_args(argv)

    def stage() -> None:
        if subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"],
                          capture_output=True).returncode != 0:
            raise PipelineError("experiments: this repository has no commit yet, so no baseline "
                                "to judge experiments against; commit first (git add -A && git "
                                "commit), then dvc repro")
        proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise PipelineError(f"experiments: dvc exp show failed: {proc.stderr.strip()}")
        rows = join_scores(flatten_exp_show(json.loads(proc.stdout)),
                           read_log(Path(args.leaderboard)))
        stale = stale_stages()
        rows = drop_idle_workspace([{**r, "folds": fold_scores(r["rev"])} for r in rows], stale)
        rows = mark_stale(rows, stale)
        base = None
        if args.against:
            base = next((r for r in rows if args.against in (r["name"], r["rev"])), None)
            if base is None:
                raise PipelineError(f"experiments: --against {safe_text(args.against, 60)}: no "
                                    "such experiment or commit (names: "
                                    f"{', '.join(r['name'] for r in rows)})")
        import warnings

        with warnings.catch_warnings():  # one fold's SE is undefined: "no verdict", no warning
            warnings.simplefilter("ignore", RuntimeWarning)
            print(table(rows, base=base))
        if stale:
            print(textwrap.fill(f"workspace: its outputs are stale ({', '.join(stale)} changed "
                                "since the last dvc repro): its scores are not those of its "
                                "params; run dvc repro", WIDTH))
        rare = rare_sales_in_workspace()
        if rare:
            print(textwrap.fill(rare, WIDTH))
        print(textwrap.fill(NEXT_STEP, WIDTH))

    run_cli(stage)


if __name__ == "__main__":
    main()
