"""SVR whose RBF kernel measures each column on the scale of its Lasso coefficient.

The plain SVR member weighs all ~330 standardized columns alike, so the one-hot levels of minor
categories count as much in its distances as the living area. Here each fold first fits a Lasso
on its own training rows; column j is multiplied by |coef_j| ** power (normalised to mean 1 over
the columns the Lasso kept; the rest drop out of the kernel), then the SVR fits. Houses are
near each other when they agree on what moves the price, which gives errors unlike every other
member's (a relevance-scaled, ARD-like kernel; see docs/model-search.md).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from pipeline.errors import PipelineError
from pipeline.members import COUNT, Setting

SETTINGS = {"C": Setting(), "epsilon": Setting(low_open=False), "gamma": Setting(),
            "power": Setting(low_open=False), "lasso_alpha": Setting(), "lasso_max_iter": COUNT,
            "lasso_tol": Setting()}


class LassoColumnScale(TransformerMixin, BaseEstimator):
    """Multiply each column by its in-fold Lasso |coefficient| ** power (mean 1 over the kept)."""

    def __init__(self, alpha: float = 0.0005, power: float = 2.0, max_iter: int = 50000,
                 tol: float = 1e-6):
        self.alpha, self.power, self.max_iter, self.tol = alpha, power, max_iter, tol

    def fit(self, x, y):
        from sklearn.linear_model import Lasso

        coef = np.abs(Lasso(alpha=self.alpha, max_iter=self.max_iter, tol=self.tol)
                      .fit(x, y).coef_)
        kept = coef > 0
        if not kept.any():
            raise PipelineError(f"member lasso_svr: the Lasso (lasso_alpha {self.alpha}) kept "
                                "no column, so the kernel sees nothing; lower "
                                "members.lasso_svr.lasso_alpha")
        scale = np.where(kept, coef, 0.0) ** self.power
        self.scale_ = scale / scale[kept].mean()
        return self

    def transform(self, x):
        return np.asarray(x) * self.scale_


def make_model(settings: dict):
    from sklearn.pipeline import make_pipeline  # here, not above: check-params reads SETTINGS only
    from sklearn.svm import SVR

    return make_pipeline(
        LassoColumnScale(alpha=settings["lasso_alpha"], power=settings["power"],
                         max_iter=settings["lasso_max_iter"], tol=settings["lasso_tol"]),
        SVR(kernel="rbf", C=settings["C"], epsilon=settings["epsilon"], gamma=settings["gamma"]))
