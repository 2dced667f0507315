"""Shared CLI behaviour: a user-fixable failure becomes one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.common import paths

# What to do about the operating-system errors a user can fix.
OS_ERROR_HINTS = {
    errno.ENOSPC: "no space left on the device; free some space and run again",
    errno.EDQUOT: "disk quota exceeded; free some space and run again",
    errno.EACCES: "permission denied; check the file's permissions",
    errno.EPERM: "operation not permitted; check the file's permissions",
    errno.EROFS: "read-only file system; run from a writable copy",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError: what failed, on which file, and what to do."""
    where = f" ({exc.filename})" if exc.filename else ""
    hint = OS_ERROR_HINTS.get(exc.errno)
    if hint:
        return f"{hint}{where}; nothing was half-written"
    return f"{exc.strerror or exc}{where}"


def _contents(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def _params_unchanged(path: str, before: bytes | None) -> None:
    from pipeline.common.errors import PipelineError

    if _contents(path) != before:
        raise PipelineError(f"{path} changed while this stage ran (it ran with the values it "
                            "read at its start, which DVC would no longer record); no output was "
                            "written; run it again (dvc repro)")


STAGE_MARKER = "house-prices-stage.lock"  # in .dvc/tmp: held (shared) while a stage runs


def stage_marker(params_path: str | os.PathLike) -> Path | None:
    """The file a running stage holds a shared lock on, beside DVC's own lock (None outside a
    DVC repository). DVC releases its repository lock while a stage's command runs, so this is
    what `sweep --apply` checks before it edits params.yaml."""
    folder = Path(params_path).resolve().parent / ".dvc" / "tmp"
    return folder / STAGE_MARKER if folder.is_dir() else None


@contextlib.contextmanager
def running_stage(params_path: str | os.PathLike):
    """Hold the stage marker (shared: stages may run side by side) for the block."""
    from pipeline.common.atomic import file_lock

    marker = stage_marker(params_path)
    if marker is None:
        yield
        return
    with file_lock(marker, shared=True):
        yield


def stage_running(params_path: str | os.PathLike) -> bool:
    """Whether a stage holds the marker now (an exclusive lock cannot be had at once)."""
    import fcntl

    marker = stage_marker(params_path)
    if marker is None or not marker.exists():
        return False
    with open(marker, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def run_cli(stage: Callable[[], object], params_path: str | None = None) -> None:
    """Run a stage; report a user-fixable failure as one line instead of a traceback.

    Outputs are written through pipeline.common.atomic. With `params_path` (every DVC stage) they are
    renamed into place together, only when the whole stage succeeded and the params file is
    still the one it read at its start: DVC records the params it finds after the stage, so a
    stage that ran with other values must not finish.
    """
    from pipeline.common.atomic import together
    from pipeline.common.errors import PipelineError

    try:
        if params_path is None:
            stage()
        else:
            before = _contents(params_path)
            with running_stage(params_path), together(
                    check=lambda: _params_unchanged(params_path, before)):
                stage()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:  # `house-prices experiments | head`: the reader has what it wanted
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


def stage_parser(command: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of `house-prices COMMAND` (also `python -m pipeline.MODULE`): the module's
    docstring as description, defaults shown beside each option's help."""

    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        def _get_help_string(self, action):
            """The default beside the help, unless the help names it or there is none to show."""
            text = action.help or ""
            if "(default:" in text or action.default in (None, False, argparse.SUPPRESS):
                return text
            return super()._get_help_string(action)

    return argparse.ArgumentParser(prog=f"house-prices {command}", description=doc,
                                   formatter_class=Formatter)


def add_params_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default=paths.PARAMS, help="the parameters file")
