"""The MLP's configs on the batched trainer: what the train stage, sweeps and benches share.

A TrainParams config becomes per-model settings, early-stopping rows and each model's own Lasso
start (pipeline/engine/trainer.py trains them); the trained models become out-of-fold predictions.
Every fold x view x seed model of every config given trains in one batched run.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from pipeline.common.errors import PipelineError
from pipeline.common.threads import in_threads
from pipeline.config.train import TrainParams
from pipeline.dataset.views import Views
from pipeline.engine.specs import Architecture, PerModel, TrainResult
from pipeline.engine.stacked_mlp import StackedModels
from pipeline.engine.trainer import train_batched
from pipeline.members._lasso import LassoSettings, fit_lasso, lasso_settings
from pipeline.scoring.ensemble import combine_log_predictions, rmse
from pipeline.scoring.folds import FoldPlan


def stopping_rows(plan: FoldPlan, params: TrainParams) -> tuple[np.ndarray, np.ndarray]:
    """Each model's training rows and early-stopping rows, both [M, N] bool.

    With a holdout, each model sets aside that fraction of its own training rows (drawn with its
    seed) to pick its best epoch, so the fold it is scored on chooses nothing and the CV score
    stays unbiased. Holdout 0 stops on the scored fold itself, as the d2l book does, which makes
    the CV score optimistic. Without early stopping (patience 0) every training row trains.
    """
    train_mask = plan.train_mask.copy()
    if params.patience == 0:
        return train_mask, np.zeros_like(train_mask)
    if params.early_stopping_holdout == 0:
        return train_mask, plan.val_mask.copy()
    stop_mask = np.zeros_like(train_mask)
    for model, seed in enumerate(plan.seeds):
        rows = np.flatnonzero(train_mask[model])
        n_held = max(1, round(len(rows) * params.early_stopping_holdout))
        held = np.random.default_rng(seed).choice(rows, n_held, replace=False)
        train_mask[model, held] = False
        stop_mask[model, held] = True
    return train_mask, stop_mask


def lasso_skip_start(views: Views, y: np.ndarray, train_mask: np.ndarray,
                     settings: LassoSettings, cache: dict | None = None,
                     view_of_model: np.ndarray | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each model's Lasso on its own training rows: (coef [M, W], intercept [M]) in log price
    (the trainer puts them in its standardised target units).

    The warm start of `train.skip_init: lasso`: the wide part begins at the convex optimum of
    the linear problem and the deep part learns what it misses. Only the rows a model trains on
    are used, so neither its early-stopping rows nor its scored fold leak in. `cache` shares the
    fits between models (and configs) with the same rows, view and alpha. With views, each
    model's Lasso is fitted on its own view (`view_of_model`), its padding columns left at zero.
    """
    cache = {} if cache is None else cache
    weights = torch.zeros(train_mask.shape[0], views.x.shape[2], dtype=torch.float64)
    intercepts = torch.zeros(train_mask.shape[0], dtype=torch.float64)
    keys = [(rows.tobytes(), 0 if view_of_model is None else int(view_of_model[model]), settings)
            for model, rows in enumerate(train_mask)]
    new = {key: (rows, key[1]) for key, rows in zip(keys, train_mask, strict=True)
           if key not in cache}
    fits = in_threads(lambda job: fit_lasso(views.matrix(job[1])[job[0]], y[job[0]], settings,
                                            "train"), new.values())
    for key, fitted in zip(new, fits, strict=True):
        cache[key] = (torch.tensor(fitted.coef_, dtype=torch.float64), fitted.intercept_)
    for model, key in enumerate(keys):
        coef, intercept = cache[key]
        weights[model, :len(coef)] = coef
        intercepts[model] = intercept
    return weights, intercepts


def lasso_input_scale(coef: torch.Tensor, power: float) -> torch.Tensor:
    """[M, d] fixed scales of the hidden layers' inputs from each model's Lasso coef [M, d]:
    |coef| ** power, normalised to mean 1 over the columns the Lasso keeps, so the deep part
    attends to what moves the price linearly (the columns the Lasso drops leave it). A model
    whose Lasso keeps nothing sees every input alike (ones)."""
    weight = coef.abs().to(torch.float64) ** power
    kept = (coef != 0).sum(1, keepdim=True)
    scale = weight * kept / weight.sum(1, keepdim=True).clamp(min=torch.finfo(torch.float64).tiny)
    return torch.where(kept > 0, scale, torch.ones_like(scale)).to(torch.float32)


def uses_lasso(config: TrainParams) -> tuple[bool, bool]:
    """Whether a config's models need their own Lasso: for the linear path's start, for the
    hidden layers' input scales."""
    return config.skip_init == "lasso", config.lasso_input_power > 0


def lasso_starts(x: Views, y: np.ndarray, configs: list[TrainParams],
                 train_masks: list[np.ndarray], view_of_model: np.ndarray | None
                 ) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None]:
    """What each model of every config takes from its own Lasso (`lasso_skip_start`): the
    linear path's start (zeros where skip_init: zeros) and the hidden layers' input scales
    (`lasso_input_scale`; ones where lasso_input_power is 0); None for either when no config
    uses it."""
    cache: dict = {}
    starts, scales = [], []
    for config, mask in zip(configs, train_masks, strict=True):
        for_start, for_scale = uses_lasso(config)
        shape = (mask.shape[0], x.x.shape[2])
        fit = (lasso_skip_start(x, y, mask, lasso_settings(config), cache, view_of_model)
               if for_start or for_scale else None)
        starts.append(fit if for_start else (torch.zeros(shape, dtype=torch.float64),
                                             torch.zeros(shape[0], dtype=torch.float64)))
        scales.append(lasso_input_scale(fit[0], config.lasso_input_power) if for_scale
                      else torch.ones(shape, dtype=torch.float32))
    start = (None if not any(uses_lasso(c)[0] for c in configs)
             else (torch.cat([w for w, _ in starts]), torch.cat([b for _, b in starts])))
    scale = torch.cat(scales) if any(uses_lasso(c)[1] for c in configs) else None
    return start, scale


def architecture_of(params: TrainParams) -> Architecture:
    """What a config shares with the configs it can train beside (one batched model)."""
    return Architecture(params.hidden, params.activation, params.optimizer, params.batch_size,
                        params.linear_skip)


def per_model_settings(configs: list[TrainParams], seeds: list[int],
                       view_of_model: np.ndarray | None = None) -> PerModel:
    """Every config's scalars repeated for each of its models (one per seed and view), configs
    in order."""

    def each(attr):
        return [getattr(c, attr) for c in configs for _ in seeds]

    views = None if view_of_model is None else [int(v) for v in view_of_model] * len(configs)
    return PerModel(seeds=list(seeds) * len(configs), view=views, lr=each("lr"),
                    weight_decay=each("weight_decay"), l1=each("l1"), l1_skip=each("l1_skip"),
                    dropout=each("dropout"), max_epochs=each("max_epochs"),
                    patience=each("patience"), huber_delta=each("huber_delta"))


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
