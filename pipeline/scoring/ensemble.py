"""Averaging fold and seed models, the one rule shared by CV scoring and the submission."""

from __future__ import annotations

import numpy as np


def combine_log_predictions(log_preds: np.ndarray, average: str) -> np.ndarray:
    """[K, N] log-price predictions -> [N] log prices.

    `price` averages exp(prediction), as the d2l book does; `log` averages in log space
    (a geometric mean of prices), which is what the log-RMSE metric rewards.
    """
    log_preds = np.asarray(log_preds, dtype=np.float64)
    if average == "log":
        return log_preds.mean(axis=0)
    # log(mean(exp(p))) computed stably
    top = log_preds.max(axis=0)
    return top + np.log(np.exp(log_preds - top).mean(axis=0))


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(true)) ** 2)))
