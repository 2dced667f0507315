"""A TrainParams config on the batched engine: its architecture, per-model settings, early-
stopping rows and each model's own Lasso start (the warm start of the skip path, input scales)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.common.threads import in_threads
from pipeline.config.train import TrainParams
from pipeline.dataset.views import Views
from pipeline.engine.specs import Architecture, PerModel
from pipeline.members._lasso import LassoSettings, fit_lasso, lasso_settings
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
