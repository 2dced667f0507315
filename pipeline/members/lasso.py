"""The Lasso: the linear baseline every Kaggle kernel starts from, converged tightly."""

from __future__ import annotations

import numpy as np

from pipeline.lasso_fit import LassoSettings, fit_lasso
from pipeline.members import COUNT, Setting

SETTINGS = {"alpha": Setting(), "max_iter": COUNT, "tol": Setting()}


class LassoMember:
    """fit / predict with the project's one Lasso fit (pipeline/lasso_fit.py)."""

    def __init__(self, settings: dict):
        self.settings = LassoSettings(settings["alpha"], settings["max_iter"], settings["tol"])

    def fit(self, x: np.ndarray, y: np.ndarray) -> LassoMember:
        self.fitted_ = fit_lasso(x, y, self.settings, "member lasso")
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.fitted_.predict(x)


def make_model(settings: dict) -> LassoMember:
    return LassoMember(settings)
