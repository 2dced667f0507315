"""Reading input files with one clear error for a missing or unreadable file."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from pipeline.common.errors import PipelineError


def _existing(path: str | os.PathLike, hint: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: not found; {hint}")
    return path


# What a CSV this project reads may look like before pandas parses it: pandas' work grows with
# the header's width (5 million names took it past 15 minutes) and a cell's length (one 10 MB
# category became a 45 GiB one-hot). The competition's files: 81 columns, lines under 1 KB.
MAX_COLUMNS = 1_000
MAX_LINE_BYTES = 65_536


def check_csv_shape(path: Path) -> None:
    """Refuse, with one line, a CSV whose header or any line is beyond the stated limits."""
    with open(path, "rb") as fh:
        for number, line in enumerate(iter(lambda: fh.readline(MAX_LINE_BYTES + 1), b""), 1):
            if len(line) > MAX_LINE_BYTES:
                raise PipelineError(f"{path}: line {number} is longer than {MAX_LINE_BYTES:,} "
                                    "bytes (a cell or a header far beyond the competition's); "
                                    "is this the competition's file?")
            if number == 1 and line.count(b",") + 1 > MAX_COLUMNS:
                raise PipelineError(f"{path}: the header has {line.count(b',') + 1:,} columns, "
                                    f"more than {MAX_COLUMNS:,}; is this the competition's file?")


def read_csv(path: str | os.PathLike, hint: str, **kwargs) -> pd.DataFrame:
    path = _existing(path, hint)
    check_csv_shape(path)
    try:
        frame = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError as exc:
        raise PipelineError(f"{path}: the file is empty; {hint}") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise PipelineError(f"{path}: not a readable CSV ({exc})") from exc
    if frame.empty:
        raise PipelineError(f"{path}: has a header but no rows; {hint}")
    return frame


def read_json(path: str | os.PathLike, hint: str) -> dict:
    """A JSON object (a truncated file is named as such)."""
    path = _existing(path, hint)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: not valid JSON (truncated?) ({exc}); {hint}") from exc
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a JSON object; {hint}")
    return data


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, also reading exponent floats without a dot (`1e-4`) as numbers, as
    YAML 1.2 and DVC's own reader (for `dvc exp show`, `-S`) do; PyYAML alone makes them strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: no arbitrary objects


def read_yaml(path: str | os.PathLike, hint: str) -> Any:
    path = _existing(path, hint)
    try:
        return load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML ({exc})") from exc
    except UnicodeDecodeError:
        raise PipelineError(f"{path}: not UTF-8 text (saved as UTF-16?); save it as UTF-8") from None
    except RecursionError:
        raise PipelineError(f"{path}: nested too deeply to be a parameters file") from None


def read_npz(path: str | os.PathLike, hint: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz archive; never unpickles (a file could carry any object)."""
    import zipfile

    path = _existing(path, hint)
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with data:
            return {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        if "pickle" in str(exc):  # numpy's own advice (load it unsafely) is not ours to give
            detail = "it holds pickled Python objects, which are never loaded"
        raise PipelineError(f"{path}: not a readable .npz archive (truncated or corrupt: "
                            f"{detail}); {hint}") from exc
