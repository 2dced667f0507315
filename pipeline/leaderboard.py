"""`dvc exp show`'s CV numbers beside the public scores that `submit` logged in leaderboard.csv.

An experiment's score is matched by the experiment name given at submit time, a commit's by its
hash; the latest submission wins. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from pipeline.cli_support import run_cli
from pipeline.errors import PipelineError
from pipeline.submit import read_log


def _metrics(data: dict) -> dict:
    for path, entry in (data.get("metrics") or {}).items():
        if path.endswith("cv.json"):
            return entry.get("data") or {}
    return {}


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
                         "cv_rmse_std": metrics.get("cv_rmse_std")})
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
        joined.append({**exp, "public_score": hit["public_score"] if hit else "",
                       "submitted": hit["utc_time"] if hit else ""})
    return joined


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.leaderboard", description=__doc__)
    parser.add_argument("--leaderboard", default="leaderboard.csv")
    args = parser.parse_args(argv)

    def stage() -> None:
        proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise PipelineError(f"leaderboard: dvc exp show failed: {proc.stderr.strip()}")
        rows = join_scores(flatten_exp_show(json.loads(proc.stdout)),
                           read_log(Path(args.leaderboard)))
        print("| experiment | rev | CV log-RMSE | CV std | public score | submitted (UTC) |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            cv = f"{r['cv_rmse']:.5f}" if isinstance(r["cv_rmse"], float) else ""
            std = f"{r['cv_rmse_std']:.5f}" if isinstance(r["cv_rmse_std"], float) else ""
            print(f"| {r['name']} | {r['rev'][:12]} | {cv} | {std} | {r['public_score']} | "
                  f"{r['submitted']} |")

    run_cli(stage)


if __name__ == "__main__":
    main()
