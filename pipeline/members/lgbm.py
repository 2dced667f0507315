"""Gradient-boosted trees with LightGBM: the family whose errors differ most from the linear
and MLP members'. Deterministic for a fixed seed and thread count (row-wise histograms)."""

from __future__ import annotations

from pipeline.members import COUNT, FRACTION, SEED, THREADS, Setting

# LightGBM needs at least two leaves per tree and caps them at 131072.
SETTINGS = {"n_estimators": Setting(int, low=1, low_open=False, high=100_000),
            "learning_rate": Setting(high=1), "num_leaves": Setting(int, low=2, low_open=False,
                                                                  high=131_072),
            "min_child_samples": COUNT, "subsample": FRACTION, "colsample_bytree": FRACTION,
            "reg_lambda": Setting(), "seed": SEED, "threads": THREADS}


def make_model(settings: dict):
    import lightgbm

    return lightgbm.LGBMRegressor(
        n_estimators=settings["n_estimators"], learning_rate=settings["learning_rate"],
        num_leaves=settings["num_leaves"], min_child_samples=settings["min_child_samples"],
        subsample=settings["subsample"], subsample_freq=1 if settings["subsample"] < 1 else 0,
        colsample_bytree=settings["colsample_bytree"], reg_lambda=settings["reg_lambda"],
        random_state=settings["seed"], n_jobs=settings["threads"], deterministic=True,
        force_row_wise=True, verbose=-1)
