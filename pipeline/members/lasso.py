"""The Lasso: the linear baseline every Kaggle kernel starts from, converged tightly."""

from __future__ import annotations

from pipeline.members import COUNT, Setting

SETTINGS = {"alpha": Setting(), "max_iter": COUNT, "tol": Setting()}


def make_model(settings: dict):
    from sklearn.linear_model import Lasso  # here, not above: check-params reads SETTINGS only

    return Lasso(alpha=settings["alpha"], max_iter=settings["max_iter"], tol=settings["tol"])
