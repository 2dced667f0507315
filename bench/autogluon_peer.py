"""The peer a competitor would pick instead: AutoGluon's `best_quality` preset on the same outer
folds as bench/nested_cv.py, its outer-fold predictions saved for `nested_cv.py report --peer`.

    python bench/autogluon_peer.py --out DIR [--fold-seeds 1000] [--time-limit 300]

What a competitor types (three lines), on each outer training part: every row kept (the two
partial sales included; AutoGluon is given no outlier rule), log(SalePrice) as the label, RMSE as
the metric, AutoGluon's own preprocessing of the raw columns, `presets="best_quality"` and a time
limit per outer fold. Nothing is tuned here: the preset is AutoGluon's published default, so its
rows are honest. Writes DIR/autogluon_oof_fs{seed}.npy (each house's outer-fold log price) and
DIR/autogluon_fs{seed}.json (time limit, seconds, machine, the models of each fold's ensemble).

AutoGluon needs pandas < 2.4 and this project pins pandas 3, so it lives in its own environment
(the `anchors` extra; bench/README.md):

    python -m venv .venv-anchors && .venv-anchors/bin/pip install torch==2.13.0 -e ".[anchors]"
    .venv-anchors/bin/python bench/autogluon_peer.py --out DIR
"""

from __future__ import annotations

import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
LABEL = "log_price"


def outer_folds(fold_seed: int) -> np.ndarray:
    """The outer fold of each house, as bench/nested_cv.py draws it (the train stage's KFold)."""
    from pipeline.config.params import load_params
    from pipeline.scoring.folds import plan_folds

    params = load_params(ROOT / "params.yaml")
    train = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_train.csv")
    pre = params.preprocess
    outlier = ((train["GrLivArea"] > pre.outlier_min_gr_liv_area)
               & (train["SalePrice"] < pre.outlier_max_sale_price)).to_numpy()
    plan = plan_folds(len(train), outlier, dataclasses.replace(params.train, fold_seed=fold_seed,
                                                               n_seeds=1))
    return plan.fold_of_row


def fit_predict(train: pd.DataFrame, held: pd.DataFrame, time_limit: int, seed: int
                ) -> tuple[np.ndarray, list[str]]:
    """AutoGluon as a competitor runs it: fit on `train`, predict `held` (its prices removed)."""
    from autogluon.tabular import TabularPredictor

    frame = train.drop(columns=["Id", "SalePrice"]).assign(**{LABEL: np.log(train["SalePrice"])})
    with tempfile.TemporaryDirectory(prefix="autogluon-") as path:
        predictor = TabularPredictor(label=LABEL, eval_metric="root_mean_squared_error",
                                     path=path, verbosity=1).fit(
            frame, presets="best_quality", time_limit=time_limit,
            ag_args_fit={"random_seed": seed})
        pred = predictor.predict(held.drop(columns=["Id", "SalePrice"], errors="ignore"))
        return pred.to_numpy(dtype=np.float64), list(predictor.model_names())


def run(out: Path, fold_seed: int, time_limit: int) -> dict:
    train = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_train.csv")
    fold_of_row = outer_folds(fold_seed)
    oof = np.full(len(train), np.nan)
    report = {"fold_seed": fold_seed, "time_limit_s": time_limit, "preset": "best_quality",
              "machine": f"{platform.machine()} {os.cpu_count()} cores", "folds": []}
    for fold in np.unique(fold_of_row):
        started = time.perf_counter()
        held = fold_of_row == fold
        oof[held], models = fit_predict(train[~held].reset_index(drop=True),
                                        train[held].reset_index(drop=True), time_limit, fold_seed)
        seconds = time.perf_counter() - started
        report["folds"].append({"fold": int(fold), "seconds": round(seconds, 1), "models": models})
        print(f"fold seed {fold_seed} fold {fold}: {seconds:.0f} s, {len(models)} models", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / f"autogluon_oof_fs{fold_seed}.npy", oof)
    (out / f"autogluon_fs{fold_seed}.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--fold-seeds", type=int, nargs="+", default=[1000])
    parser.add_argument("--time-limit", type=int, default=300, help="seconds per outer fold")
    args = parser.parse_args()
    for seed in args.fold_seeds:
        run(args.out, seed, args.time_limit)


if __name__ == "__main__":
    main()
