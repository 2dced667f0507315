"""Stage 3: K-fold cross-validation of the MLP on log price; saves every fold model, the CV
metrics, the out-of-fold predictions, learning curves and column importances, and, as every
blend member's stage does, its out-of-fold and test predictions (members/mlp/predictions.npz:
the mean of the fold models on the test set, its features clamped to the training range).

All folds x encodings x seeds train at once in the batched trainer (pipeline/members/mlp/ turns
the params into its models; pipeline/engine/trainer.py trains them), on the GPU when there is one.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.common import paths
from pipeline.common.atomic import atomic_path, check_outputs, replace_dir, write_json
from pipeline.common.cli_support import add_params_option, run_cli, stage_parser
from pipeline.common.errors import PipelineError
from pipeline.config.params import load_params
from pipeline.config.train import TrainParams
from pipeline.dataset.processed import load_test, load_train, mlp_inputs, read_feature_names
from pipeline.dataset.views import Views
from pipeline.engine.device import make_deterministic, resolve_device
from pipeline.engine.specs import TrainResult
from pipeline.engine.stacked_mlp import StackedModels
from pipeline.members._lasso import fit_lasso, lasso_settings
from pipeline.members.mlp.checkpoint import save_models
from pipeline.members.mlp.fit import check_trained, fit_mlp_configs
from pipeline.members.mlp.importance import (
    column_groups,
    importance_table,
    lasso_weights,
    permutation_importance,
)
from pipeline.members.mlp.predict import oof_predictions, test_log_prices
from pipeline.scoring.folds import FoldPlan, cv_metrics, plan_folds, split_per_fold
from pipeline.scoring.predictions import save_predictions


def log_learning_curves(live_dir: str | os.PathLike, plan: FoldPlan, result: TrainResult,
                        outlier: np.ndarray) -> None:
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
            n_outliers = int((plan.val_mask[model] & outlier).sum())
            note = f" (+{n_outliers} outlier house{'s' * (n_outliers > 1)} scored)" if n_outliers else ""
            for point in points:  # every point has the same keys (DVC reads no other kind)
                point["label"] = f"fold {fold}{note}"
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
    coef = fit_lasso(x.matrix(0)[keep], y[keep], lasso_settings(params), "train").coef_
    with atomic_path(path) as tmp:
        importance_table(permutation, lasso_weights(coef, groups[0])).to_csv(
            tmp, index=False, lineterminator="\n")


def member_test_prices(models, x, x_test, params: TrainParams, average: str
                       ) -> tuple[np.ndarray, int]:
    """The fold models' mean test log price (the MLP's blend member) and how many houses were
    clamped; refused (before anything is written) when a price is not finite."""
    test_log, n_clipped = test_log_prices(models, x, x_test, params.clip_to_train_range, average)
    with np.errstate(over="ignore"):
        if not np.isfinite(np.exp(test_log)).all():
            raise PipelineError("train: the MLP's test predictions are not finite; nothing was "
                                "written (lower train.lr, or clip: train.clip_to_train_range=true)")
    return test_log, n_clipped


def write_oof(path, ids, fold_of_row, outlier, y, oof) -> None:
    """metrics/oof.csv: each training house's fold, its price and the MLP's out-of-fold price."""
    frame = pd.DataFrame({"Id": ids, "fold": fold_of_row, "outlier": outlier,
                          "actual_log_price": y, "predicted_log_price": oof,
                          "residual": oof - y, "actual_price": np.exp(y)})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def train(params: TrainParams, average: str, *, data_dir=paths.PROCESSED, models_dir=paths.MODELS,
          metrics_path=paths.CV, oof_path=paths.OOF, live_dir=paths.LIVE,
          folds_path: str | os.PathLike | None = None,
          importance_path: str | os.PathLike | None = None,
          member_path: str | os.PathLike | None = None) -> dict:
    """Run the cross-validation, write models, metrics and plots; return the headline metrics.

    metrics_path gets the headline numbers (what `dvc exp show` lists); the per-fold scores go
    to folds_path and the column importances to importance_path (by default beside it); the
    blend member's predictions to member_path (the CLI's: members/mlp/predictions.npz; None:
    not made).
    """
    folds_path = folds_path or Path(metrics_path).with_name("cv_folds.json")
    importance_path = importance_path or Path(metrics_path).with_name("importance.csv")
    check_outputs(metrics_path, oof_path, folds_path, importance_path, member_path,
                  directories=(models_dir, live_dir))  # before minutes of training, not after
    data = load_train(data_dir)
    y, outlier = data["y"], data["outlier"].astype(bool)
    x = mlp_inputs(data)
    plan = plan_folds(len(y), outlier, params, len(x))
    if params.patience > 0 and params.early_stopping_holdout == 0:
        print("train: note: early stopping picks each model's epoch on the fold it is scored on, "
              "so the CV score is optimistic; set train.early_stopping_holdout > 0 to avoid it")
    started = time.perf_counter()
    device = resolve_device(params.device)
    make_deterministic(device)
    result = fit_mlp_configs(x, y, plan, [params], device)[0]
    check_trained(result, plan, y, params)
    models = result.models
    seconds = time.perf_counter() - started
    oof = oof_predictions(models, x, plan, average)
    if member_path is not None:
        test = load_test(data_dir)
        test_log, n_clipped = member_test_prices(models, x, mlp_inputs(test, x.widths), params,
                                                 average)
    metrics, per_fold = split_per_fold(cv_metrics(oof, y, outlier, plan.fold_of_row))
    metrics["best_epoch_mean"] = float(result.best_epoch.double().mean() + 1)

    replace_dir(Path(models_dir), lambda d: save_models(models, d, {"train": asdict(params),
                                                                   "average": average}))
    write_oof(oof_path, data["id"], plan.fold_of_row, outlier, y, oof)
    replace_dir(Path(live_dir), lambda d: log_learning_curves(d, plan, result, outlier))
    feature_names = read_feature_names(data_dir, data, x)
    write_importance(importance_path, models, x, y, outlier, plan, params, average, feature_names)
    if member_path is not None:
        save_predictions(member_path, oof, test_log, data["id"], test["id"], plan.fold_of_row,
                         params, params.exclude_outliers)
        if params.clip_to_train_range:
            print(f"train: {n_clipped} test houses had features outside the training range "
                  "(clamped)")
    write_json(folds_path, per_fold)
    write_json(metrics_path, metrics)
    print(f"train: {len(plan.names)} mlp models in {seconds:.1f} s on {device} "
          f"({result.epoch_mode}); CV log-RMSE "
          f"{metrics['cv_rmse']:.4f} +- {metrics['cv_rmse_std']:.4f} (without outlier rows "
          f"{metrics['cv_rmse_no_outliers']:.4f})")
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("train", __doc__)
    add_params_option(parser)
    parser.add_argument("--data", default=paths.PROCESSED, help="the preprocess stage's output")
    parser.add_argument("--models", default=paths.MODELS, help="directory for the fold models")
    parser.add_argument("--metrics", default=paths.CV, help="headline CV metrics (JSON)")
    parser.add_argument("--folds", default=paths.CV_FOLDS, help="the CV per fold (JSON)")
    parser.add_argument("--importance", default=paths.IMPORTANCE,
                        help="column importances (CSV, plotted)")
    parser.add_argument("--oof", default=paths.OOF, help="out-of-fold predictions (CSV)")
    parser.add_argument("--live", default=paths.LIVE, help="dvclive directory for learning curves")
    parser.add_argument("--member", default=paths.MLP_PREDICTIONS,
                        help="the MLP's out-of-fold and test predictions, what the blend reads")
    args = parser.parse_args(argv)

    def stage() -> None:
        params = load_params(args.params)
        train(params.train, params.ensemble.average, data_dir=args.data, models_dir=args.models,
              metrics_path=args.metrics, oof_path=args.oof, live_dir=args.live,
              folds_path=args.folds, importance_path=args.importance, member_path=args.member)

    run_cli(stage, params_path=args.params)


if __name__ == "__main__":
    main()
