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

from pipeline.dataset.views import Views
from pipeline.engine.stacked_mlp import StackedModels
from pipeline.scoring.ensemble import combine_log_predictions, rmse


def column_groups(feature_names: list[str]) -> dict[str, list[int]]:
    """Original column -> indices of its model features ("cat__Neighborhood_NAmes" belongs to
    Neighborhood, "num__LotArea" and "num__LotArea_ple2" to LotArea); competition column names
    hold no underscore."""
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(feature_names):
        column = name.partition("__")[2].split("_", 1)[0]
        groups.setdefault(column, []).append(index)
    return groups


def permutation_importance(models: StackedModels, x: Views, y: np.ndarray,
                           fold_of_model: np.ndarray, fold_of_row: np.ndarray,
                           groups: list[dict[str, list[int]]], average: str, seed: int
                           ) -> dict[str, float]:
    """Mean rise in out-of-fold log-RMSE when one column group is shuffled (seeded).

    `groups` has one column_groups map per view of x: a column is shuffled in every encoding at
    once (the same houses swapped), so it measures what the whole ensemble needs that column for.
    """
    rng = np.random.default_rng(seed)
    rise = dict.fromkeys([c for view in groups for c in view], 0.0)
    for fold in np.unique(fold_of_row):
        rows = fold_of_row == fold
        members = np.flatnonzero(fold_of_model == fold)
        fold_models = models.select(slice(members[0], members[-1] + 1))
        x_fold, y_fold = x.rows(rows), y[rows]

        def score(features: Views, fold_models=fold_models, y_fold=y_fold) -> float:
            log_pred = fold_models.predict_log_price(features.model_input()).numpy()
            return rmse(combine_log_predictions(log_pred, average), y_fold)

        base = score(x_fold)
        weight = rows.sum() / len(y)
        for column in rise:
            order = rng.permutation(x_fold.n_rows)
            shuffled = x_fold.x.copy()
            for view, view_groups in enumerate(groups):
                cols = view_groups.get(column, [])
                shuffled[view][:, cols] = x_fold.x[view][order][:, cols]
            rise[column] += weight * (score(Views(shuffled, x.widths)) - base)
    return rise


def lasso_weights(coef: np.ndarray, groups: dict[str, list[int]]) -> dict[str, float]:
    """Sum of |coefficient| per column group (inputs are standardised or 0/1)."""
    return {column: float(np.abs(coef[cols]).sum()) for column, cols in groups.items()}


def importance_table(permutation: dict[str, float], lasso: dict[str, float]) -> pd.DataFrame:
    """Every column, most important (by permutation) first."""
    frame = pd.DataFrame({"feature": list(permutation),
                          "permutation_importance": [round(v, 6) for v in permutation.values()],
                          "lasso_abs_coef": [round(lasso.get(c, 0.0), 6)
                                             for c in permutation]})
    frame = frame.sort_values(["permutation_importance", "feature"], ascending=[False, True],
                              kind="stable")
    return frame.reset_index(drop=True)
