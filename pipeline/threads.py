"""Independent fits at once on the machine's cores, with results that do not depend on how many."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T, R = TypeVar("T"), TypeVar("R")


def in_threads(fit: Callable[[T], R], items: Iterable[T], threads_each: int = 1) -> list[R]:
    """[fit(item) for item in items], as many at once as the cores allow (`threads_each` cores
    a fit). The fits are independent and their results come back in order, so the bits do not
    depend on the core count; scikit-learn's Lasso and SVR release the GIL while they fit."""
    workers = max(1, (os.cpu_count() or 1) // threads_each)
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fit, items))
