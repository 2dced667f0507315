"""Prices from trained MLPs: out-of-fold predictions for CV, test predictions (inputs clipped
to the training range where train.clip_to_train_range says so)."""

from __future__ import annotations

import numpy as np

from pipeline.common.errors import PipelineError
from pipeline.dataset.views import Views
from pipeline.engine.stacked_mlp import StackedModels
from pipeline.scoring.ensemble import combine_log_predictions
from pipeline.scoring.folds import FoldPlan


def clip_to_range(x_test: np.ndarray, x_train: np.ndarray) -> tuple[np.ndarray, int]:
    """Clamp each feature to the range seen in training: an out-of-range house (a lot ten times
    any in training) cannot push an MLP into extrapolation that blows up the price.
    [N, d] matrices, or [V, N, W] views (each view clamped to its own range); returns the
    clamped features and how many houses had a feature clamped."""
    low, high = x_train.min(axis=-2, keepdims=True), x_train.max(axis=-2, keepdims=True)
    clipped = np.clip(x_test, low, high)
    changed = (clipped != x_test).any(axis=-1)
    return clipped, int(changed.reshape(-1, changed.shape[-1]).any(axis=0).sum())


def test_log_prices(models: StackedModels, x_train: Views, x_test: Views, clip: bool,
                    average: str) -> tuple[np.ndarray, int]:
    """The fold models' mean test log price [N_test] (`average`: the CV's own rule), the test
    features clamped to the training range first when `clip`; and how many houses were."""
    n_clipped = 0
    if clip:
        clipped, n_clipped = clip_to_range(x_test.x, x_train.x)
        x_test = Views(clipped, x_test.widths)
    if models.n_inputs != x_test.x.shape[2]:
        raise PipelineError(f"models expect {models.n_inputs} features, test data has "
                            f"{x_test.x.shape[2]}; re-run preprocess and train (dvc repro)")
    log_pred = models.predict_log_price(x_test.model_input()).numpy()
    with np.errstate(over="ignore", invalid="ignore"):
        return combine_log_predictions(log_pred, average), n_clipped


def oof_predictions(models: StackedModels, views: Views, plan: FoldPlan, average: str
                    ) -> np.ndarray:
    """Each row predicted by the (seed- and view-averaged) models of the fold that held it out."""
    log_pred = models.predict_log_price(views.model_input()).numpy()  # [M, N]
    oof = np.empty(views.n_rows)
    for fold in np.unique(plan.fold_of_model):
        rows = plan.fold_of_row == fold
        oof[rows] = combine_log_predictions(log_pred[plan.fold_of_model == fold][:, rows], average)
    return oof
