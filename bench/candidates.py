"""Candidate members measured by bench/nested_cv.py (`run --parts knn lgbm_te`), kept out of the
pipeline until one wins by the rule: new information for the normal houses.

- `LassoScaledKNN`: comparable sales. The price of a house is the mean log price of its k
  nearest training houses, distances measured in the Lasso-scaled space of the lasso_svr member
  (column j times |coef_j| ** power of an in-fold Lasso), as an appraiser prices from the sales
  most like it. scikit-learn's published default k = 5, uniform weights.
- `NeighbourhoodTargetLGBM`: LightGBM (params.yaml's members.lgbm) given one more column, the
  neighbourhood's in-fold mean log price (scikit-learn's TargetEncoder with its published
  defaults: smoothing "auto", 5-fold cross fitting inside each fit), which trees split on more
  readily than on 25 one-hot columns.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin


class LassoScaledKNN(RegressorMixin, BaseEstimator):
    def __init__(self, n_neighbors: int = 5, power: float = 2.0, lasso_alpha: float = 0.0005,
                 lasso_max_iter: int = 50_000, lasso_tol: float = 1e-6):
        self.n_neighbors, self.power = n_neighbors, power
        self.lasso_alpha, self.lasso_max_iter, self.lasso_tol = lasso_alpha, lasso_max_iter, lasso_tol

    def fit(self, x, y):
        from sklearn.neighbors import KNeighborsRegressor

        from pipeline.members._lasso import LassoSettings, fit_lasso

        lasso = LassoSettings(self.lasso_alpha, self.lasso_max_iter, self.lasso_tol)
        coef = np.abs(fit_lasso(x, y, lasso, "candidate knn").coef_)
        scale = coef ** self.power
        self.scale_ = scale / scale[coef > 0].mean()
        self.knn_ = KNeighborsRegressor(n_neighbors=self.n_neighbors).fit(x * self.scale_, y)
        return self

    def predict(self, x):
        return self.knn_.predict(np.asarray(x) * self.scale_)


class NeighbourhoodTargetLGBM(RegressorMixin, BaseEstimator):
    """x's last column is the house's neighbourhood code; it is replaced by its in-fold target
    statistic (fitted on the rows this model is fitted on, cross-fitted among them)."""

    def __init__(self, lgbm=None):
        self.lgbm = lgbm

    def fit(self, x, y):
        from sklearn.base import clone
        from sklearn.model_selection import KFold
        from sklearn.preprocessing import TargetEncoder

        codes = x[:, -1:].astype(int)
        self.encoder_ = TargetEncoder(target_type="continuous",  # 5 folds, shuffled, seeded
                                      cv=KFold(5, shuffle=True, random_state=0))
        encoded = self.encoder_.fit_transform(codes, y)
        self.model_ = clone(self.lgbm).fit(np.hstack([x[:, :-1], encoded]), y)
        return self

    def predict(self, x):
        encoded = self.encoder_.transform(np.asarray(x)[:, -1:].astype(int))
        return self.model_.predict(np.hstack([np.asarray(x)[:, :-1], encoded]))
