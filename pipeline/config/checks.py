"""How a params.yaml value is checked: the stated maxima every accepted value runs within, and
one line that names the key and the fix for each refusal."""

from __future__ import annotations

import math
from typing import Any

from pipeline.common.errors import PipelineError

# Stated maxima for sizes and counts: every value the check accepts must run to its end on an
# ordinary machine (a 2-core CPU with a few GB free, or one GPU) instead of exhausting memory or
# running for days. Each is far above any value a search has used (docs/parameters.md).
MAX_FOLDS = 100            # the competition has 1,460 training rows
MAX_SEED = 2**32 - 1       # numpy's and torch's seeds
MAX_N_SEEDS = 50           # models per fold and encoding
MAX_WIDTH = 4096           # units in one hidden layer
MAX_LAYERS = 8             # hidden layers
MAX_HIDDEN_WEIGHTS = 20_000_000  # weights between hidden layers, per model (15 models train at once)
MAX_EPOCHS = 10_000        # the default stops early at ~50
MAX_BATCH_SIZE = 65_536    # rows per optimiser step (more than the data is one full batch)
MAX_BINS = 64              # piecewise-linear bins per numeric column
MAX_VIEWS = 8              # encodings the MLP trains on
MAX_LR = 1.0               # Adam/SGD steps beyond this only diverge (the default is 0.00078)
MAX_SOURCE_LENGTH = 2048  # characters of one download source (URL prefix or folder)
MAX_LASSO_ALPHA = 0.1      # on standardized columns and log price, far less empties every Lasso


def fail(key: str, message: str) -> None:
    raise PipelineError(f"params.yaml: {key} {message}; fix it in params.yaml or with -S {key}=... "
                        "(a failed `dvc exp run -S` leaves its value there: `git checkout "
                        "params.yaml` restores it)")


def check_number(key: str, value: Any, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, integer: bool = False) -> float:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):
        fail(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        fail(key, f"must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        fail(key, f"must be {'<' if high_open else '<='} {high}, got {value!r}")
    return value


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        fail(key, f"must be true or false, got {value!r}")
    return value


def check_names(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        fail(key, f"must be a list of names, got {value!r}")
    return tuple(value)
