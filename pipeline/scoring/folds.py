"""The fold plan every model family trains on, and how out-of-fold predictions are scored.

Shared by the train stage, the blend members and the blend; free of torch (and scikit-learn
until a split is made), so the member and blend stages start in a second instead of paying for
the MLP's imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.common.errors import PipelineError
from pipeline.config.train import TrainParams
from pipeline.scoring.ensemble import rmse


@dataclass
class FoldPlan:
    """Which rows each model trains and is scored on."""

    names: list[str]
    fold_of_model: np.ndarray  # [M]
    seeds: list[int]
    train_mask: np.ndarray  # [M, N] bool
    val_mask: np.ndarray  # [M, N] bool
    fold_of_row: np.ndarray  # [N]
    view_of_model: np.ndarray | None = None  # [M]: which encoding each model sees (None: one)


def model_seed(seed: int, fold: int, replicate: int) -> int:
    """A well-mixed 32-bit seed per (run seed, fold, replicate); the same across configs."""
    return int(np.random.SeedSequence([seed, fold, replicate]).generate_state(1)[0])


def kfold_rows(n_rows: int, outlier: np.ndarray, folds: int, fold_seed: int,
               exclude_outliers: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fold of each row [N], each fold's training rows [K, N], its scored rows [K, N]): the
    KFold shuffle every family shares, the outlier rows out of training when excluded."""
    if folds > n_rows:
        raise PipelineError(f"train.folds={folds} exceeds the {n_rows} training rows")
    from sklearn.model_selection import KFold

    splitter = KFold(n_splits=folds, shuffle=True, random_state=fold_seed)
    fold_of_row = np.empty(n_rows, dtype=np.int64)
    train_rows = np.zeros((folds, n_rows), dtype=bool)
    val_rows = np.zeros((folds, n_rows), dtype=bool)
    for fold, (tr, va) in enumerate(splitter.split(np.arange(n_rows))):
        fold_of_row[va] = fold
        train_rows[fold, tr] = True
        if exclude_outliers:
            train_rows[fold] &= ~outlier
        val_rows[fold, va] = True
    return fold_of_row, train_rows, val_rows


def plan_folds(n_rows: int, outlier: np.ndarray, params: TrainParams, n_views: int = 1
               ) -> FoldPlan:
    """train.n_seeds models per fold on each of `n_views` encodings (preprocess.mlp_views).

    Model r of view v takes replicate number v * n_seeds + r, so view 0's models are the ones a
    single-encoding run trains, and every model of a fold has its own seed.
    """
    fold_of_row, fold_train, fold_val = kfold_rows(n_rows, outlier, params.folds,
                                                   params.fold_seed, params.exclude_outliers)
    names, folds, seeds, views, train_rows, val_rows = [], [], [], [], [], []
    for fold in range(params.folds):
        for view in range(n_views):
            for rep in range(params.n_seeds):
                names.append(f"fold{fold}_seed{rep}" if n_views == 1
                             else f"fold{fold}_view{view}_seed{rep}")
                folds.append(fold)
                seeds.append(model_seed(params.seed, fold, view * params.n_seeds + rep))
                views.append(view)
                train_rows.append(fold_train[fold])
                val_rows.append(fold_val[fold])
    return FoldPlan(names, np.array(folds), seeds, np.stack(train_rows), np.stack(val_rows),
                    fold_of_row, None if n_views == 1 else np.array(views))


def cv_metrics(oof: np.ndarray, y: np.ndarray, outlier: np.ndarray, fold_of_row: np.ndarray
               ) -> dict:
    """CV scores of out-of-fold predictions; the per-fold ones under PER_FOLD_KEYS."""
    folds = np.unique(fold_of_row)
    per_fold = np.array([rmse(oof[fold_of_row == f], y[fold_of_row == f]) for f in folds])
    clean = ~outlier
    per_fold_clean = np.array([rmse(oof[(fold_of_row == f) & clean], y[(fold_of_row == f) & clean])
                               for f in folds])
    return {
        "cv_rmse": float(per_fold.mean()),
        "cv_rmse_std": float(per_fold.std()),
        "cv_rmse_no_outliers": float(per_fold_clean.mean()),
        "cv_rmse_no_outliers_std": float(per_fold_clean.std()),
        "oof_rmse": rmse(oof, y),
        "oof_rmse_no_outliers": rmse(oof[clean], y[clean]),
        "fold_rmse": {f"fold{f}": float(v) for f, v in zip(folds, per_fold, strict=True)},
        "fold_rmse_no_outliers": {f"fold{f}": float(v)
                                  for f, v in zip(folds, per_fold_clean, strict=True)},
    }


PER_FOLD_KEYS = ("fold_rmse", "fold_rmse_no_outliers")


def split_per_fold(metrics: dict) -> tuple[dict, dict]:
    """(the headline numbers, the per-fold scores) of a cv_metrics result."""
    return ({k: v for k, v in metrics.items() if k not in PER_FOLD_KEYS},
            {k: metrics[k] for k in PER_FOLD_KEYS})
