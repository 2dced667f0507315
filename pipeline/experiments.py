"""DVC experiments side by side: the submission's CV (the blend's) on all rows and without the
outlier rows, the params that differ between them, and the public score `house-prices submit`
logged for each (leaderboard.csv).

An experiment's score is matched by the experiment name given at submit time, a commit's by its
hash; the latest submission wins. Rows are sorted by the CV on all rows (what Kaggle scores);
prints a markdown table. One split's differences below ~0.001 are noise: decide a default with
bench/nested_cv.py and the rule of docs/model-search.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline.cli_support import run_cli, stage_parser
from pipeline.errors import PipelineError
from pipeline.submit import read_log

# The submission's own CV: the blend's where there is one, else the MLP's (older commits).
HEADLINE_METRICS = ("metrics/blend.json", "metrics/cv.json")


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
        entries = [(baseline.get("name") or baseline["rev"], baseline["rev"], baseline.get("data"))]
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                entries.append((rev.get("name") or exp.get("name"), rev["rev"], rev.get("data")))
        for name, rev, data in entries:
            metrics = _metrics(data or {})
            rows.append({"name": name, "rev": rev, "cv_rmse": metrics.get("cv_rmse"),
                         "cv_rmse_std": metrics.get("cv_rmse_std"),
                         "cv_rmse_no_outliers": metrics.get("cv_rmse_no_outliers"),
                         "params": _params(data or {})})
    return rows


def changed_params(rows: list[dict]) -> list[str]:
    """The params whose values are not the same in every row."""
    keys = sorted({k for r in rows for k in r.get("params", {})})
    return [k for k in keys
            if len({json.dumps(r.get("params", {}).get(k)) for r in rows}) > 1]


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


def _number(value) -> str:
    return f"{value:.5f}" if isinstance(value, float) else ""


def table(rows: list[dict]) -> str:
    """Markdown, best CV on all rows first; experiments with no metrics last."""
    changed = changed_params(rows)
    ordered = sorted(rows, key=lambda r: (not isinstance(r["cv_rmse"], float), r["cv_rmse"] or 0.0))
    lines = ["| experiment | rev | CV all rows | CV no outliers | std | changed params | public "
             "score | submitted (UTC) |", "|---|---|---|---|---|---|---|---|"]
    for r in ordered:
        params = ", ".join(f"{k}={json.dumps(r['params'].get(k))}" for k in changed
                           if k in r["params"])
        lines.append(f"| {r['name']} | {r['rev'][:7]} | {_number(r['cv_rmse'])} | "
                     f"{_number(r['cv_rmse_no_outliers'])} | {_number(r['cv_rmse_std'])} | {params} | "
                     f"{r['public_score']} | {r['submitted']} |")
    return "\n".join(lines)


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
        print(table(join_scores(flatten_exp_show(json.loads(proc.stdout)),
                                read_log(Path(args.leaderboard)))))

    run_cli(stage)


if __name__ == "__main__":
    main()
