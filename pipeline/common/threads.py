"""Independent fits at once on the machine's cores, with results that do not depend on how many."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T, R, U = TypeVar("T"), TypeVar("R"), TypeVar("U")


def _workers(threads_each: int) -> int:
    return max(1, (os.cpu_count() or 1) // threads_each)


def in_threads(fit: Callable[[T], R], items: Iterable[T], threads_each: int = 1) -> list[R]:
    """[fit(item) for item in items], as many at once as the cores allow (`threads_each` cores
    a fit). The fits are independent and their results come back in order, so the bits do not
    depend on the core count; scikit-learn's Lasso and SVR release the GIL while they fit."""
    with ThreadPoolExecutor(_workers(threads_each)) as pool:
        return list(pool.map(fit, items))


def fit_then_use(fit: Callable[[T], R], use: Callable[[R], U], items: Iterable[T],
                 threads_each: int = 1) -> list[U]:
    """[use(fit(item)) for item in items], on the cores as `in_threads` runs its fits.

    Every fit is queued before any use, so the uses of the first fits (a fold model's
    predictions) fill the cores the last fits leave idle: five folds on two cores fit in three
    rounds, and the fifth fit runs beside the first four folds' predictions. A use waits only
    for a fit that has already started (the queue is first in, first out), so none can block
    the others for good; the results come back in order, whatever finished first."""
    with ThreadPoolExecutor(_workers(threads_each)) as pool:
        fits = [pool.submit(fit, item) for item in items]
        uses = [pool.submit(lambda done: use(done.result()), future) for future in fits]
        return [future.result() for future in uses]
