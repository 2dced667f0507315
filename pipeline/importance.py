"""Which input columns the models lean on: permutation importance on out-of-fold rows, and the
Lasso's coefficients, both per original competition column (one-hot levels summed together).

Permutation importance asks each fold's models to predict their own held-out rows again with one
column's values shuffled between houses; the rise in log-RMSE is how much the models need that
column. It is measured on rows no model of that fold trained on, so it describes what
generalises, not what was memorised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from pipeline.ensemble import combine_log_predictions, rmse
from pipeline.stacked_mlp import StackedModels


def column_groups(feature_names: list[str]) -> dict[str, list[int]]:
    """Original column -> indices of its model features ("cat__Neighborhood_NAmes" belongs to
    Neighborhood, "num__LotArea" and "num__LotArea_ple2" to LotArea); competition column names
    hold no underscore."""
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(feature_names):
        column = name.partition("__")[2].split("_", 1)[0]
        groups.setdefault(column, []).append(index)
    return groups


def permutation_importance(models: StackedModels, x: np.ndarray, y: np.ndarray,
                           fold_of_model: np.ndarray, fold_of_row: np.ndarray,
                           groups: dict[str, list[int]], average: str, seed: int) -> dict[str, float]:
    """Mean rise in out-of-fold log-RMSE when one column group is shuffled (seeded)."""
    rng = np.random.default_rng(seed)
    rise = dict.fromkeys(groups, 0.0)
    for fold in np.unique(fold_of_row):
        rows = fold_of_row == fold
        members = np.flatnonzero(fold_of_model == fold)
        fold_models = models.select(slice(members[0], members[-1] + 1))
        x_fold, y_fold = x[rows], y[rows]

        def score(features: np.ndarray, fold_models=fold_models, y_fold=y_fold) -> float:
            log_pred = fold_models.predict_log_price(torch.tensor(features)).numpy()
            return rmse(combine_log_predictions(log_pred, average), y_fold)

        base = score(x_fold)
        weight = rows.sum() / len(y)
        for column, cols in groups.items():
            shuffled = x_fold.copy()
            shuffled[:, cols] = x_fold[rng.permutation(len(x_fold))][:, cols]
            rise[column] += weight * (score(shuffled) - base)
    return rise


def lasso_weights(coef: np.ndarray, groups: dict[str, list[int]]) -> dict[str, float]:
    """Sum of |coefficient| per column group (inputs are standardised or 0/1)."""
    return {column: float(np.abs(coef[cols]).sum()) for column, cols in groups.items()}


def importance_table(permutation: dict[str, float], lasso: dict[str, float]) -> pd.DataFrame:
    """Every column, most important (by permutation) first."""
    frame = pd.DataFrame({"feature": list(permutation),
                          "permutation_importance": [round(v, 6) for v in permutation.values()],
                          "lasso_abs_coef": [round(lasso[c], 6) for c in permutation]})
    frame = frame.sort_values(["permutation_importance", "feature"], ascending=[False, True],
                              kind="stable")
    return frame.reset_index(drop=True)
