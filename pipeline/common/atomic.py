"""Write outputs atomically: a crash or a failed check never leaves a partial file behind.

Temporary files and directories sit beside their target as `.NAME.PID.hpRANDOM.tmp` (git and
DVC ignore that pattern; `hp` marks the project's own). A process killed with SIGKILL cannot
remove its own, so every later write to the same target first removes the leftovers of
processes that are no longer running, and only those the project named.

Inside `together()` (every DVC stage's run, pipeline.common.cli_support.run_cli) no write is renamed
onto its target until the whole stage has succeeded: a stage that fails half-way, on a full disk
or a bad value, changes none of its outputs.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

TMP_SUFFIX = ".tmp"
MARK = "hp"  # after the PID: a temporary this project made (a user's own files are never touched)
# (commit, discard) pairs of the writes waiting for the end of a `together()` block
_PENDING: contextvars.ContextVar[list | None] = contextvars.ContextVar("pending", default=None)


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
        pid_text, _, rest = middle.partition(".")
        if not (pid_text.isdigit() and rest.startswith(MARK)) or _pid_alive(int(pid_text)):
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
            if (len(parts) == 3 and parts[0] not in ("", ".") and parts[1].isdigit()
                    and parts[2].startswith(MARK)):
                removed += remove_stale(Path(folder) / parts[0][1:])
    return removed


def _prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}.{MARK}"


def _in_dvc_cache(path: Path) -> bool:
    """Whether `path` lies in a DVC cache (a `dvc config cache.type symlink` workspace links its
    outputs there; DVC itself replaces such a link, never the cached file)."""
    return any(pair == (".dvc", "cache") for pair in itertools.pairwise(path.parts))


def output_target(target: str | os.PathLike, directory: bool = False) -> Path:
    """The path an output is written to, checked before any work: a regular file (a directory,
    for `replace_dir`) or nothing yet. A symlink is written through to what it names when that
    is a regular file (or directory) in a writable folder, and kept; a link into DVC's cache is
    replaced, as DVC replaces it. Anything else -- a device, a FIFO, a socket, a dangling link, a
    link to one of those (`--out /dev/stdout`) -- is refused in one line, and nothing replaced."""
    from pipeline.common.errors import PipelineError

    target = Path(target)
    want = "a directory" if directory else "a regular file"
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return target
    if stat.S_ISLNK(mode):
        real = Path(os.path.realpath(target))
        if _in_dvc_cache(real):
            return target
        try:
            real_mode = os.stat(real).st_mode
        except OSError:
            raise PipelineError(f"{target}: a symlink to {real}, which does not exist; refusing "
                                "to write through it; remove the link or choose another "
                                "path") from None
        ok = stat.S_ISDIR(real_mode) if directory else stat.S_ISREG(real_mode)
        if not ok or not os.access(real.parent, os.W_OK):
            raise PipelineError(f"{target}: a symlink to {real}, not {want} in a writable "
                                "folder; refusing to write through it or replace it; choose "
                                "another path")
        return real
    if stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode):
        return target
    kind = ("a directory" if stat.S_ISDIR(mode) else
            "a regular file" if stat.S_ISREG(mode) else "a device, FIFO or socket")
    raise PipelineError(f"{target}: {kind}, not {want}; refusing to replace it with an output; "
                        "choose another path")


def check_outputs(*targets: str | os.PathLike, directories: tuple = ()) -> None:
    """Refuse, before a stage's work starts, every output path that could not be written (a
    device, a link to one, a file where a folder goes): one line, nothing changed."""
    for target in targets:
        if target is not None:
            output_target(target)
    for target in directories:
        if target is not None:
            output_target(target, directory=True)


def _raise_named(exc: BaseException, target: Path) -> None:
    """Re-raise a failure of writing a temporary; an OS error is said of the output it was for."""
    if isinstance(exc, OSError) and (exc.filename is None or TMP_SUFFIX in str(exc.filename)):
        exc.filename = str(target)
    raise exc


def _finish(commit: Callable[[], object], discard: Callable[[], object]) -> None:
    """Commit now, or at the end of the enclosing `together()` block."""
    pending = _PENDING.get()
    if pending is None:
        try:
            commit()
        finally:
            discard()
    else:
        pending.append((commit, discard))


@contextlib.contextmanager
def together(check: Callable[[], object] | None = None) -> Iterator[None]:
    """Every atomic write in the block waits; when the block (and then `check`) succeeds, all are
    renamed onto their targets, else all are discarded: outputs change all together or not at all.
    (Renames need no space, so a full disk fails in the block, before any output changed.)"""
    pending: list = []
    token = _PENDING.set(pending)
    try:
        yield
        if check is not None:
            check()
        for commit, _ in pending:
            commit()
    finally:
        _PENDING.reset(token)
        for _, discard in pending:
            discard()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target = output_target(target)
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
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        _raise_named(exc, target)
    _finish(lambda: os.replace(tmp_path, target), lambda: tmp_path.unlink(missing_ok=True))


def write_text(target: str | os.PathLike, text: str) -> None:
    """Atomically write `text` to `target`."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike, data) -> None:
    """Atomically write `data` as strict JSON (a NaN or an infinity is an error, not a bare
    `NaN`/`Infinity` that other JSON readers refuse)."""
    import json

    from pipeline.common.errors import PipelineError

    try:
        text = json.dumps(data, indent=2, allow_nan=False)
    except ValueError as exc:
        raise PipelineError(f"{target}: a value is not finite ({exc}); nothing was written") from exc
    write_text(target, text + "\n")


def replace_dir(target: str | os.PathLike, fill: Callable[[Path], object]) -> None:
    """Fill a fresh sibling directory, then swap it in: no mix of old and new files."""
    target = output_target(target, directory=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=TMP_SUFFIX, dir=target.parent))

    def swap() -> None:
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)

    try:
        fill(tmp)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_named(exc, target)
    _finish(swap, lambda: shutil.rmtree(tmp, ignore_errors=True))


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, shared: bool = False) -> Iterator[None]:
    """Hold an advisory lock on `path` (made if missing) for the block: exclusive, or shared
    with other shared holders. Released when the block ends or the process dies."""
    import fcntl

    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
