"""Stage 3: K-fold cross-validation on log price; saves every fold model and the CV metrics.

All folds (x seeds) of the MLP train at once in the batched trainer (pipeline/trainer.py), on the
GPU when there is one. `train.model: lasso` fits scikit-learn's Lasso on the same folds instead,
as an in-project baseline; it is saved as a linear model in the same format.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso
from tqdm import tqdm

from pipeline.atomic import atomic_path, replace_dir, write_json
from pipeline.cli_support import add_params_option, run_cli, stage_parser
from pipeline.ensemble import combine_log_predictions, rmse
from pipeline.errors import PipelineError
from pipeline.folds import FoldPlan, cv_metrics, plan_folds, split_per_fold
from pipeline.importance import (
    column_groups,
    importance_table,
    lasso_weights,
    permutation_importance,
)
from pipeline.params import TrainParams, load_params
from pipeline.preprocess import load_train, mlp_inputs
from pipeline.stacked_mlp import StackedModels
from pipeline.trainer import (
    Architecture,
    PerModel,
    TrainResult,
    make_deterministic,
    resolve_device,
    target_scaling,
    train_batched,
)
from pipeline.views import Views


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


def lasso(x: np.ndarray, y: np.ndarray, alpha: float) -> Lasso:
    """scikit-learn's Lasso, converged tightly: it is a baseline and a warm start, not a sketch.

    A rare fit on near-collinear columns (a total beside its parts) stops at max_iter a little
    short of the tolerance; it is used as it is, with one line saying so instead of a traceback.
    Fitted in float64: scikit-learn fits float32 input in float32, and there the same rows gave
    one of two coefficient vectors from fit to fit (on this project's AVX-512 CPU; most likely
    its BLAS sums rounding by memory alignment), so the warm start, and every model trained
    from it, was not reproducible.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fitted = Lasso(alpha=alpha, max_iter=50_000, tol=1e-6).fit(x.astype(np.float64), y)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        print(f"train: note: a Lasso fit (alpha {alpha:g}, {len(y)} rows) stopped at its "
              f"iteration limit short of tol 1e-6; its coefficients are used as they are",
              file=sys.stderr)
    return fitted


def fit_lasso(x: np.ndarray, y: np.ndarray, plan: FoldPlan, alpha: float) -> StackedModels:
    """Lasso per model on its training rows, stored as a linear (no hidden layer) model."""
    weights, biases = [], []
    for tmask in plan.train_mask:
        fitted = lasso(x[tmask], y[tmask], alpha)
        weights.append(torch.tensor(fitted.coef_, dtype=torch.float32)[:, None])
        biases.append(torch.tensor([[fitted.intercept_]], dtype=torch.float32))
    n = len(weights)
    return StackedModels([torch.stack(weights)], [torch.stack(biases)], "relu",
                         torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64),
                         list(plan.names))


