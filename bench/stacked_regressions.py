"""The classic "Stacked Regressions" Kaggle recipe (2017, public score 0.11420), rebuilt from its
published description and scored on this project's fold plans.

    python bench/stacked_regressions.py [--fold-seeds 0 1 2 200 201 202 300 301 302]

Its preprocessing: the two outlier sales dropped from training, log1p of the target, features of
train and test together: 'None' / 0 for what is absent (no pool, no garage, no basement, ...),
LotFrontage as its neighbourhood's median, modes for the few other gaps, Utilities dropped,
MSSubClass / OverallCond / YrSold / MoSold as categories, ordinal columns label-encoded, TotalSF,
Box-Cox (lambda 0.15) of features whose |skew| > 0.75, one-hot of the rest. Its models, with
their published settings: Lasso and ElasticNet behind a RobustScaler, polynomial kernel ridge,
gradient boosting with Huber loss, XGBoost and LightGBM. ElasticNet, gradient boosting and kernel
ridge are stacked under a Lasso meta-model fitted on their 5-fold out-of-fold predictions; the
submission is 0.70 x stack + 0.15 x XGBoost + 0.15 x LightGBM.

Every outer fold refits everything (the stack's inner folds included) on that fold's training
rows only, so its score is honest cross-validation. Needs the `stacked` extra (xgboost, lightgbm):
`python -m pip install -e ".[stacked]"`.
"""

from __future__ import annotations

import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split

import argparse
import datetime
import time

import numpy as np
import pandas as pd
from common import ROOT, markdown_table
from scipy.special import boxcox1p
from sklearn.base import clone
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import ElasticNet, Lasso
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import RobustScaler

from pipeline.config.params import load_params
from pipeline.scoring.folds import cv_metrics, plan_folds

NONE_CATEGORIES = ("PoolQC", "MiscFeature", "Alley", "Fence", "FireplaceQu", "GarageType",
                   "GarageFinish", "GarageQual", "GarageCond", "BsmtQual", "BsmtCond",
                   "BsmtExposure", "BsmtFinType1", "BsmtFinType2", "MasVnrType", "MSSubClass")
ZERO_NUMBERS = ("GarageYrBlt", "GarageArea", "GarageCars", "BsmtFinSF1", "BsmtFinSF2",
                "BsmtUnfSF", "TotalBsmtSF", "BsmtFullBath", "BsmtHalfBath", "MasVnrArea")
MODE_FILLS = ("MSZoning", "Electrical", "KitchenQual", "Exterior1st", "Exterior2nd", "SaleType")
AS_CATEGORY = ("MSSubClass", "OverallCond", "YrSold", "MoSold")
LABEL_ENCODED = ("FireplaceQu", "BsmtQual", "BsmtCond", "GarageQual", "GarageCond", "ExterQual",
                 "ExterCond", "HeatingQC", "PoolQC", "KitchenQual", "BsmtFinType1",
                 "BsmtFinType2", "Functional", "Fence", "BsmtExposure", "GarageFinish",
                 "LandSlope", "LotShape", "PavedDrive", "Street", "Alley", "CentralAir",
                 "MSSubClass", "OverallCond", "YrSold", "MoSold")


