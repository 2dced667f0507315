"""The one way this project fits a Lasso: the MLP's per-model warm start and input scales, the
Lasso-scaled SVR's column scales and the importance table all call it."""

from __future__ import annotations

import sys
import warnings
from typing import NamedTuple

import numpy as np


class LassoSettings(NamedTuple):
    """alpha, and how tightly the fit converges (params.yaml: train.lasso_*)."""

    alpha: float
    max_iter: int
    tol: float


def lasso_settings(train) -> LassoSettings:
    """train.lasso_*: the Lasso every model that fits one fits (the MLP's, the SVR member's)."""
    return LassoSettings(train.lasso_alpha, train.lasso_max_iter, train.lasso_tol)


def fit_lasso(x: np.ndarray, y: np.ndarray, settings: LassoSettings, who: str):
    """scikit-learn's Lasso fitted in float64, converged as tightly as `settings` say.

    A rare fit on near-collinear columns (a total beside its parts) stops at max_iter a little
    short of the tolerance; it is used as it is, with one line from `who` saying so instead of
    scikit-learn's warning (muted by a filter, not `catch_warnings`, which is process-wide and
    unsafe while fits run in threads, as they do here). Float64 whatever x is: scikit-learn
    fits float32 input in float32, and there the same rows gave one of two coefficient vectors
    from fit to fit (on this project's AVX-512 CPU; most likely its BLAS sums rounding by memory
    alignment), so nothing fitted from it was reproducible.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso

    warnings.filterwarnings("ignore", "Objective did not converge", ConvergenceWarning)
    fitted = Lasso(alpha=settings.alpha, max_iter=settings.max_iter, tol=settings.tol).fit(
        np.asarray(x, dtype=np.float64), y)
    if fitted.n_iter_ >= fitted.max_iter:
        print(f"{who}: note: a Lasso fit (alpha {settings.alpha:g}, {len(y)} rows) stopped at its "
              f"iteration limit short of tol {settings.tol:g}; its coefficients are used as they "
              "are", file=sys.stderr)
    return fitted
