"""Blending members' log prices: equal weights, non-negative weights summing to one, or a ridge
meta-model, and the nested out-of-fold blend whose weights never see the rows they score. A
library for the blend stage, the sweep (which scores each trial's blend) and bench/."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from pipeline.config.params import BLEND_METHODS

# Weight of the sum-to-one row in the constrained least squares; large enough that the weights
# sum to one to ~1e-9, after which they are renormalised exactly.
SUM_TO_ONE_WEIGHT = 1e4


def fit_weights(preds: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to one minimising ||preds @ w - y|| ([N, M] -> [M])."""
    from scipy.optimize import nnls  # here: the default equal blend starts without SciPy's solvers

    n, m = preds.shape
    if m == 1:
        return np.ones(1)
    scale = SUM_TO_ONE_WEIGHT * np.sqrt(n)
    a = np.vstack([preds, np.full((1, m), scale)])
    b = np.concatenate([y, [scale]])
    weights, _ = nnls(a, b)
    return weights / weights.sum()


class Blender(RegressorMixin, BaseEstimator):
    """fit(preds [N, M], y) / predict(preds) for each blend method: a scikit-learn estimator."""

    def __init__(self, method: str = "equal", ridge_alpha: float = 1.0):
        self.method, self.ridge_alpha = method, ridge_alpha

    def fit(self, preds: np.ndarray, y: np.ndarray) -> Blender:
        preds, y = validate_data(self, preds, y, dtype=np.float64, y_numeric=True)
        if self.method not in BLEND_METHODS:
            raise ValueError(f"blend method must be one of {', '.join(BLEND_METHODS)}, got "
                             f"{self.method!r}")
        if self.method == "equal":
            self.weights_, self.intercept_ = np.full(preds.shape[1], 1 / preds.shape[1]), 0.0
        elif self.method == "weights" or preds.shape[1] == 1:
            self.weights_, self.intercept_ = fit_weights(preds, y), 0.0
        else:
            from sklearn.linear_model import Ridge

            ridge = Ridge(alpha=self.ridge_alpha).fit(preds, y)
            self.weights_, self.intercept_ = ridge.coef_, float(ridge.intercept_)
        return self

    def predict(self, preds: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        preds = validate_data(self, preds, dtype=np.float64, reset=False)
        if len(self.weights_) == 1 and self.intercept_ == 0.0:
            return preds[:, 0] * self.weights_[0]  # exactly the member when it is alone
        return preds @ self.weights_ + self.intercept_


def member_matrix(ensemble, by_member: dict[str, np.ndarray]) -> np.ndarray:
    """The members' log prices [N, M], in ensemble.members' order (the order fixes the sums'
    rounding: every blend of the same members stacks them this way)."""
    return np.stack([by_member[name] for name in ensemble.members], axis=1)


def fit_rows(outlier: np.ndarray, exclude_outliers: bool) -> np.ndarray:
    """The rows blend weights are fitted on: without the outlier rows when a blended member
    left them out of its training (its prices there come from models that never saw such a
    house; predictions.excludes_outliers)."""
    return ~outlier if exclude_outliers else np.ones(len(outlier), dtype=bool)


def nested_oof(preds: np.ndarray, y: np.ndarray, fit_rows: np.ndarray, fold_of_row: np.ndarray,
               method: str, ridge_alpha: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each fold's rows blended with weights fitted on the other folds' rows (fit_rows only)."""
    oof = np.empty(len(y))
    fold_weights = []
    for fold in np.unique(fold_of_row):
        held = fold_of_row == fold
        blender = Blender(method, ridge_alpha).fit(preds[~held & fit_rows], y[~held & fit_rows])
        oof[held] = blender.predict(preds[held])
        fold_weights.append(blender.weights_)
    return oof, fold_weights
