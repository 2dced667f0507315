"""Support vector regression with an RBF kernel: a smooth nonlinear model of the whole matrix
whose errors differ from the Lasso's (linear), LightGBM's (axis-aligned steps) and the MLP's.
Deterministic (libsvm has no random state here); its epsilon-insensitive loss ignores residuals
smaller than epsilon, in log price."""

from __future__ import annotations

from pipeline.members import Setting

# epsilon may be 0: then every residual costs.
SETTINGS = {"C": Setting(), "epsilon": Setting(low_open=False), "gamma": Setting()}


def make_model(settings: dict):
    from sklearn.svm import SVR  # here, not above: check-params reads SETTINGS only

    return SVR(kernel="rbf", C=settings["C"], epsilon=settings["epsilon"],
               gamma=settings["gamma"])
