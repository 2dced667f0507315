"""Cross-validated quality of the book's recipe, the Lasso baseline and the project's default MLP
ensemble (and, with --stacked, the classic Stacked Regressions recipe), each on the same
repeated K-fold splits. The blend and its members: bench/blend_quality.py.

    python bench/model_quality.py [--repeats 3] [--stacked]

Each repeat reshuffles the K folds (fold_seed = repeat); the table gives the mean and std over
repeats of the mean per-fold log-RMSE, on all rows and with the outlier rows left out of scoring.
Nothing here is tuned on anything but these cross-validation numbers.
"""

from __future__ import annotations

import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split

import argparse
import dataclasses
import datetime
import time

import numpy as np
import pandas as pd
import torch
from common import ROOT, device_name, markdown_table

from pipeline.config.params import load_params
from pipeline.dataset.matrices import preprocess
from pipeline.engine.device import resolve_device
from pipeline.members.mlp.fit import fit_mlp_configs
from pipeline.members.mlp.predict import oof_predictions
from pipeline.scoring.folds import cv_metrics, plan_folds


def recipes(params):
    """name -> (preprocess params, train params, ensemble average)."""
    book_pre = dataclasses.replace(params.preprocess, fit_on="train+test", numeric_as_category=(),
                                   ordinal_quality=False, log1p_skewed=False,
                                   engineered_features=False)
    book = dataclasses.replace(params.train, hidden=(), linear_skip=False, skip_init="zeros",
                               optimizer="sgd", lr=0.01, weight_decay=0.0, l1=0.0, dropout=0.0,
                               max_epochs=10, patience=0, n_seeds=1, exclude_outliers=False)
    default = params.train
    from_zeros = dataclasses.replace(default, skip_init="zeros")
    return {
        "d2l book: linear model, SGD, 10 epochs, book preprocessing": (book_pre, book, "price"),
        "project default: MLP ensemble (params.yaml)":
            (params.preprocess, default, params.ensemble.average),
        "the same MLP ensemble, linear path started at zeros (skip_init: zeros)":
            (params.preprocess, from_zeros, params.ensemble.average),
    }


def evaluate(pre, tp, average, repeats, device):
    train = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_train.csv")
    test = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_test.csv")
    data = preprocess(train, test, pre)
    y, outlier = data.y_train, data.outlier
    x = data.mlp_train
    scores = []
    for repeat in range(repeats):
        rtp = dataclasses.replace(tp, fold_seed=repeat)
        plan = plan_folds(len(y), outlier, rtp, len(x))
        models = fit_mlp_configs(x, y, plan, [rtp], device, label=f"repeat {repeat}")[0].models
        metrics = cv_metrics(oof_predictions(models, x, plan, average), y, outlier, plan.fold_of_row)
        scores.append((metrics["cv_rmse"], metrics["cv_rmse_no_outliers"]))
    return np.array(scores)


def stacked_recipe_scores(repeats: int) -> np.ndarray:
    """The classic Stacked Regressions recipe on the same fold shuffles (needs the `stacked` extra)."""
    from stacked_regressions import oof_log_price

    scores = []
    for repeat in range(repeats):
        oof, y, outlier, plan = oof_log_price(repeat)
        metrics = cv_metrics(oof, y, outlier, plan.fold_of_row)
        scores.append((metrics["cv_rmse"], metrics["cv_rmse_no_outliers"]))
    return np.array(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--stacked", action="store_true",
                        help="add the Stacked Regressions recipe's row (slow: ~2 min a repeat)")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    device = resolve_device(args.device)
    rows = []
    for name, (pre, tp, average) in recipes(params).items():
        started = time.perf_counter()
        scores = evaluate(pre, tp, average, args.repeats, device)
        rows.append([name, f"{scores[:, 0].mean():.4f} +- {scores[:, 0].std():.4f}",
                     f"{scores[:, 1].mean():.4f} +- {scores[:, 1].std():.4f}",
                     f"{time.perf_counter() - started:.0f}"])
    if args.stacked:
        started = time.perf_counter()
        scores = stacked_recipe_scores(args.repeats)
        rows.append(["Stacked Regressions recipe (bench/stacked_regressions.py)",
                     f"{scores[:, 0].mean():.4f} +- {scores[:, 0].std():.4f}",
                     f"{scores[:, 1].mean():.4f} +- {scores[:, 1].std():.4f}",
                     f"{time.perf_counter() - started:.0f}"])
    print(f"# Model quality, {params.train.folds}-fold CV x {args.repeats} repeats, "
          f"{device_name(device)}, torch {torch.__version__}, {datetime.date.today()}")
    print()
    print(markdown_table(["recipe", "CV log-RMSE (all rows)", "CV log-RMSE (outliers not scored)",
                          "seconds"], rows))


if __name__ == "__main__":
    main()