def recipe_features(train: pd.DataFrame, test: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The recipe's feature matrix for train and test rows (fitted on both, as it is)."""
    both = pd.concat([train.drop(columns=["SalePrice"]), test], ignore_index=True)
    both = both.drop(columns=["Id", "Utilities"])
    for col in NONE_CATEGORIES:
        both[col] = both[col].fillna("None")
    for col in ZERO_NUMBERS:
        both[col] = both[col].fillna(0)
    both["LotFrontage"] = both.groupby("Neighborhood")["LotFrontage"].transform(
        lambda s: s.fillna(s.median()))
    for col in MODE_FILLS:
        both[col] = both[col].fillna(both[col].mode()[0])
    both["Functional"] = both["Functional"].fillna("Typ")
    for col in AS_CATEGORY:
        both[col] = both[col].astype(str)
    for col in LABEL_ENCODED:  # codes in sorted order of the levels, as a label encoder gives
        levels = sorted(both[col].astype(str).unique())
        both[col] = both[col].astype(str).map({v: i for i, v in enumerate(levels)})
    both["TotalSF"] = both["TotalBsmtSF"] + both["1stFlrSF"] + both["2ndFlrSF"]
    numeric = both.select_dtypes("number").columns
    skew = both[numeric].skew().abs()
    for col in skew.index[skew > 0.75]:
        both[col] = boxcox1p(both[col], 0.15)
    both = pd.get_dummies(both, dtype=float)
    both = both.fillna(both.mean())  # a handful of gaps the recipe leaves to its libraries
    x = both.to_numpy(dtype=np.float64)
    return x[: len(train)], x[len(train):]


def base_models(seed: int) -> dict:
    import lightgbm
    import xgboost

    return {
        "enet": make_pipeline(RobustScaler(), ElasticNet(alpha=0.0005, l1_ratio=0.9,
                                                         random_state=3, max_iter=50_000)),
        "krr": KernelRidge(alpha=0.6, kernel="polynomial", degree=2, coef0=2.5),
        "gboost": GradientBoostingRegressor(n_estimators=3000, learning_rate=0.05, max_depth=4,
                                            max_features="sqrt", min_samples_leaf=15,
                                            min_samples_split=10, loss="huber", random_state=seed),
        "xgb": xgboost.XGBRegressor(colsample_bytree=0.4603, gamma=0.0468, learning_rate=0.05,
                                    max_depth=3, min_child_weight=1.7817, n_estimators=2200,
                                    reg_alpha=0.4640, reg_lambda=0.8571, subsample=0.5213,
                                    random_state=seed, n_jobs=2, verbosity=0),
        "lgb": lightgbm.LGBMRegressor(objective="regression", num_leaves=5, learning_rate=0.05,
                                      n_estimators=720, max_bin=55, bagging_fraction=0.8,
                                      bagging_freq=5, feature_fraction=0.2319,
                                      feature_fraction_seed=9, bagging_seed=9, min_data_in_leaf=6,
                                      min_sum_hessian_in_leaf=11, verbose=-1, n_jobs=2),
        "meta": make_pipeline(RobustScaler(), Lasso(alpha=0.0005, random_state=1, max_iter=50_000)),
    }


def stacked_predict(x: np.ndarray, y: np.ndarray, x_new: np.ndarray, seed: int) -> np.ndarray:
    """Fit the recipe on (x, y) and predict x_new (log price)."""
    models = base_models(seed)
    stacked = ("enet", "gboost", "krr")
    inner = KFold(5, shuffle=True, random_state=156)
    meta_x = np.zeros((len(y), len(stacked)))
    new_meta = np.zeros((len(x_new), len(stacked)))
    for j, name in enumerate(stacked):
        fold_preds = []
        for tr, va in inner.split(x):
            model = clone(models[name]).fit(x[tr], y[tr])
            meta_x[va, j] = model.predict(x[va])
            fold_preds.append(model.predict(x_new))
        new_meta[:, j] = np.mean(fold_preds, axis=0)  # the recipe averages its fold models
    stack = clone(models["meta"]).fit(meta_x, y).predict(new_meta)
    xgb = clone(models["xgb"]).fit(x, y).predict(x_new)
    lgb = clone(models["lgb"]).fit(x, y).predict(x_new)
    return 0.70 * stack + 0.15 * xgb + 0.15 * lgb


def oof_log_price(fold_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, object]:
    """Out-of-fold log-price predictions on the project's fold plan for `fold_seed`."""
    import dataclasses

    params = load_params(ROOT / "params.yaml")
    train = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_train.csv")
    test = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_test.csv")
    x, _ = recipe_features(train, test)
    y = np.log(train["SalePrice"].to_numpy(dtype=np.float64))  # log1p in the recipe: same ranking
    pre = params.preprocess
    outlier = ((train["GrLivArea"] > pre.outlier_min_gr_liv_area)
               & (train["SalePrice"] < pre.outlier_max_sale_price)).to_numpy()
    plan = plan_folds(len(y), outlier, dataclasses.replace(params.train, fold_seed=fold_seed,
                                                           n_seeds=1, exclude_outliers=True))
    oof = np.empty(len(y))
    for fold, tmask in enumerate(plan.train_mask):
        rows = plan.fold_of_row == fold
        oof[rows] = stacked_predict(x[tmask], y[tmask], x[rows], seed=fold_seed)
    return oof, y, outlier, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fold-seeds", type=int, nargs="+",
                        default=[0, 1, 2, 200, 201, 202, 300, 301, 302])
    parser.add_argument("--save", help="directory to save each shuffle's out-of-fold predictions")
    args = parser.parse_args()
    rows, scores = [], []
    for seed in args.fold_seeds:
        started = time.perf_counter()
        oof, y, outlier, plan = oof_log_price(seed)
        metrics = cv_metrics(oof, y, outlier, plan.fold_of_row)
        scores.append((metrics["cv_rmse"], metrics["cv_rmse_no_outliers"]))
        rows.append([seed, f"{metrics['cv_rmse']:.4f}", f"{metrics['cv_rmse_no_outliers']:.4f}",
                     f"{time.perf_counter() - started:.0f}"])
        print(f"fold seed {seed}: {rows[-1][1]} / {rows[-1][2]} ({rows[-1][3]} s)", flush=True)
        if args.save:
            from pathlib import Path

            Path(args.save).mkdir(parents=True, exist_ok=True)
            np.save(Path(args.save) / f"stacked_oof_fs{seed}.npy", oof)
    mean = np.mean(scores, axis=0)
    rows.append(["mean", f"{mean[0]:.4f}", f"{mean[1]:.4f}", ""])
    print(f"# Stacked Regressions recipe, 5-fold CV, {datetime.date.today()}\n")
    print(markdown_table(["fold seed", "CV log-RMSE (all rows)", "CV log-RMSE (outliers not scored)",
                          "seconds"], rows))


if __name__ == "__main__":
    main()
