"""Where the competition's files come from: the Kaggle API, an http(s) mirror or a folder, each
file streamed to a temporary file and kept only when its SHA-1 matches params.yaml's."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from pipeline.common.errors import PipelineError, safe_text
from pipeline.config.params import DownloadParams, FileSpec, KaggleParams

CHUNK_BYTES = 1 << 16
ROLES = ("train", "test")


class SourceFailed(Exception):
    """This source could not supply this file; the next source is tried."""


class SourceUnusable(SourceFailed):
    """This source cannot supply any file (no credentials, no connection): said once, and not
    tried again for the other file."""


def _log(message: str) -> None:
    print(f"download: {message}", file=sys.stderr, flush=True)


def _copy_hashing(reader, dest: Path, total: int | None, label: str, max_bytes: int,
                  deadline_s: float | None = None) -> str:
    """Stream `reader` into `dest` with a progress bar; return the SHA-1 of what was written.

    A source that sends more than `max_bytes` is abandoned as soon as it passes them (an endless
    or wrong stream), and so is one still sending after `deadline_s` (a slow drip: each read
    returns what has arrived, so a byte every few seconds never hides the clock).
    """
    if total is not None and total > max_bytes:
        raise SourceFailed(f"{total:,} bytes announced, over download.max_file_mb")
    digest = hashlib.sha1()
    written = 0
    read = getattr(reader, "read1", reader.read)
    ends = None if deadline_s is None else time.monotonic() + deadline_s
    with open(dest, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=label,
                                       disable=None, leave=False, file=sys.stderr) as bar:
        while chunk := read(CHUNK_BYTES):
            written += len(chunk)
            if written > max_bytes:
                raise SourceFailed(f"more than {max_bytes:,} bytes, over download.max_file_mb")
            if ends is not None and time.monotonic() > ends:
                raise SourceFailed(f"not finished after download.deadline_s ({deadline_s:g} s; "
                                   f"{written:,} bytes so far); abandoned")
            digest.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def fetch_url(url: str, dest: Path, timeout_s: float, max_bytes: int,
              deadline_s: float | None = None) -> str:
    """Download `url` into `dest`; return its SHA-1. Any failure becomes SourceFailed."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length")
            return _copy_hashing(response, dest, int(length) if length and length.isdigit()
                                 else None, url, max_bytes, deadline_s)
    except urllib.error.HTTPError as exc:
        raise SourceFailed(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise SourceUnusable(f"cannot connect ({exc.reason})") from exc
    except http.client.IncompleteRead as exc:
        raise SourceFailed(f"connection closed after {len(exc.partial)} bytes (truncated)") from exc
    except TimeoutError as exc:
        raise SourceFailed(f"no data for {timeout_s:g} s (timed out)") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise SourceFailed(f"network error ({exc})") from exc


def fetch_dir(directory: Path, name: str, dest: Path, max_bytes: int) -> str:
    """Copy `directory/name` into `dest`; return its SHA-1."""
    src = directory / name
    try:
        if not src.is_file():
            raise SourceFailed(f"{safe_text(src, 120)} does not exist")
        with open(src, "rb") as reader:
            return _copy_hashing(reader, dest, src.stat().st_size, str(src), max_bytes)
    except OSError as exc:  # a path too long, a folder not readable: the next source is tried
        raise SourceFailed(f"cannot read {safe_text(src, 120)} ({exc.strerror or exc})") from exc


Fetcher = Callable[[FileSpec, Path], str]


def kaggle_fetcher(kaggle: KaggleParams, max_bytes: int, stack: contextlib.ExitStack) -> Fetcher:
    """Fetch the competition archive once (on first use), then read train.csv/test.csv from it."""
    state: dict[str, Path] = {}

    def fetch(spec: FileSpec, dest: Path) -> str:
        from pipeline.kaggle import api as kaggle_api
        member = "train.csv" if "train" in spec.name else "test.csv"
        try:
            if "zip" not in state:
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kaggle-")))
                state["zip"] = kaggle_api.download_bounded(kaggle, tmp, max_bytes)
            with kaggle_api.check_archive(state["zip"], max_bytes) as archive:
                if member not in archive.namelist():
                    raise SourceFailed(f"{member} is not in the Kaggle archive")
                info = archive.getinfo(member)
                with archive.open(info) as reader:
                    return _copy_hashing(reader, dest, info.file_size, f"kaggle:{member}",
                                         max_bytes)
        except kaggle_api.KaggleError as exc:
            raise SourceUnusable(f"{exc}; skipped") from exc
        except ValueError as exc:
            raise SourceFailed(str(exc)) from exc

    return fetch


def make_fetcher(source: str, params: DownloadParams, kaggle: KaggleParams | None,
                 stack: contextlib.ExitStack) -> Fetcher:
    """Turn one entry of download.sources into a function that fetches a file and hashes it."""
    max_bytes = int(params.max_file_mb * 1_000_000)
    if source.startswith(("http://", "https://")):
        base = source if source.endswith("/") else source + "/"
        return lambda spec, dest: fetch_url(base + spec.name, dest, params.timeout_s, max_bytes,
                                            params.deadline_s)
    if source == "kaggle":
        if kaggle is None:
            raise PipelineError("download: the kaggle source needs the kaggle section of params.yaml")
        return kaggle_fetcher(kaggle, max_bytes, stack)
    directory = Path(source)
    return lambda spec, dest: fetch_dir(directory, spec.name, dest, max_bytes)


def fetch_verified(role: str, spec: FileSpec, sources: list[tuple[str, Fetcher]],
                   dest: Path, unusable: dict[str, str]) -> str:
    """Fill `dest` from the first source whose copy hashes to spec.sha1; return that source.
    `unusable` (source -> why) grows with the sources that cannot supply any file."""
    reasons = []
    for source, fetcher in sources:
        label = safe_text(source, 80)  # a huge entry must not make a huge line
        if source in unusable:
            reasons.append(f"{label}: {unusable[source]}")
            continue
        try:
            actual = fetcher(spec, dest)
        except SourceUnusable as exc:
            unusable[source] = str(exc)
            reasons.append(f"{label}: {exc}")
            _log(f"{label}: {exc}; trying the next source")
            continue
        except SourceFailed as exc:
            reasons.append(f"{label}: {exc}")
            _log(f"{role} ({spec.name}) from {label}: {exc}; trying the next source")
            continue
        if actual == spec.sha1:
            _log(f"{role} ({spec.name}) from {label}: SHA-1 {actual} verified")
            return source
        reasons.append(f"{label}: SHA-1 mismatch")
        _log(f"{role} ({spec.name}) from {label}: SHA-1 mismatch (expected {spec.sha1}, "
             f"got {actual}); trying the next source")
    raise PipelineError(
        f"download: no source supplied a verified {spec.name} ({'; '.join(reasons)}); "
        "check download.sources in params.yaml or restore data/bundled/")
