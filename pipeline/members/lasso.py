"""The Lasso: the linear baseline every Kaggle kernel starts from, converged tightly."""

from __future__ import annotations

from sklearn.linear_model import Lasso

SETTINGS = {"alpha": float, "max_iter": int, "tol": float}


def make_model(settings: dict) -> Lasso:
    return Lasso(alpha=settings["alpha"], max_iter=settings["max_iter"], tol=settings["tol"])
