"""Talking to Kaggle through the official `kaggle` client: credentials, retries, one-line errors.

Credentials are looked up where the client looks (an access token in KAGGLE_API_TOKEN or
~/.kaggle/access_token; a legacy key in KAGGLE_USERNAME/KAGGLE_KEY or kaggle.json) and are never
printed: messages name where they came from, not what they are.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from pipeline.common.errors import PipelineError
from pipeline.config.params import KaggleParams

T = TypeVar("T")
NO_CREDENTIALS = (
    "no Kaggle credentials: save your API token (https://www.kaggle.com/settings, 'Create New "
    "Token') in ~/.kaggle/access_token or KAGGLE_API_TOKEN, or put kaggle.json in ~/.kaggle/ "
    "(or set KAGGLE_USERNAME and KAGGLE_KEY)")


class KaggleError(PipelineError):
    """The Kaggle API refused or could not be reached; the message says what to do."""


def _log(message: str) -> None:
    print(f"kaggle: {message}", file=sys.stderr, flush=True)


def credential_source() -> str | None:
    """Where the kaggle client will find credentials, or None if it will find none."""
    env = os.environ
    if env.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    home = Path(os.path.expanduser("~/.kaggle"))
    for name in ("access_token", "access_token.txt"):
        token = home / name
        if token.is_file() and token.read_text(encoding="utf-8", errors="replace").strip():
            return f"~/.kaggle/{name}"
    config = Path(env.get("KAGGLE_CONFIG_DIR") or home) / "kaggle.json"
    return str(config) if config.is_file() else None


def warn_if_readable_by_others(source: str) -> None:
    """A credentials file others can read gets one warning line (the client's own is hidden)."""
    path = Path(os.path.expanduser(source))
    if not path.is_file():
        return  # an environment variable
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        _log(f"warning: {source} can be read by other users of this machine; run "
             f"'chmod 600 {source}'")


def connect() -> Any:
    """An authenticated KaggleApi, or KaggleError saying where credentials belong."""
    source = credential_source()
    if source is None:
        raise KaggleError(NO_CREDENTIALS)
    warn_if_readable_by_others(source)
    # The client prints its own help and calls exit() on failure: keep that to one line of ours.
    with contextlib.redirect_stdout(io.StringIO()):
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        try:
            api.authenticate()
        except (SystemExit, Exception) as exc:
            raise KaggleError(f"the Kaggle client could not use the credentials in {source}; "
                              "replace them with a new token from https://www.kaggle.com/settings"
                              ) from exc
    _honour_api_environment(api)
    return api


def _honour_api_environment(api: Any) -> None:
    """Point KaggleApi at the endpoint KAGGLE_API_ENVIRONMENT names, as kagglesdk's own client
    does (TEST is http://localhost:7777); KaggleApi on its own only knows PROD and LOCALHOST."""
    from kagglesdk import KaggleClient
    from kagglesdk.kaggle_env import KaggleEnv, get_env

    env = get_env()
    if env in (KaggleEnv.PROD, KaggleEnv.LOCAL):
        return
    values = api.config_values

    def build_client():
        return KaggleClient(env=env, username=values.get(api.CONFIG_NAME_USER),
                            password=values.get(api.CONFIG_NAME_KEY),
                            api_token=values.get(api.CONFIG_NAME_TOKEN),
                            response_processor=api.get_response_processor())

    api.build_kaggle_client = build_client


def describe_status(action: str, status: int | None, params: KaggleParams) -> str:
    page = f"https://www.kaggle.com/competitions/{params.competition}"
    if status == 401:
        return (f"{action}: Kaggle rejected the credentials (HTTP 401): the key is wrong or "
                f"expired; create a new token at https://www.kaggle.com/settings")
    if status == 403:
        return (f"{action}: Kaggle refused access (HTTP 403): accept the competition rules at "
                f"{page}/rules, then try again")
    if status == 404:
        return (f"{action}: competition '{params.competition}' not found (HTTP 404); check "
                "kaggle.competition in params.yaml")
    if status == 429:
        return (f"{action}: still rate limited by Kaggle (HTTP 429) after {params.retries} "
                "retries; wait a few minutes and try again")
    return f"{action}: the Kaggle API answered HTTP {status}; try again later"


def with_deadline(fn: Callable[[], T], timeout_s: float, action: str) -> T:
    """fn() in a daemon thread; KaggleError if it has not returned within timeout_s.

    The client sets no timeout on its HTTP requests, so a server that accepts the connection and
    never answers would hang the caller forever. A call that is given up on is left to finish or
    fail on its own; being a daemon thread, it never keeps the process from exiting.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread as it is
            outcome["error"] = exc

    worker = threading.Thread(target=target, name=f"kaggle-{action}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise KaggleError(f"{action}: the Kaggle API did not answer within {timeout_s:g} s "
                          "(kaggle.timeout_s); try again later")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def call(action: str, fn: Callable[[], T], params: KaggleParams,
         sleep: Callable[[float], None] = time.sleep) -> T:
    """Run one API call with a deadline: retry HTTP 429 with exponential backoff, map failures
    to KaggleError."""
    import requests

    delay = params.retry_backoff_s
    for attempt in range(params.retries + 1):
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return with_deadline(fn, params.timeout_s, action)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status == 429 and attempt < params.retries:
                _log(f"{action}: rate limited (HTTP 429); retry {attempt + 1}/{params.retries} "
                     f"in {delay:g} s")
                sleep(delay)
                delay *= 2
                continue
            raise KaggleError(describe_status(action, status, params)) from exc
        except requests.TooManyRedirects as exc:
            raise KaggleError(f"{action}: the Kaggle API sent redirect after redirect (a loop: a "
                              "proxy or a misconfigured endpoint?); try again later") from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise KaggleError(f"{action}: cannot reach the Kaggle API (network down?); check the "
                              "connection and try again") from exc
        except ValueError as exc:  # JSONDecodeError: a 200 answer that is an HTML page
            raise KaggleError(f"{action}: the Kaggle API answered with something that is not "
                              "JSON (a login page, a proxy or an outage?); try again later") from exc
        except RecursionError as exc:  # JSON nested deeper than the decoder's stack
            raise KaggleError(f"{action}: the Kaggle API answered with JSON nested too deep to "
                              "be an answer of its (a broken proxy?); try again later") from exc
    raise AssertionError("unreachable")


def check_archive(zip_path: Path, max_bytes: int | None = None) -> zipfile.ZipFile:
    """Open a downloaded archive, refusing one with an entry that could escape its folder or
    that would inflate to more than `max_bytes` (a zip bomb), before anything is extracted."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise ValueError("the archive is corrupted (not a valid zip)") from exc
    for name in archive.namelist():
        path = PurePosixPath(name.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or (name[1:2] == ":"):
            archive.close()
            raise ValueError(f"the archive has an unsafe entry {name!r} (absolute or '..' path)")
    too_big = [i for i in archive.infolist() if max_bytes is not None and i.file_size > max_bytes]
    if too_big:
        archive.close()
        raise ValueError(f"the archive's {too_big[0].filename} would inflate to "
                         f"{too_big[0].file_size:,} bytes, over download.max_file_mb; refused")
    return archive


def download_bounded(params: KaggleParams, directory: Path, max_bytes: int) -> Path:
    """download_competition_zip in a child process that may not write a file past `max_bytes`
    (the OS refuses the write), watched from here: a stream that reaches the limit is cut then
    (the child is killed, so nothing keeps writing after it was given up on), one that outlasts
    kaggle.timeout_s too. The Kaggle client saves the archive itself; this bounds its disk use."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_download_child, args=(params, directory, max_bytes, send),
                            daemon=True)
    child.start()
    send.close()
    deadline = time.monotonic() + params.timeout_s * (params.retries + 1)
    try:
        while not receive.poll(0.2):
            if any(p.is_file() and p.stat().st_size >= max_bytes for p in directory.iterdir()):
                raise KaggleError(f"download: the archive is larger than download.max_file_mb "
                                  f"({max_bytes:,} bytes); cut off")
            if time.monotonic() > deadline or not child.is_alive():
                raise KaggleError(f"download: the Kaggle API did not answer within "
                                  f"{params.timeout_s:g} s (kaggle.timeout_s); try again later")
        kind, text = receive.recv()
    finally:
        if child.is_alive():
            child.kill()
        child.join()
    if kind != "ok":
        raise KaggleError(text)
    return Path(text)


def _download_child(params: KaggleParams, directory: Path, max_bytes: int, send) -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write, not a killed process
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes if hard == resource.RLIM_INFINITY
                                               else min(max_bytes, hard), hard))
    try:
        send.send(("ok", str(download_competition_zip(connect(), params, directory))))
    except PipelineError as exc:
        send.send(("error", str(exc)))
    except BaseException as exc:  # said as one line by the parent
        send.send(("error", f"download: {type(exc).__name__}: {exc}"))


def download_competition_zip(api: Any, params: KaggleParams, directory: Path) -> Path:
    """Fetch the competition's data archive into `directory` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    call("download", lambda: api.competition_download_files(
        params.competition, path=str(directory), force=True, quiet=True), params)
    archives = sorted(directory.glob("*.zip"))
    if not archives:
        raise KaggleError(f"download: the Kaggle client saved no archive for {params.competition}")
    return archives[0]
