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

from pipeline.common.cli_support import run_cli, stage_parser
from pipeline.common.errors import PipelineError, safe_text
from pipeline.kaggle.leaderboard import read_log
from pipeline.scoring import compare

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


def drop_idle_workspace(rows: list[dict], stale: list[str]) -> list[dict]:
    """The workspace row only where it differs from the commit it sits on (params or scores),
    or is stale; otherwise it repeats that commit's row."""
    commit = next((r for r in rows if r.get("baseline")), None)
    workspace = next((r for r in rows if r["rev"] == "workspace"), None)
    if (commit is None or workspace is None or stale or workspace["params"] != commit["params"]
            or workspace.get("folds") != commit.get("folds")
            or workspace["cv_rmse"] != commit["cv_rmse"]):
        return rows
    return [r for r in rows if r is not workspace]


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


NEXT_STEP = ("next: confirm a gain on other fold seeds: run the baseline and the experiment "
             "with -S train.fold_seed=1 (and 2, ...); this table then pools each experiment's "
             "seeds against the baseline's on the same seeds; or bench/nested_cv.py; then dvc exp "
             "apply NAME, commit, and house-prices submit --experiment NAME")


def mark_stale(rows: list[dict], stale: list[str]) -> list[dict]:
    """The workspace row's name says when its scores are not those of its params and code."""
    if not stale:
        return rows
    return [{**r, "name": "workspace (stale)"} if r["rev"] == "workspace" else r for r in rows]


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("experiments", __doc__)
    parser.add_argument("--leaderboard", default="leaderboard.csv",
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


def rare_sales_in_workspace(path: str = "metrics/blend.json") -> str | None:
    """The test houses ensemble.rare_sales priced, and from which training houses (the
    workspace's blend metrics), or None when it is off or there are no metrics yet."""
    from pipeline.scoring.rare_sales import rare_sales_line

    try:
        rare = json.loads(Path(path).read_text()).get("rare_sales")
    except (OSError, ValueError, AttributeError):
        return None
    return f"workspace: {rare_sales_line(rare)}" if isinstance(rare, dict) else None


if __name__ == "__main__":
    main()
