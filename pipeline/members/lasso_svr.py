"""SVR whose RBF kernel measures each column on the scale of its Lasso coefficient.

An RBF SVR on the ~330 standardized columns as they are would weigh them alike, so the one-hot
levels of minor categories would count as much in its distances as the living area (a plain SVR
member did, until tag svr-member-2026-11). Here each fold first fits a Lasso
on its own training rows; column j is multiplied by |coef_j| ** power (normalised to mean 1 over
the columns the Lasso kept; the rest drop out of the kernel), then the SVR fits. Houses are
near each other when they agree on what moves the price, which gives errors unlike every other
member's (a relevance-scaled, ARD-like kernel; see docs/model-search.md).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from pipeline.config.members import EXCLUDE_OUTLIERS, Setting
from pipeline.config.train import TrainParams
from pipeline.members._lasso import LassoSettings, fit_lasso, lasso_settings

SETTINGS = {"C": Setting(), "epsilon": Setting(low_open=False), "gamma": Setting(),
            "power": Setting(low_open=False), "exclude_outliers": EXCLUDE_OUTLIERS}


class LassoScaledSVR(RegressorMixin, BaseEstimator):
    """A scikit-learn estimator (get_params, clone); `scale_` is the columns' fitted scale. The
    Lasso's settings are the project's one Lasso setting, train.lasso_*."""

    def __init__(self, C: float = 50.0, epsilon: float = 0.008, gamma: float = 0.0005,
                 power: float = 2.0, lasso_alpha: float = 0.0005, lasso_max_iter: int = 50_000,
                 lasso_tol: float = 1e-6):
        self.C, self.epsilon, self.gamma, self.power = C, epsilon, gamma, power
        self.lasso_alpha, self.lasso_max_iter, self.lasso_tol = lasso_alpha, lasso_max_iter, lasso_tol

    def fit(self, x: np.ndarray, y: np.ndarray) -> LassoScaledSVR:
        from sklearn.svm import SVR
        from sklearn.utils.validation import validate_data

        x, y = validate_data(self, x, y, y_numeric=True)
        lasso = LassoSettings(self.lasso_alpha, self.lasso_max_iter, self.lasso_tol)
        coef = np.abs(fit_lasso(x, y, lasso, "member lasso_svr").coef_)
        kept = coef > 0
        if not kept.any():  # a ValueError, as scikit-learn's contract asks; the stage says it
            raise ValueError(f"the Lasso (train.lasso_alpha {self.lasso_alpha}) kept no column, "
                             "so the kernel sees nothing; lower train.lasso_alpha")
        scale = coef ** self.power  # dropped columns 0; power 0: every column 1 (plain SVR)
        self.scale_ = scale / scale[kept].mean()
        self.svr_ = SVR(kernel="rbf", C=self.C, epsilon=self.epsilon, gamma=self.gamma)
        self.svr_.fit(x * self.scale_, y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted, validate_data

        check_is_fitted(self)
        x = validate_data(self, x, reset=False)
        return self.svr_.predict(x * self.scale_)


def make_model(settings: dict, train: TrainParams) -> LassoScaledSVR:
    """members.lasso_svr's settings; its Lasso is train.lasso_*, the project's one Lasso."""
    lasso = lasso_settings(train)
    return LassoScaledSVR(**settings, lasso_alpha=lasso.alpha, lasso_max_iter=lasso.max_iter,
                          lasso_tol=lasso.tol)
