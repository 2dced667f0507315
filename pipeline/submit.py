"""Submit submission.csv to Kaggle and log its public score beside the commit and params.

Not a DVC stage: run it when you want a leaderboard score. It validates the file as predict
does, refuses a working tree whose pipeline differs from the commit (unless --allow-dirty),
sends the file with the official `kaggle` client, waits (bounded) for the public score, and
appends a row to leaderboard.csv: UTC time, commit, experiment, params.yaml hash, CV mean and
std, public score and Kaggle's submission ref. --dry-run stops before anything is sent.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipeline.atomic import write_text
from pipeline.cli_support import run_cli
from pipeline.errors import PipelineError
from pipeline.inputs import read_csv
from pipeline.params import KaggleParams, load_params
from pipeline.submission import read_submission, validate_submission

# What a submission's score depends on: a change here must be committed before submitting.
PIPELINE_PATHS = ("pipeline", "params.yaml", "dvc.yaml", "dvc.lock")
LEADERBOARD_COLUMNS = ("utc_time", "commit", "experiment", "params_sha1", "cv_rmse", "cv_rmse_std",
                       "public_score", "submission_ref")


@dataclass(frozen=True)
class Provenance:
    commit: str
    dirty: list[str]
    experiment: str
    params_sha1: str
    cv_rmse: float
    cv_rmse_std: float

    def message(self) -> str:
        exp = f" exp {self.experiment}" if self.experiment else ""
        dirty = " (dirty)" if self.dirty else ""
        return (f"commit {self.commit[:12]}{dirty}{exp} params {self.params_sha1[:10]} "
                f"CV {self.cv_rmse:.5f} +- {self.cv_rmse_std:.5f}")


def _git(*args: str) -> str:
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise PipelineError("submit: not inside a git repository; the leaderboard log needs the "
                            "commit that produced the submission") from exc
    return proc.stdout


def provenance(params_path: Path, metrics_path: Path, experiment: str | None) -> Provenance:
    if not metrics_path.is_file():
        raise PipelineError(f"{metrics_path}: not found; run dvc repro first")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    dirty = [line[3:] for line in _git("status", "--porcelain", "--", *PIPELINE_PATHS).splitlines()]
    return Provenance(
        commit=_git("rev-parse", "HEAD").strip(),
        dirty=dirty,
        experiment=experiment if experiment is not None else os.environ.get("DVC_EXP_NAME", ""),
        params_sha1=hashlib.sha1(params_path.read_bytes()).hexdigest(),
        cv_rmse=float(metrics["cv_rmse"]),
        cv_rmse_std=float(metrics["cv_rmse_std"]),
    )


def test_ids(raw_test: Path):
    return read_csv(raw_test, "run dvc repro first", usecols=["Id"])["Id"].to_numpy()


def wait_for_score(api, kaggle: KaggleParams, ref: int | None, message: str,
                   sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.monotonic) -> tuple[str, str]:
    """Poll the submissions list until ours has a public score; (score, ref), score '' on timeout."""
    from pipeline import kaggle_api

    deadline = clock() + kaggle.poll_timeout_s
    with tqdm(desc="waiting for the public score", unit="poll", disable=None,
              file=sys.stderr) as bar:
        while True:
            submissions = kaggle_api.call(
                "submissions", lambda: api.competition_submissions(kaggle.competition), kaggle)
            for sub in submissions or []:
                if sub is None or (ref is not None and sub.ref != ref) or (
                        ref is None and sub.description != message):
                    continue
                status = getattr(sub.status, "name", str(sub.status))
                if status == "ERROR":
                    raise PipelineError(f"submit: Kaggle could not score the submission: "
                                        f"{sub.error_description or 'no reason given'}")
                if sub.public_score:
                    return str(sub.public_score), str(sub.ref)
            bar.update(1)
            if clock() + kaggle.poll_interval_s > deadline:
                return "", str(ref or "")
            sleep(kaggle.poll_interval_s)


def append_leaderboard(path: Path, row: dict) -> None:
    """Append one row (header on first use), rewriting the file atomically."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=LEADERBOARD_COLUMNS, lineterminator="\n")
    if not old:
        writer.writeheader()
    writer.writerow(row)
    write_text(path, old + out.getvalue())


def submit(params_path="params.yaml", file="submission.csv", raw_test="data/raw/test.csv",
           metrics="metrics/cv.json", leaderboard="leaderboard.csv", experiment: str | None = None,
           allow_dirty=False, dry_run=False, sleep: Callable[[float], None] = time.sleep) -> dict:
    """Validate, submit, wait for the score, log it. Returns the leaderboard row (or the plan)."""
    from pipeline import kaggle_api

    params = load_params(params_path)
    validate_submission(read_submission(file), test_ids(Path(raw_test)))
    prov = provenance(Path(params_path), Path(metrics), experiment)
    if prov.dirty and not allow_dirty:
        raise PipelineError(f"submit: uncommitted changes to {', '.join(prov.dirty)}; commit them "
                            "(so the score can be traced to code) or pass --allow-dirty")
    message = prov.message()
    plan = {"competition": params.kaggle.competition, "file": str(file), "message": message}
    if dry_run:
        print(f"submit (dry run): {file} is valid; would send to {params.kaggle.competition} with "
              f"message: {message}")
        return plan
    api = kaggle_api.connect()
    print(f"submit: sending {file} to {params.kaggle.competition}", file=sys.stderr)
    response = kaggle_api.call("submit", lambda: api.competition_submit(
        str(file), message, params.kaggle.competition, quiet=True), params.kaggle, sleep)
    if response is None or response.message == getattr(api, "COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE",
                                                        object()):
        raise PipelineError("submit: the upload to Kaggle failed; try again")
    score, ref = wait_for_score(api, params.kaggle, response.ref or None, message, sleep)
    row = {
        "utc_time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": prov.commit, "experiment": prov.experiment, "params_sha1": prov.params_sha1,
        "cv_rmse": f"{prov.cv_rmse:.6f}", "cv_rmse_std": f"{prov.cv_rmse_std:.6f}",
        "public_score": score, "submission_ref": ref,
    }
    append_leaderboard(Path(leaderboard), row)
    if score:
        print(f"submit: public score {score} (CV {prov.cv_rmse:.5f}); logged in {leaderboard}")
    else:
        print(f"submit: no public score after {params.kaggle.poll_timeout_s:g} s; logged the "
              f"submission (ref {ref}) in {leaderboard} without it; see 'kaggle competitions "
              f"submissions {params.kaggle.competition}'")
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.submit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--file", default="submission.csv")
    parser.add_argument("--test", default="data/raw/test.csv", help="raw test file (for its Ids)")
    parser.add_argument("--metrics", default="metrics/cv.json")
    parser.add_argument("--leaderboard", default="leaderboard.csv")
    parser.add_argument("--experiment", help="experiment name for the log (default: DVC_EXP_NAME)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="submit even with uncommitted pipeline changes")
    parser.add_argument("--dry-run", action="store_true", help="validate and show, send nothing")
    args = parser.parse_args(argv)
    run_cli(lambda: submit(args.params, args.file, args.test, args.metrics, args.leaderboard,
                           args.experiment, args.allow_dirty, args.dry_run))


if __name__ == "__main__":
    main()
