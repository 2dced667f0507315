"""Where a sweep's Optuna study lives: an SQL database (SQLite by default, PostgreSQL for many
machines) or Optuna's journal file; one clear line for a storage it cannot open or that goes
away mid-study."""

from __future__ import annotations

import contextlib
import re
import time
from urllib.parse import urlparse

from pipeline.common.errors import PipelineError

SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")
JOURNAL = "journal"


def open_storage(url: str):
    """An Optuna storage (SQL database or journal file), or one clear line for a URL it cannot use."""
    import sqlalchemy.exc

    scheme = urlparse(url).scheme.split("+", 1)[0]
    if scheme == JOURNAL:
        return _journal_storage(url)
    if scheme not in SQL_SCHEMES:
        raise PipelineError(f"sweep: storage URL scheme '{scheme or redact(url, url)}' is not supported; use "
                            "sqlite:///path.db, postgresql://user:pass@host/db, mysql://... or "
                            "journal:///path/study.log")
    url = _with_driver(url, scheme)
    for attempt in range(3):  # workers starting together race to create the tables
        try:
            return _rdb_storage(url, scheme)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as exc:
            racing = "already exists" in str(exc) or "UNIQUE constraint" in str(exc)
            if not racing or attempt == 2:
                raise _unusable(url, exc) from exc
            time.sleep(0.5)
        except ImportError as exc:
            raise PipelineError(f"sweep: the database driver for {redact(url, url)} is not "
                                f"installed ({exc}); python -m pip install {exc.name or 'it'}"
                                ) from exc
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
            raise _unusable(url, exc) from exc
    raise AssertionError("unreachable")


# PostgreSQL drivers SQLAlchemy knows, in the order a bare postgresql:// URL tries them: psycopg
# (3, the `postgres` extra, SQLAlchemy's default) first, then psycopg2.
POSTGRES_DRIVERS = (("psycopg", "psycopg"), ("psycopg2", "psycopg2"))


def _with_driver(url: str, scheme: str) -> str:
    """A bare postgresql:// URL with the PostgreSQL driver that is installed, so the README's
    URL works with either; one line naming the extra when neither is."""
    import importlib.util

    if scheme != "postgresql" or urlparse(url).scheme != "postgresql":
        return url  # not PostgreSQL, or the URL names its driver (postgresql+psycopg2://)
    for driver, module in POSTGRES_DRIVERS:
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}" + url[len("postgresql"):]
    raise PipelineError("sweep: a postgresql:// storage needs a PostgreSQL driver: python -m pip "
                        "install -e '.[postgres]' (psycopg), then run the same command again")


def _journal_storage(url: str):
    """Optuna's journal storage in one append-only file (journal:///absolute/path or
    journal://relative/path); workers on several machines can share it on a shared disk."""
    from pathlib import Path

    import optuna

    path = Path(url[len(JOURNAL) + 3:])
    if not path.parent.is_dir():
        raise PipelineError(f"sweep: cannot open the study storage {url} (no folder "
                            f"{path.parent}); create it or give another path")
    try:
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    except OSError as exc:
        raise _unusable(url, exc) from exc


def storage_errors():
    """The exceptions a study's storage raises when it goes away (a database server stopped, a
    network cut)."""
    import optuna
    import sqlalchemy.exc

    return (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)


@contextlib.contextmanager
def lost_storage_is_one_line(url: str):
    """Turn a storage that fails mid-study into one line: nothing is lost (completed trials are
    in the storage; this worker's running ones go stale and are re-queued), so the same command
    resumes the study once the storage is back. The RDB storage's own notes while it fails
    ("Caught an error from sqlalchemy ... falling back") are muted for the block: the storage
    either recovers (the note was noise) or fails for good (the one line says so)."""
    import logging

    notes = logging.getLogger(RDB_STORAGE_LOGGER)
    level = notes.level
    notes.setLevel(logging.ERROR)
    try:
        yield
    except storage_errors() as exc:
        detail = redact(str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__, url)
        raise PipelineError(
            f"sweep: lost the study storage {redact(url, url)} ({detail}); completed trials are "
            "kept: run the same command again once it is reachable and the study resumes") from exc
    finally:
        notes.setLevel(level)


RDB_STORAGE_LOGGER = "optuna.storages._rdb.storage"  # Optuna's SQL storage logs under this name


SECRET_KEYS = ("password", "passwd", "pwd", "secret", "token", "key")


def _secrets(url: str) -> list[str]:
    """The secrets a storage URL holds: the userinfo's password (an unescaped '@' in it
    included: the host is after the last '@') and any query value named like one."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    found = []
    userinfo = parts.netloc.rpartition("@")[0]
    if ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True)
              if any(word in k.lower() for word in SECRET_KEYS) and v]
    return [f for f in found if f]


def redact(text: str, url: str) -> str:
    """`text` (the URL itself, or an error message about it) with the URL's secrets as ***."""
    from urllib.parse import quote

    from pipeline.common.errors import safe_text

    secrets = set()
    for secret in _secrets(url):  # whole, URL-escaped, and the pieces a parser may quote
        secrets |= {secret, quote(secret, safe="")}
        secrets |= {piece for piece in re.split(r"[^A-Za-z0-9]+", secret) if len(piece) >= 3}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return safe_text(text, 300)


def _unusable(url: str, exc: Exception) -> PipelineError:
    detail = redact(str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__, url)
    return PipelineError(f"sweep: cannot open the study storage {redact(url, url)} ({detail}); "
                         "check the URL and that the database is reachable")


def _rdb_storage(url: str, scheme: str):
    """Without Optuna's own heartbeat settings: its stale-trial check never fails a trial that
    has no heartbeat record yet, so the project's attribute (fail_stale_trials) does it for every
    storage, and one mechanism is simpler than two that must agree."""
    import optuna

    return optuna.storages.RDBStorage(
        url, engine_kwargs={"connect_args": {"timeout": 30}} if scheme == "sqlite" else None)
