"""Gradient-boosted trees with LightGBM: the family whose errors differ most from the linear
and MLP members'. Deterministic for a fixed seed and thread count (column-wise histograms: the
same trees as row-wise ones, bit for bit, in ~15% less time on this data's 327 columns)."""

from __future__ import annotations

from pipeline.config.members import COUNT, EXCLUDE_OUTLIERS, FRACTION, SEED, THREADS, Setting
from pipeline.config.train import TrainParams

# LightGBM needs at least two leaves per tree and caps them at 131072.
SETTINGS = {"n_estimators": Setting(int, low=1, low_open=False, high=100_000),
            "learning_rate": Setting(high=1),
            "num_leaves": Setting(int, low=2, low_open=False, high=131_072),
            "min_child_samples": COUNT, "subsample": FRACTION, "colsample_bytree": FRACTION,
            "reg_lambda": Setting(), "seed": SEED, "threads": THREADS,
            "exclude_outliers": EXCLUDE_OUTLIERS}


def make_model(settings: dict, train: TrainParams | None = None):
    """LightGBM's own scikit-learn estimator, from members.lgbm alone (no train.* setting)."""
    import lightgbm

    return lightgbm.LGBMRegressor(
        n_estimators=settings["n_estimators"], learning_rate=settings["learning_rate"],
        num_leaves=settings["num_leaves"], min_child_samples=settings["min_child_samples"],
        subsample=settings["subsample"], subsample_freq=1 if settings["subsample"] < 1 else 0,
        colsample_bytree=settings["colsample_bytree"], reg_lambda=settings["reg_lambda"],
        random_state=settings["seed"], n_jobs=settings["threads"], deterministic=True,
        force_col_wise=True, verbose=-1)
