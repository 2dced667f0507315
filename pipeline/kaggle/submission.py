"""The submission contract, checked before a file is written and again before it is sent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.common.atomic import atomic_path
from pipeline.common.errors import PipelineError, listing

COLUMNS = ("Id", "SalePrice")


def validate_submission(frame: pd.DataFrame, expected_ids: np.ndarray) -> None:
    """Header Id,SalePrice; exactly the test Ids in order; every price finite and positive."""
    if tuple(frame.columns) != COLUMNS:  # its content is not echoed: it may be any file
        raise PipelineError(f"submission: header must be Id,SalePrice; this file's first line "
                            f"({len(frame.columns)} column(s)) is not; is it a submission?")
    ids = pd.to_numeric(frame["Id"], errors="coerce")
    if ids.isna().any():
        raise PipelineError("submission: every Id must be an integer")
    ids = ids.to_numpy()
    dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique()
    if len(dup):
        raise PipelineError(f"submission: duplicate Ids {listing(dup)}")
    expected = np.asarray(expected_ids)
    missing = np.setdiff1d(expected, ids)
    extra = np.setdiff1d(ids, expected)
    if len(missing) or len(extra):
        parts = []
        if len(missing):
            parts.append(f"missing Ids {listing(missing)}")
        if len(extra):
            parts.append(f"unknown Ids {listing(extra)}")
        raise PipelineError(f"submission: {'; '.join(parts)} (expected the {len(expected)} test Ids)")
    if not np.array_equal(ids, expected):
        raise PipelineError("submission: Ids are not in the order of test.csv")
    price = pd.to_numeric(frame["SalePrice"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(price) & (price > 0))
    if bad.any():
        raise PipelineError(f"submission: SalePrice must be finite and positive; bad for Ids "
                            f"{listing(ids[bad])}")


def write_submission(path: str | os.PathLike, ids: np.ndarray, prices: np.ndarray) -> Path:
    """Validate, then write atomically: an invalid prediction never reaches submission.csv."""
    frame = pd.DataFrame({"Id": np.asarray(ids, dtype=np.int64),
                          "SalePrice": np.asarray(prices, dtype=np.float64)})
    validate_submission(frame, ids)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4f", lineterminator="\n")
    return Path(path)


def read_submission(path: str | os.PathLike) -> pd.DataFrame:
    from pipeline.common.inputs import read_csv

    return read_csv(path, "run dvc repro to create it")
