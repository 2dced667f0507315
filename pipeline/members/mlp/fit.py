"""Fitting the MLP's configs on the batched trainer: what the train stage, sweeps and benches
share. Every fold x view x seed model of every config given trains in one batched run
(pipeline/engine/trainer.py), from the settings configs.py makes, with a progress line per
epoch and a check that no model diverged or learned nothing."""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from pipeline.common.errors import PipelineError
from pipeline.config.train import TrainParams
from pipeline.dataset.views import Views
from pipeline.engine.specs import TrainResult
from pipeline.engine.trainer import train_batched
from pipeline.members.mlp.configs import architecture_of, lasso_starts, per_model_settings, stopping_rows
from pipeline.scoring.ensemble import rmse
from pipeline.scoring.folds import FoldPlan


class EpochLines:
    """Progress where no bar shows (output to a file or a pipe, as in a sweep's log): a flushed
    line every PROGRESS_EVERY_S seconds with the epoch, the models still training, the likely
    time left (each model stops `patience` epochs after its last gain if it gains no more: the
    usual end) and the most it can take (every model to max_epochs)."""

    PROGRESS_EVERY_S = 30.0

    def __init__(self, label: str, total: int, n_models: int, patience: int = 0):
        self.label, self.total, self.n_models = label, total, n_models
        self.patience = patience
        self.started = self.last = time.monotonic()

    def __call__(self, epoch: int, n_active: int, best_mean: float) -> None:
        now = time.monotonic()
        if now - self.last < self.PROGRESS_EVERY_S or n_active == 0:
            return
        self.last = now
        per_epoch = (now - self.started) / (epoch + 1)
        most = self.total - epoch - 1
        likely = min(most, self.patience) if self.patience > 0 else most
        print(f"{self.label}: epoch {epoch + 1}/{self.total}, {n_active} of {self.n_models} "
              f"models still training, best early-stopping RMSE {best_mean:.4f}; likely "
              f"~{per_epoch * likely / 60:.1f} min left if no model gains again, at most "
              f"~{per_epoch * most / 60:.1f}", file=sys.stderr, flush=True)


def fit_mlp_configs(views: Views, y: np.ndarray, plan: FoldPlan,
                    configs: list[TrainParams], device: torch.device, label: str = "train"
                    ) -> list[TrainResult]:
    """Train every fold x view x seed model of every config in one batched run (one
    architecture). views: the features' encodings (one or more), planned with
    `plan_folds(..., n_views=len(views))`."""
    arch = architecture_of(configs[0])
    if any(architecture_of(c) != arch for c in configs):
        raise ValueError("configs trained together must share one architecture")
    if (plan.view_of_model is None) != (len(views) == 1):
        raise ValueError("plan the folds with n_views=len(views) for inputs with views")
    n = len(plan.names)
    per_model = per_model_settings(configs, plan.seeds, plan.view_of_model)
    # The Lasso fits first: their notes must not break into the progress bar.
    train_masks, stop_masks = zip(*(stopping_rows(plan, c) for c in configs), strict=True)
    skip_start, feature_scale = lasso_starts(views, y, configs, list(train_masks),
                                             None if plan.view_of_model is None
                                             else np.tile(plan.view_of_model, len(configs)))
    total = max(per_model.max_epochs)
    bar = tqdm(total=total, desc=f"{label}: {n * len(configs)} models on {device}",
               unit="epoch", disable=None, file=sys.stderr)
    lines = (EpochLines(label, total, n * len(configs), max(per_model.patience))
             if bar.disable else None)

    def on_epoch(epoch: int, n_active: int, best_mean: float) -> None:
        bar.update(1)
        bar.set_postfix(active=n_active, best_stop_rmse=f"{best_mean:.4f}")
        if lines is not None:
            lines(epoch, n_active, best_mean)

    try:
        result = train_batched(
            views.model_input().to(device), torch.tensor(y, device=device),
            torch.tensor(np.concatenate(train_masks)),
            torch.tensor(np.tile(plan.val_mask, (len(configs), 1))), arch, per_model,
            names=plan.names * len(configs), on_epoch=on_epoch,
            stop_mask=torch.tensor(np.concatenate(stop_masks)),
            compile_kernels=configs[0].compile, skip_start=skip_start, view_widths=views.widths,
            feature_scale=feature_scale)
    finally:
        bar.close()
    return [result.select(slice(i * n, (i + 1) * n)) for i in range(len(configs))]


def check_trained(result: TrainResult, plan: FoldPlan, y: np.ndarray, params: TrainParams) -> None:
    """Refuse a run whose models diverged or learned nothing, before any output is written:
    NaN models would otherwise be cached and surface only as a bad submission.

    Diverged: a non-finite training loss at any epoch, or non-finite kept weights. Learned
    nothing: the kept model scores no better on its fold than its own training mean does.
    """
    ran = torch.arange(result.train_rmse.shape[0])[:, None] < result.epochs_run[None, :]
    diverged = (~torch.isfinite(result.train_rmse) & ran).any(0)
    for tensor in [*result.models.weights, *result.models.biases]:
        diverged |= ~torch.isfinite(tensor.reshape(tensor.shape[0], -1)).all(1)
    kind = "the training loss became non-finite (diverged)"
    bad = diverged.numpy()
    if not bad.any():
        kept = result.val_rmse[result.best_epoch, torch.arange(len(plan.names))].numpy()
        mean = result.models.y_mean.numpy()
        constant = np.array([rmse(np.full(int(rows.sum()), m), y[rows])
                             for m, rows in zip(mean, plan.val_mask, strict=True)])
        bad = kept >= constant
        kind = "they predict no better than the mean price (they never learned)"
    if bad.any():
        shown = [n for n, b in zip(plan.names, bad.tolist(), strict=True) if b]
        listed = ", ".join(shown[:5]) + (" ..." if len(shown) > 5 else "")
        raise PipelineError(
            f"train: {len(shown)} of {len(plan.names)} models failed: {kind} ({listed}); the "
            f"learning rate is likely too high (train.lr={params.lr:g}): lower it, e.g. -S "
            f"train.lr={params.lr / 10:g}; nothing was written")

