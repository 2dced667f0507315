"""SVR whose RBF kernel measures each column on the scale of its Lasso coefficient.

An RBF SVR on the ~330 standardized columns as they are would weigh them alike, so the one-hot
levels of minor categories would count as much in its distances as the living area (the plain
SVR member did, until tag svr-member-2026-11). Here each fold first fits a Lasso
on its own training rows; column j is multiplied by |coef_j| ** power (normalised to mean 1 over
the columns the Lasso kept; the rest drop out of the kernel), then the SVR fits. Houses are
near each other when they agree on what moves the price, which gives errors unlike every other
member's (a relevance-scaled, ARD-like kernel; see docs/model-search.md).
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import PipelineError
from pipeline.lasso_fit import LassoSettings, fit_lasso
from pipeline.members import COUNT, Setting

# lasso_alpha: on standardized columns and log price, far less than 0.1 empties every Lasso
SETTINGS = {"C": Setting(), "epsilon": Setting(low_open=False), "gamma": Setting(),
            "power": Setting(low_open=False), "lasso_alpha": Setting(high=0.1),
            "lasso_max_iter": COUNT, "lasso_tol": Setting()}


class LassoScaledSVR:
    """fit / predict as scikit-learn's estimators (scikit-learn is imported in fit, not here:
    check-params reads SETTINGS and must not pay for it). `scale_` is the columns' scale."""

    def __init__(self, settings: dict):
        self.settings = dict(settings)

    def fit(self, x: np.ndarray, y: np.ndarray) -> LassoScaledSVR:
        from sklearn.svm import SVR

        s = self.settings
        lasso = LassoSettings(s["lasso_alpha"], s["lasso_max_iter"], s["lasso_tol"])
        coef = np.abs(fit_lasso(x, y, lasso, "member lasso_svr").coef_)
        kept = coef > 0
        if not kept.any():
            raise PipelineError(f"member lasso_svr: the Lasso (lasso_alpha {s['lasso_alpha']}) "
                                "kept no column, so the kernel sees nothing; lower "
                                "members.lasso_svr.lasso_alpha")
        scale = coef ** s["power"]  # dropped columns 0; power 0: every column 1 (plain SVR)
        self.scale_ = scale / scale[kept].mean()
        self.svr_ = SVR(kernel="rbf", C=s["C"], epsilon=s["epsilon"], gamma=s["gamma"])
        self.svr_.fit(x * self.scale_, y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.svr_.predict(np.asarray(x) * self.scale_)


def make_model(settings: dict) -> LassoScaledSVR:
    return LassoScaledSVR(settings)
