"""Submit submission.csv to Kaggle and log its public score beside the commit and params.

Not a DVC stage: run it when you want a leaderboard score. It validates the file as the blend
stage does before writing it (and against dvc.lock), refuses a working tree whose pipeline
differs from the commit (unless --allow-dirty; --dry-run only reports it), sends the file with
the official `kaggle` client, logs it in leaderboard.csv the moment Kaggle accepts it (UTC time,
commit, experiment, params.yaml hash, CV mean and std, Kaggle's ref), then waits (bounded) for
the public score and fills it in. --fetch-scores fills in scores still pending later, sending
nothing.
"""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from pipeline.common import paths
from pipeline.common.cli_support import add_params_option, run_cli, stage_parser
from pipeline.common.errors import PipelineError, safe_cell, safe_text
from pipeline.common.inputs import read_csv
from pipeline.config.params import KaggleParams, load_params
from pipeline.kaggle.leaderboard import append_leaderboard, log_lock, read_log, update_logged, write_log
from pipeline.kaggle.provenance import Provenance, provenance
from pipeline.kaggle.submission import read_submission, validate_submission


def test_ids(raw_test: Path):
    return read_csv(raw_test, "run dvc repro first", usecols=["Id"])["Id"].to_numpy()


def wait_for_score(api, kaggle: KaggleParams, ref: int | None, message: str,
                   sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.monotonic) -> tuple[str, str]:
    """Poll the submissions list until ours has a public score; (score, ref), score '' on timeout."""
    from pipeline.kaggle import api as kaggle_api
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
                                        f"{safe_text(sub.error_description or 'no reason given')}")
                if sub.public_score:
                    return score_text(sub.public_score), safe_cell(sub.ref)
            bar.update(1)
            if clock() + kaggle.poll_interval_s > deadline:
                return "", str(ref or "")
            sleep(kaggle.poll_interval_s)


def score_text(score) -> str:
    """A public score from the server as the log keeps it: a number, else marked as not one (a
    server's text never goes into a CSV cell or a terminal as it came)."""
    text = safe_text(score, 40)
    try:
        float(text)
    except ValueError:
        return safe_cell(f"not a number: {text}")
    return text


def logged_row(prov: Provenance, ref: str) -> dict:
    """The leaderboard.csv row of a submission Kaggle accepted: now, where it came from, its CV."""
    return {
        "utc_time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": prov.commit, "experiment": prov.experiment, "params_sha1": prov.params_sha1,
        "cv_rmse": f"{prov.cv_rmse:.6f}", "cv_rmse_std": f"{prov.cv_rmse_std:.6f}",
        "cv_rmse_no_outliers": ("" if prov.cv_rmse_no_outliers is None
                                else f"{prov.cv_rmse_no_outliers:.6f}"),
        "public_score": "", "submission_ref": ref,
    }


def submit(params_path=paths.PARAMS, file=paths.SUBMISSION, raw_test=f"{paths.RAW}/test.csv",
           metrics=paths.BLEND, leaderboard=paths.LEADERBOARD, experiment: str | None = None,
           allow_dirty=False, dry_run=False, sleep: Callable[[float], None] = time.sleep,
           note: str = "") -> dict:
    """Validate, submit, log, wait for the score. Returns the leaderboard row (or the plan).

    The row is written the moment Kaggle accepts the file (score pending), so a failure while
    waiting for the score never loses the record of a submission; `fetch_scores` fills it later.
    """
    from pipeline.kaggle import api as kaggle_api
    params = load_params(params_path)
    validate_submission(read_submission(file), test_ids(Path(raw_test)))
    prov = provenance(Path(params_path), Path(metrics), experiment, Path(file))
    dirty = (f"uncommitted changes to {', '.join(prov.dirty)}; commit them (so the score can be "
             "traced to code) or pass --allow-dirty")
    note = safe_text(note, 500)  # no escape sequence reaches a terminal or Kaggle's page
    message = f"{note} | {prov.message()}" if note else prov.message()
    plan = {"competition": params.kaggle.competition, "file": str(file), "message": message}
    if dry_run:
        if prov.dirty and not allow_dirty:
            print(f"submit (dry run): note: a real submit would refuse: {dirty}")
        if kaggle_api.credential_source() is None:
            print(f"submit (dry run): note: a real submit would stop: {kaggle_api.NO_CREDENTIALS}")
        print(f"submit (dry run): {file} is valid; would send to {params.kaggle.competition} with "
              f"message: {message}")
        return plan
    if prov.dirty and not allow_dirty:
        raise PipelineError(f"submit: {dirty}")
    api = kaggle_api.connect()
    print(f"submit: sending {file} to {params.kaggle.competition}", file=sys.stderr)
    response = kaggle_api.call("submit", lambda: api.competition_submit(
        str(file), message, params.kaggle.competition, quiet=True), params.kaggle, sleep)
    if response is None or response.message == getattr(api, "COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE",
                                                        object()):
        raise PipelineError("submit: the upload to Kaggle failed; try again")
    ref = str(response.ref or "")
    row = logged_row(prov, ref)
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
    changes = {"submission_ref": found_ref} if found_ref and not ref else {}
    if score:
        changes["public_score"] = score
    if changes:
        update_logged(log, row, **changes)
    if score:
        print(f"submit: public score {score} (CV {prov.cv_rmse:.5f} on all rows, what Kaggle "
              f"scores); logged in {leaderboard}")
    else:
        print(f"submit: no public score after {params.kaggle.poll_timeout_s:g} s; {pending}")
    return row


def fetch_scores(params_path=paths.PARAMS, leaderboard=paths.LEADERBOARD) -> list[dict]:
    """Fill in the public scores of logged submissions still pending; send nothing."""
    from pipeline.kaggle import api as kaggle_api
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
            row["public_score"] = score_text(sub.public_score)
        else:
            continue
        filled.append(row)
        print(f"submit: ref {row['submission_ref']} (commit {row['commit'][:12]}): "
              f"public score {row['public_score']}")
    if filled:  # re-read under the lock: a submit that logged meanwhile keeps its row
        scores = {r["submission_ref"]: r["public_score"] for r in filled}
        with log_lock(log):
            current = read_log(log)
            for logged in current:
                if logged.get("submission_ref") in scores and not logged.get("public_score"):
                    logged["public_score"] = scores[logged["submission_ref"]]
            write_log(log, current)
    still = len(waiting) - len(filled)
    print(f"submit: {len(filled)} score(s) filled in {leaderboard}; {still} still pending")
    return filled


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("submit", __doc__)
    add_params_option(parser)
    parser.add_argument("--file", default=paths.SUBMISSION, help="the file to send")
    parser.add_argument("--test", default=f"{paths.RAW}/test.csv", help="raw test file (for its Ids)")
    parser.add_argument("--metrics", default=paths.BLEND,
                        help="the submission's CV metrics, logged beside it")
    parser.add_argument("--leaderboard", default=paths.LEADERBOARD,
                        help="the log of submissions and their public scores")
    parser.add_argument("-m", "--message", default="",
                        help="your description, sent before the commit/params/CV provenance")
    parser.add_argument("--experiment",
                        help="submit this DVC experiment's output: the workspace must be it "
                             "(dvc exp apply NAME), and its own CV is logged")
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
                           args.experiment, args.allow_dirty, args.dry_run, note=args.message))


if __name__ == "__main__":
    main()