def lasso_skip_start(x: np.ndarray | Views, y: np.ndarray, train_mask: np.ndarray, alpha: float,
                     cache: dict | None = None, view_of_model: np.ndarray | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each model's Lasso on its own training rows, in the trainer's standardised target units.

    The warm start of `train.skip_init: lasso`: the wide part begins at the convex optimum of
    the linear problem and the deep part learns what it misses. Only the rows a model trains on
    are used, so neither its early-stopping rows nor its scored fold leak in. `cache` shares the
    fits between models (and configs) with the same rows, view and alpha. With views, each
    model's Lasso is fitted on its own view (`view_of_model`), its padding columns left at zero.
    """
    cache = {} if cache is None else cache
    views = Views.coerce(x)
    y_mean, y_std = target_scaling(torch.tensor(y), torch.tensor(train_mask))
    weights = torch.zeros(train_mask.shape[0], views.x.shape[2], dtype=torch.float64)
    intercepts = torch.zeros(train_mask.shape[0], dtype=torch.float64)
    for model, rows in enumerate(train_mask):
        view = 0 if view_of_model is None else int(view_of_model[model])
        key = (rows.tobytes(), view, alpha)
        if key not in cache:
            fitted = lasso(views.matrix(view)[rows], y[rows], alpha)
            cache[key] = (torch.tensor(fitted.coef_, dtype=torch.float64), fitted.intercept_)
        coef, intercept = cache[key]
        weights[model, :len(coef)] = coef / y_std[model]
        intercepts[model] = (intercept - y_mean[model]) / y_std[model]
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
        fit = (lasso_skip_start(x, y, mask, config.lasso_alpha, cache, view_of_model)
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
    return Architecture(params.hidden, params.activation, params.optimizer, params.batch_size,
                        params.linear_skip, params.tabm_k, params.input_scale, params.periodic,
                        params.periodic_dim, params.periodic_sigma)


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
                    patience=each("patience"), lr_schedule=each("lr_schedule"),
                    reg_schedule=each("reg_schedule"), huber_delta=each("huber_delta"))


def fit_mlp_configs(x: np.ndarray | Views, y: np.ndarray, plan: FoldPlan,
                    configs: list[TrainParams], device: torch.device, label: str = "train"
                    ) -> list[TrainResult]:
    """Train every fold x view x seed model of every config in one batched run (one
    architecture). x: the features [N, d], or with preprocess.mlp_views their Views, planned
    with `plan_folds(..., n_views=len(x))`."""
    arch = architecture_of(configs[0])
    if any(architecture_of(c) != arch for c in configs):
        raise ValueError("configs trained together must share one architecture")
    views = Views.coerce(x)
    if (plan.view_of_model is None) != (len(views) == 1):
        raise ValueError("plan the folds with n_views=len(x) for inputs with views")
    n = len(plan.names)
    per_model = per_model_settings(configs, plan.seeds, plan.view_of_model)
    # The Lasso fits first: their notes must not break into the progress bar.
    train_masks, stop_masks = zip(*(stopping_rows(plan, c) for c in configs), strict=True)
    skip_start, feature_scale = lasso_starts(views, y, configs, list(train_masks),
                                             None if plan.view_of_model is None
                                             else np.tile(plan.view_of_model, len(configs)))
    bar = tqdm(total=max(per_model.max_epochs), desc=f"{label}: {n * len(configs)} models on {device}",
               unit="epoch", disable=None, file=sys.stderr)

    def on_epoch(epoch: int, n_active: int, best_mean: float) -> None:
        bar.update(1)
        bar.set_postfix(active=n_active, best_stop_rmse=f"{best_mean:.4f}")

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


def read_feature_names(data_dir: str | os.PathLike, data: dict, views: Views
                       ) -> list[list[str]]:
    """Each view's feature names (train.npz's view_names, or features.json with one view), or
    f0, f1, ... where they are missing."""
    if "view_names" in data:
        return [[str(n) for n in names[:width]]
                for names, width in zip(data["view_names"], views.widths, strict=True)]
    path = Path(data_dir) / "features.json"
    if path.is_file():
        names = json.loads(path.read_text(encoding="utf-8"))
        if len(names) == views.widths[0]:
            return [[str(n) for n in names]]
    return [[f"num__f{i}" for i in range(width)] for width in views.widths]


def check_trained(result: TrainResult, plan: FoldPlan, y: np.ndarray, params: TrainParams) -> None:
    """Refuse a run whose models diverged or learned nothing, before any output is written:
    NaN models would otherwise be cached and surface only as a bad submission.

    Diverged: a non-finite training loss at any epoch, or non-finite kept weights. Learned
    nothing: the kept model scores no better on its fold than its own training mean does.
    """
    ran = torch.arange(result.train_rmse.shape[0])[:, None] < result.epochs_run[None, :]
    diverged = (~torch.isfinite(result.train_rmse) & ran).any(0)
    adapters = [] if result.models.adapters is None else [result.models.adapters]
    periodic = [] if result.models.periodic is None else result.models.periodic.tensors
    for tensor in [*result.models.weights, *result.models.biases, *adapters, *periodic]:
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


def oof_predictions(models: StackedModels, x: np.ndarray | Views, plan: FoldPlan, average: str
                    ) -> np.ndarray:
    """Each row predicted by the (seed- and view-averaged) models of the fold that held it out."""
    views = Views.coerce(x)
    log_pred = models.predict_log_price(views.model_input()).numpy()  # [M, N]
    oof = np.empty(views.n_rows)
    for fold in np.unique(plan.fold_of_model):
        rows = plan.fold_of_row == fold
        oof[rows] = combine_log_predictions(log_pred[plan.fold_of_model == fold][:, rows], average)
    return oof


def log_learning_curves(live_dir: str | os.PathLike, plan: FoldPlan, result: TrainResult) -> None:
    """Per-epoch log-RMSE of every model on its training rows, its early-stopping rows and its
    scored fold (dvclive metrics), and one chart per fold (its seed-0 model) with the three
    curves and the epoch early stopping kept, for `dvc plots show`."""
    from dvclive import Live

    curves = {"training rows": result.train_rmse, "scored fold": result.val_rmse}
    if result.stop_rmse is not None and not torch.equal(result.stop_rmse.nan_to_num(-1),
                                                        result.val_rmse.nan_to_num(-1)):
        curves["early-stopping rows"] = result.stop_rmse
    shutil.rmtree(live_dir, ignore_errors=True)
    with Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        for epoch in range(result.train_rmse.shape[0]):
            # Setting the step, not next_step(): that rewrites the summary and re-reads every
            # curve logged so far (for DVC Studio) at each of ~200 epochs, seconds of the stage.
            live.step = epoch
            for i, name in enumerate(plan.names):
                for label, history in curves.items():
                    if not torch.isnan(history[epoch, i]):
                        live.log_metric(f"{label.replace(' ', '_').replace('-', '_')}/{name}",
                                        round(float(history[epoch, i]), 6))
        for fold in np.unique(plan.fold_of_model):
            model = int(np.flatnonzero(plan.fold_of_model == fold)[0])
            chosen = int(result.best_epoch[model]) + 1
            points = [{"epoch": epoch + 1, "rows": label, "log_rmse": round(float(h[epoch, model]), 6),
                       "chosen_epoch": chosen}
                      for label, h in curves.items() for epoch in range(h.shape[0])
                      if not torch.isnan(h[epoch, model])]
            live.log_plot(f"learning_curve_fold{fold}", points, x="epoch", y="log_rmse")


def write_importance(path: str | os.PathLike, models: StackedModels, x: Views, y: np.ndarray,
                     outlier: np.ndarray, plan: FoldPlan, params: TrainParams, average: str,
                     feature_names: list[list[str]]) -> None:
    """metrics/importance.csv: permutation importance on out-of-fold rows, Lasso |coef| (on the
    first view)."""
    groups = [column_groups(names) for names in feature_names]
    permutation = permutation_importance(models, x, y, plan.fold_of_model, plan.fold_of_row,
                                         groups, average, params.seed)
    keep = ~outlier if params.exclude_outliers else np.ones_like(outlier)
    coef = lasso(x.matrix(0)[keep], y[keep], params.lasso_alpha).coef_
    with atomic_path(path) as tmp:
        importance_table(permutation, lasso_weights(coef, groups[0])).to_csv(
            tmp, index=False, lineterminator="\n")


def train(params: TrainParams, average: str, data_dir="data/processed", models_dir="models",
          metrics_path="metrics/cv.json", oof_path="metrics/oof.csv", live_dir="dvclive",
          folds_path: str | os.PathLike | None = None,
          importance_path: str | os.PathLike | None = None) -> dict:
    """Run the cross-validation, write models, metrics and plots; return the headline metrics.

    metrics_path gets the headline numbers (what `dvc exp show` lists); the per-fold scores go
    to folds_path and the column importances to importance_path (by default beside it).
    """
    folds_path = folds_path or Path(metrics_path).with_name("cv_folds.json")
    importance_path = importance_path or Path(metrics_path).with_name("importance.csv")
    data = load_train(data_dir)
    y, outlier = data["y"], data["outlier"].astype(bool)
    # The Lasso baseline sees the first encoding; the MLP every one preprocess wrote.
    x = Views.coerce(data["x"]) if params.model == "lasso" else mlp_inputs(data)
    plan = plan_folds(len(y), outlier, params, len(x))
    make_deterministic()
    if params.model == "mlp" and params.patience > 0 and params.early_stopping_holdout == 0:
        print("train: note: early stopping picks each model's epoch on the fold it is scored on, "
              "so the CV score is optimistic; set train.early_stopping_holdout > 0 to avoid it")
    started = time.perf_counter()
    if params.model == "lasso":
        models = fit_lasso(x.matrix(0), y, plan, params.lasso_alpha)
        history, where = None, "on cpu (scikit-learn)"
    else:
        device = resolve_device(params.device)
        result = fit_mlp_configs(x, y, plan, [params], device)[0]
        check_trained(result, plan, y, params)
        models, history, where = result.models, result, f"on {device} ({result.epoch_mode})"
    seconds = time.perf_counter() - started
    oof = oof_predictions(models, x, plan, average)
    metrics, per_fold = split_per_fold(cv_metrics(oof, y, outlier, plan.fold_of_row))
    if history is not None:
        metrics["best_epoch_mean"] = float(history.best_epoch.double().mean() + 1)

    replace_dir(Path(models_dir), lambda d: models.save_each(d, {"train": asdict(params),
                                                                   "average": average}))
    frame = pd.DataFrame({"Id": data["id"], "fold": plan.fold_of_row, "outlier": outlier,
                          "actual_log_price": y, "predicted_log_price": oof,
                          "residual": oof - y, "actual_price": np.exp(y)})
    with atomic_path(oof_path) as tmp:
        frame.to_csv(tmp, index=False)
    if history is not None:
        log_learning_curves(live_dir, plan, history)
    else:
        shutil.rmtree(live_dir, ignore_errors=True)
        Path(live_dir, "plots", "metrics").mkdir(parents=True)
    feature_names = read_feature_names(data_dir, data, x)
    write_importance(importance_path, models, x, y, outlier, plan, params, average, feature_names)
    write_json(folds_path, per_fold)
    write_json(metrics_path, metrics)
    print(f"train: {len(plan.names)} {params.model} models in {seconds:.1f} s {where}; CV log-RMSE "
          f"{metrics['cv_rmse']:.4f} +- {metrics['cv_rmse_std']:.4f} (without outlier rows "
          f"{metrics['cv_rmse_no_outliers']:.4f})")
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("train", __doc__)
    add_params_option(parser)
    parser.add_argument("--data", default="data/processed", help="the preprocess stage's output")
    parser.add_argument("--models", default="models", help="directory for the fold models")
    parser.add_argument("--metrics", default="metrics/cv.json", help="headline CV metrics (JSON)")
    parser.add_argument("--oof", default="metrics/oof.csv", help="out-of-fold predictions (CSV)")
    parser.add_argument("--live", default="dvclive", help="dvclive directory for learning curves")
    args = parser.parse_args(argv)

    def stage() -> None:
        params = load_params(args.params)
        train(params.train, params.ensemble.average, args.data, args.models, args.metrics,
              args.oof, args.live)

    run_cli(stage)


if __name__ == "__main__":
    main()
