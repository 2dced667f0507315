"""Reading input files with one clear error for a missing or unreadable file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from pipeline.errors import PipelineError


def _existing(path: str | os.PathLike, hint: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: not found; {hint}")
    return path


def read_csv(path: str | os.PathLike, hint: str, **kwargs) -> pd.DataFrame:
    path = _existing(path, hint)
    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise PipelineError(f"{path}: not a readable CSV ({exc})") from exc


def read_yaml(path: str | os.PathLike, hint: str) -> Any:
    path = _existing(path, hint)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML ({exc})") from exc


def read_npz(path: str | os.PathLike, hint: str) -> dict[str, np.ndarray]:
    with np.load(_existing(path, hint)) as data:
        return {k: data[k] for k in data.files}
