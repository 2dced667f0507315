"""Write outputs atomically: a crash or a failed check never leaves a partial file behind.

Temporary files and directories sit beside their target as `.NAME.PID.RANDOM.tmp` (git and DVC
ignore that pattern). A process killed with SIGKILL cannot remove its own, so every later write
to the same target first removes the leftovers of processes that are no longer running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

TMP_SUFFIX = ".tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(target: str | os.PathLike) -> list[Path]:
    """Remove temporaries of `target` left by processes that died; return what was removed."""
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    for leftover in target.parent.glob(f".{target.name}.*{TMP_SUFFIX}"):
        middle = leftover.name[len(target.name) + 2:-len(TMP_SUFFIX)]
        pid_text = middle.split(".", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed


def remove_stale_under(root: str | os.PathLike, skip=(".git", ".dvc")) -> list[Path]:
    """Remove every temporary under `root` whose process died (e.g. killed with SIGKILL), so
    none stays hidden until its target is next written; return what was removed."""
    removed = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in [*files, *dirs]:
            if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
                continue
            parts = name[: -len(TMP_SUFFIX)].rsplit(".", 2)
            if len(parts) == 3 and parts[0] not in ("", ".") and parts[1].isdigit():
                removed += remove_stale(Path(folder) / parts[0][1:])
    return removed


def _prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(target), suffix=TMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(target: str | os.PathLike, text: str) -> None:
    """Atomically write `text` to `target`."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike, data) -> None:
    """Atomically write `data` as strict JSON (a NaN or an infinity is an error, not a bare
    `NaN`/`Infinity` that other JSON readers refuse)."""
    import json

    from pipeline.errors import PipelineError

    try:
        text = json.dumps(data, indent=2, allow_nan=False)
    except ValueError as exc:
        raise PipelineError(f"{target}: a value is not finite ({exc}); nothing was written") from exc
    write_text(target, text + "\n")


def replace_dir(target: str | os.PathLike, fill: Callable[[Path], object]) -> None:
    """Fill a fresh sibling directory, then swap it in: no mix of old and new files."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=TMP_SUFFIX, dir=target.parent))
    try:
        fill(tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
