"""leaderboard.csv: the log of submissions `house-prices submit` keeps (commit, experiment,
params, both CVs, Kaggle's ref, the public score), read by `house-prices experiments`. One writer
at a time (a lock beside it), each rewrite atomic, every text cell formula-safe."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

from pipeline.common.atomic import file_lock, write_text
from pipeline.common.errors import PipelineError, safe_cell

# cv_rmse is on every row, as Kaggle scores every test house; the no-outlier CV beside it (empty
# in rows logged before it was, and for metrics that lack it).
LEADERBOARD_COLUMNS = ("utc_time", "commit", "experiment", "params_sha1", "cv_rmse", "cv_rmse_std",
                       "cv_rmse_no_outliers", "public_score", "submission_ref")


def read_log(path: Path) -> list[dict]:
    """The leaderboard log's rows; one line for a log that is not one (binary, or columns lost)."""
    if not path.is_file():
        return []
    restore = f"restore it (git checkout {path.name}) or move it aside"
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise PipelineError(f"{path}: not a readable leaderboard log ({type(exc).__name__}); "
                            f"{restore}") from None
    missing = [c for c in LEADERBOARD_COLUMNS if c not in header]
    if missing and (rows or header):
        raise PipelineError(f"{path}: not a leaderboard log: no column(s) {', '.join(missing)}; "
                            f"{restore}")
    return rows


def sheet_cell(value) -> str:
    """A log cell a spreadsheet opens as text: a number as it is, anything else formula-safe."""
    text = "" if value is None else str(value)
    try:
        float(text)
        return text
    except ValueError:
        return safe_cell(text, 500) if text else text


def write_log(path: Path, rows: list[dict]) -> None:
    """Rewrite the whole log atomically (a crash leaves the old file, never half a row); every
    cell formula-safe (an experiment named `=HYPERLINK(...)` is stored as text)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=LEADERBOARD_COLUMNS, lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows([{k: sheet_cell(r.get(k)) for k in LEADERBOARD_COLUMNS} for r in rows])
    write_text(path, out.getvalue())


@contextlib.contextmanager
def log_lock(path: Path):
    """One writer of the log at a time: concurrent submits each read and rewrite it under an
    exclusive lock on a file beside it, so no row is lost between a read and a rewrite."""
    with file_lock(path.with_name(f".{path.name}.lock")):
        yield


def append_leaderboard(path: Path, row: dict) -> None:
    """Append one row (header on first use), under the log's lock."""
    with log_lock(path):
        write_log(path, [*read_log(path), row])


def update_logged(path: Path, row: dict, **changes: str) -> None:
    """Change fields of the logged row equal to `row` (and `row` itself), in one rewrite."""
    with log_lock(path):
        rows = read_log(path)
        for logged in rows:
            if all(logged.get(key) == sheet_cell(value) for key, value in row.items()):
                logged.update(changes)
        write_log(path, rows)
    row.update(changes)
