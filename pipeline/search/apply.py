"""A sweep's winner into the project: written into params.yaml under DVC's own repository lock,
or queued as DVC experiments."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd

from pipeline.common.atomic import atomic_path
from pipeline.common.errors import PipelineError
from pipeline.config.params import load_params
from pipeline.search.tables import best_overrides, show_value


@contextlib.contextmanager
def dvc_lock(params_path: str | os.PathLike):
    """Hold DVC's own repository lock (what `dvc repro` holds while it runs; core.hardlink_lock
    respected) for the block, so params.yaml never changes under a running stage; one line if a
    DVC command holds it."""
    root = Path(params_path).resolve().parent
    if not (root / ".dvc").is_dir():  # not a DVC repository: nothing to wait for
        yield
        return
    from dvc.config import Config
    from dvc.lock import LockError, make_lock

    from pipeline.common.cli_support import stage_running

    busy = (f"sweep: a DVC command (dvc repro?) is running in {root}%s; --apply changed "
            "nothing: apply again when it has finished")
    tmp = root / ".dvc" / "tmp"
    tmp.mkdir(exist_ok=True)
    core = Config(dvc_dir=str(root / ".dvc"), validate=False)["core"]
    lock = make_lock(str(tmp / "lock"), tmp_dir=str(tmp), hardlink_lock=core.get("hardlink_lock", False))
    try:
        lock.lock()
    except LockError:
        raise PipelineError(busy % " and holds its lock") from None
    try:
        if stage_running(params_path):  # DVC lets its lock go while a stage's command runs
            raise PipelineError(busy % " and one of its stages is running")
        yield
    finally:
        lock.unlock()


def apply_to_params(params_path: str | os.PathLike, overrides: dict) -> None:
    """Write `overrides` into params.yaml's train section, keeping its comments and order
    (never while a `dvc repro` holds the repository)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq

    yaml_rt = YAML()
    yaml_rt.preserve_quotes = True
    yaml_rt.indent(mapping=2, sequence=4, offset=2)  # params.yaml's own layout
    yaml_rt.width = 4096  # never re-wrap long lines
    params_path = Path(params_path)
    text = params_path.read_text(encoding="utf-8")
    newline = "\r\n" if "\r\n" in params_path.read_bytes().decode("utf-8") else "\n"
    doc = yaml_rt.load(text)
    for key, value in overrides.items():
        if isinstance(value, list):
            seq = CommentedSeq(value)
            seq.fa.set_flow_style()
            value = seq
        doc["train"][key] = value
    with dvc_lock(params_path), atomic_path(params_path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline=newline) as fh:  # CRLF kept as CRLF
            yaml_rt.dump(doc, fh)
        load_params(tmp)  # the result must still be valid, else params.yaml stays as it was


def set_args(overrides: dict) -> list[str]:
    """`-S train.key=value` arguments for dvc exp run."""
    args = []
    for key, value in overrides.items():
        text = show_value(value).replace(" ", "") if isinstance(value, list) else str(value)
        args += ["-S", f"train.{key}={text}"]
    return args


def queue_experiments(table: pd.DataFrame, spec: dict, top: int, cwd: str | os.PathLike = ".",
                      name: str = "sweep") -> list[list[str]]:
    """Queue the best `top` configs as DVC experiments named NAME-rank1, NAME-rank2, ... (the
    README's `dvc exp run --run-all` runs them)."""
    commands = []
    for rank in range(1, min(top, len(table)) + 1):
        cmd = ["dvc", "exp", "run", "--queue", "-n", f"{name}-rank{rank}",
               *set_args(best_overrides(table, spec, rank))]
        proc = subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, cwd=cwd)
        if proc.returncode != 0:
            raise PipelineError(f"sweep: '{shlex.join(cmd)}' failed: {proc.stderr.strip()}")
        commands.append(cmd)
        print(f"sweep: queued {shlex.join(cmd)}")
    return commands
