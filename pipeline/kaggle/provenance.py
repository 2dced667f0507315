"""Where a submission comes from: the commit, whether the pipeline's files differ from it, the
experiment, the params' hash and the CV metrics, and a check that the file is the one dvc.lock
records."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.common.errors import PipelineError
from pipeline.common.inputs import read_json

# What a submission's score depends on: a change here must be committed before submitting.
PIPELINE_PATHS = ("pipeline", "params.yaml", "dvc.yaml", "dvc.lock")


@dataclass(frozen=True)
class Provenance:
    commit: str
    dirty: list[str]
    experiment: str
    params_sha1: str
    cv_rmse: float
    cv_rmse_std: float
    cv_rmse_no_outliers: float | None = None

    def message(self) -> str:
        exp = f" exp {self.experiment}" if self.experiment else ""
        dirty = " (dirty)" if self.dirty else ""
        return (f"commit {self.commit[:12]}{dirty}{exp} params {self.params_sha1[:10]} "
                f"CV {self.cv_rmse:.5f} +- {self.cv_rmse_std:.5f}")


def _git(*args: str) -> str:
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        inside = subprocess.run(["git", "rev-parse", "--git-dir"], capture_output=True).returncode
        if inside == 0:
            raise PipelineError("submit: this repository has no commit yet; the leaderboard log "
                                "needs the commit that produced the submission: commit first "
                                "(git add -A && git commit)") from exc
        raise PipelineError("submit: not inside a git repository; the leaderboard log needs the "
                            "commit that produced the submission") from exc
    return proc.stdout


def _number_metrics(metrics: dict, where: str) -> dict:
    for key in ("cv_rmse", "cv_rmse_std"):
        if key not in metrics:
            raise PipelineError(f"{where}: missing key {key}; run dvc repro to rewrite it")
        if isinstance(metrics[key], bool) or not isinstance(metrics[key], int | float):
            raise PipelineError(f"{where}: {key} is not a number; run dvc repro to rewrite it")
    return metrics


def git_show(rev: str, path: str) -> str | None:
    """A file's text at a commit, or None if the commit has no such file."""
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def experiment_rev(name: str) -> str:
    """The commit of DVC experiment `name` (DVC keeps experiments as refs/exps/.../NAME)."""
    refs = _git("for-each-ref", "--format=%(objectname) %(refname)", "refs/exps").splitlines()
    revs = [line.split(" ", 1)[0] for line in refs if line.endswith(f"/{name}")]
    if not revs:
        raise PipelineError(f"submit: no DVC experiment named '{name}' here ('dvc exp show' lists "
                            "them; a queued experiment must run first)")
    return revs[0]


def locked_md5(lock_text: str, output: str) -> str | None:
    """The md5 dvc.lock records for `output`, or None if it records none."""
    lock = yaml.safe_load(lock_text) or {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") == output:
                return out.get("md5")
    return None


def check_is_output(file: Path, lock_text: str | None, what: str, fix: str) -> None:
    """Refuse a submission file that is not the one dvc.lock says the pipeline produced."""
    expected = locked_md5(lock_text, file.as_posix()) if lock_text else None
    if expected is None:
        return
    if hashlib.md5(file.read_bytes()).hexdigest() != expected:
        raise PipelineError(f"submit: {file} is not {what}'s output (its md5 differs from the one "
                            f"in dvc.lock); {fix} first")


def provenance(params_path: Path, metrics_path: Path, experiment: str | None,
               file: Path | None = None) -> Provenance:
    """Where the submission came from: HEAD and the workspace, or a named DVC experiment.

    With an experiment, the workspace must be that experiment (its pipeline files and its
    submission.csv), and its own metrics are reported, read from its commit.
    """
    if experiment:
        rev = experiment_rev(experiment)
        dirty = [p for p in _git("diff", "--name-only", rev, "--", *PIPELINE_PATHS).splitlines()]
        if dirty:
            raise PipelineError(f"submit: the workspace is not experiment '{experiment}' "
                                f"({', '.join(dirty)} differ); run 'dvc exp apply {experiment}' "
                                "first")
        if file is not None:
            check_is_output(file, git_show(rev, "dvc.lock"), f"experiment {experiment}",
                            f"run 'dvc exp apply {experiment}'")
        try:
            metrics = json.loads(git_show(rev, metrics_path.as_posix()) or "")
        except ValueError as exc:
            raise PipelineError(f"submit: experiment {experiment} has no readable "
                                f"{metrics_path}; re-run it") from exc
        metrics = _number_metrics(metrics, f"{experiment}:{metrics_path}")
        params_bytes = (git_show(rev, params_path.as_posix()) or "").encode()
        commit = rev
    else:
        metrics = _number_metrics(read_json(metrics_path, "run dvc repro to write it"),
                                  str(metrics_path))
        dirty = [line[3:] for line in
                 _git("status", "--porcelain", "--", *PIPELINE_PATHS).splitlines()]
        lock = Path("dvc.lock")
        if file is not None and lock.is_file():
            check_is_output(file, lock.read_text(encoding="utf-8"), "this workspace",
                            "run dvc repro")
        params_bytes = params_path.read_bytes()
        commit = _git("rev-parse", "HEAD").strip()
        experiment = os.environ.get("DVC_EXP_NAME", "")
    return Provenance(
        commit=commit,
        dirty=dirty,
        experiment=experiment,
        params_sha1=hashlib.sha1(params_bytes).hexdigest(),
        cv_rmse=float(metrics["cv_rmse"]),
        cv_rmse_std=float(metrics["cv_rmse_std"]),
        cv_rmse_no_outliers=(float(metrics["cv_rmse_no_outliers"])
                             if isinstance(metrics.get("cv_rmse_no_outliers"), int | float)
                             and not isinstance(metrics.get("cv_rmse_no_outliers"), bool)
                             else None),
    )
