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
from pipeline.inputs import read_csv, read_json
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
    metrics = read_json(metrics_path, "run dvc repro to write it", ("cv_rmse", "cv_rmse_std"))
    for key in ("cv_rmse", "cv_rmse_std"):
        if isinstance(metrics[key], bool) or not isinstance(metrics[key], int | float):
            raise PipelineError(f"{metrics_path}: {key} is not a number; run dvc repro to rewrite it")
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


def read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def write_log(path: Path, rows: list[dict]) -> None:
    """Rewrite the whole log atomically (a crash leaves the old file, never half a row)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=LEADERBOARD_COLUMNS, lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, out.getvalue())


def append_leaderboard(path: Path, row: dict) -> None:
    """Append one row (header on first use)."""
    write_log(path, [*read_log(path), row])


def set_score(path: Path, ref: str, score: str) -> None:
    """Fill in the public score of the logged submission `ref`."""
    rows = read_log(path)
    for row in rows:
        if row.get("submission_ref") == ref:
            row["public_score"] = score
    write_log(path, rows)


def submit(params_path="params.yaml", file="submission.csv", raw_test="data/raw/test.csv",
           metrics="metrics/cv.json", leaderboard="leaderboard.csv", experiment: str | None = None,
           allow_dirty=False, dry_run=False, sleep: Callable[[float], None] = time.sleep) -> dict:
    """Validate, submit, log, wait for the score. Returns the leaderboard row (or the plan).

    The row is written the moment Kaggle accepts the file (score pending), so a failure while
    waiting for the score never loses the record of a submission; `fetch_scores` fills it later.
    """
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
    ref = str(response.ref or "")
    row = {
        "utc_time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": prov.commit, "experiment": prov.experiment, "params_sha1": prov.params_sha1,
        "cv_rmse": f"{prov.cv_rmse:.6f}", "cv_rmse_std": f"{prov.cv_rmse_std:.6f}",
        "public_score": "", "submission_ref": ref,
    }
    log = Path(leaderboard)
    append_leaderboard(log, row)
    print(f"submit: Kaggle accepted the submission (ref {ref or 'unknown'}); logged in "
          f"{leaderboard} with the score pending", file=sys.stderr)
    pending = ("the submission is sent and logged; do not submit it again: run 'house-prices "
               "submit --fetch-scores' later to fill in its score")
    try:
        score, found_ref = wait_for_score(api, params.kaggle, response.ref or None, message, sleep)
    except PipelineError as exc:
        raise PipelineError(f"{exc} ({pending})") from exc
    if found_ref and not ref:
        rows = read_log(log)
        rows[-1]["submission_ref"] = row["submission_ref"] = found_ref
        write_log(log, rows)
    if score:
        row["public_score"] = score
        set_score(log, row["submission_ref"], score)
        print(f"submit: public score {score} (CV {prov.cv_rmse:.5f}); logged in {leaderboard}")
    else:
        print(f"submit: no public score after {params.kaggle.poll_timeout_s:g} s; {pending}")
    return row


def fetch_scores(params_path="params.yaml", leaderboard="leaderboard.csv") -> list[dict]:
    """Fill in the public scores of logged submissions still pending; send nothing."""
    from pipeline import kaggle_api

    params = load_params(params_path)
    log = Path(leaderboard)
    rows = read_log(log)
    waiting = {r["submission_ref"]: r for r in rows if not r.get("public_score")
               and r.get("submission_ref")}
    if not waiting:
        print(f"submit: no pending submissions in {leaderboard}")
        return []
    api = kaggle_api.connect()
    listed = kaggle_api.call("submissions",
                             lambda: api.competition_submissions(params.kaggle.competition),
                             params.kaggle)
    filled = []
    for sub in listed or []:
        row = waiting.get(str(getattr(sub, "ref", "")))
        if row is None:
            continue
        status = getattr(sub.status, "name", str(sub.status))
        if status == "ERROR":
            row["public_score"] = "error"
        elif sub.public_score:
            row["public_score"] = str(sub.public_score)
        else:
            continue
        filled.append(row)
        print(f"submit: ref {row['submission_ref']} (commit {row['commit'][:12]}): "
              f"public score {row['public_score']}")
    if filled:
        write_log(log, rows)
    still = len(waiting) - len(filled)
    print(f"submit: {len(filled)} score(s) filled in {leaderboard}; {still} still pending")
    return filled


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
    parser.add_argument("--fetch-scores", action="store_true",
                        help="send nothing: fill in the scores of logged submissions still pending")
    args = parser.parse_args(argv)
    if args.fetch_scores:
        run_cli(lambda: fetch_scores(args.params, args.leaderboard))
        return
    run_cli(lambda: submit(args.params, args.file, args.test, args.metrics, args.leaderboard,
                           args.experiment, args.allow_dirty, args.dry_run))


if __name__ == "__main__":
    main()
