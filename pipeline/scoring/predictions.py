"""Blend members' predictions: a family fitted on the train stage's fold plan, and the file
each member stage writes and the blend stage reads (members/NAME/predictions.npz)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.common.atomic import atomic_path
from pipeline.common.errors import PipelineError
from pipeline.common.inputs import read_npz
from pipeline.common.threads import fit_then_use
from pipeline.config.params import Params
from pipeline.config.train import TrainParams
from pipeline.scoring.folds import FoldPlan, kfold_rows


def excludes_outliers(name: str, params: Params) -> bool:
    """Whether member `name` leaves the outlier rows out of its training folds: the MLP's
    train.exclude_outliers, each family's members.NAME.exclude_outliers."""
    if name == "mlp":
        return params.train.exclude_outliers
    return bool(getattr(params.members, name)["exclude_outliers"])


def member_plan(n_rows: int, outlier: np.ndarray, params: Params, exclude_outliers: bool
                ) -> FoldPlan:
    """The train stage's folds, one model per fold, the outlier rows out of training where the
    member leaves them out. A member's own seed is in its settings (the MLP's seeds: none)."""
    t = params.train
    fold_of_row, train_rows, val_rows = kfold_rows(n_rows, outlier, t.folds, t.fold_seed,
                                                   exclude_outliers)
    return FoldPlan([f"fold{k}" for k in range(t.folds)], np.arange(t.folds), [],
                    train_rows, val_rows, fold_of_row)


def cross_fit(estimator, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, plan: FoldPlan,
              threads_each: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(out-of-fold log prices [N], test log prices [N_test], the mean of the fold models).

    Each fold fits its own `clone` of the unfitted scikit-learn estimator; the folds fit, then
    predict, at once where the cores allow (a model using `threads_each` of them). The test
    mean is summed in fold order, so the bits do not depend on which fold finished first."""
    from sklearn.base import clone

    held = [plan.fold_of_row == fold for fold in range(len(plan.train_mask))]

    def fit(fold: int):
        return fold, clone(estimator).fit(x[plan.train_mask[fold]], y[plan.train_mask[fold]])

    def predict(fitted) -> tuple[np.ndarray, np.ndarray]:
        fold, model = fitted
        return model.predict(x[held[fold]]), model.predict(x_test)

    oof = np.full(len(y), np.nan)
    test = np.zeros(len(x_test))
    for rows, (oof_pred, test_pred) in zip(
            held, fit_then_use(fit, predict, range(len(held)), threads_each), strict=True):
        oof[rows] = oof_pred
        test += test_pred / len(held)
    return oof, test


def plan_signature(train: TrainParams, exclude_outliers: bool) -> np.ndarray:
    """The settings that fix a member's fold plan: the folds every member shares, and whether
    it left the outlier rows out of training (its own setting)."""
    return np.array([train.folds, train.fold_seed, int(exclude_outliers)])


def check_same_plan(members: dict[str, dict], params: Params) -> None:
    """Every member on the same houses and the same folds as the train stage says."""
    first = next(iter(members.values()))
    for name, data in members.items():
        expected = plan_signature(params.train, excludes_outliers(name, params))
        if not np.array_equal(data["plan"], expected):
            raise PipelineError(
                f"member {name} was trained on another fold plan (folds, fold_seed, "
                f"exclude_outliers = {data['plan'].tolist()}, params say {expected.tolist()}); "
                "re-run it (dvc repro)")
        for key in ("id_train", "id_test", "fold_of_row"):
            if not np.array_equal(data[key], first[key]):
                raise PipelineError(f"member {name}: its {key} differ from the other members'; "
                                    "re-run the pipeline (dvc repro)")


def save_predictions(path: str | os.PathLike, oof: np.ndarray, test: np.ndarray,
                     id_train: np.ndarray, id_test: np.ndarray, fold_of_row: np.ndarray,
                     train: TrainParams, exclude_outliers: bool) -> None:
    """What the blend stage needs, with what it checks members against (Ids, fold plan)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, oof=oof, test=test, id_train=id_train, id_test=id_test,
                 fold_of_row=fold_of_row, plan=plan_signature(train, exclude_outliers))


# A member's log prices must lie within this many log units of the training prices' range
# (e**3 = 20x): anything further out is a broken member, not a prediction.
LOG_PRICE_MARGIN = 3.0
NUMBERS, INTEGERS = "fiu", "iu"  # numpy dtype kinds
ARRAYS = {"oof": NUMBERS, "test": NUMBERS, "id_train": INTEGERS, "id_test": INTEGERS,
          "fold_of_row": INTEGERS, "plan": INTEGERS}


def load_member(name: str, members_dir: Path, mlp_path: Path) -> dict:
    path = mlp_path if name == "mlp" else members_dir / name / "predictions.npz"
    data = read_npz(path, f"member {name} has no predictions; run dvc repro")
    for key, kinds in ARRAYS.items():
        if key not in data:
            raise PipelineError(f"member {name}: {path} has no '{key}' array; re-run its stage "
                                "(dvc repro)")
        if data[key].ndim != 1 or data[key].dtype.kind not in kinds:
            raise PipelineError(f"member {name}: '{key}' in {path} is not a 1-D array of "
                                f"{'numbers' if kinds == NUMBERS else 'integers'}; re-run its stage")
    for preds, ids in (("oof", "id_train"), ("fold_of_row", "id_train"), ("test", "id_test")):
        if len(data[preds]) != len(data[ids]):
            raise PipelineError(f"member {name}: {path} has {len(data[preds])} '{preds}' values "
                                f"for {len(data[ids])} houses; re-run its stage (dvc repro)")
    for key in ("oof", "test"):
        if not np.isfinite(data[key]).all():
            raise PipelineError(f"member {name}: non-finite {key} predictions in {path}; re-run "
                                "its stage or drop it from ensemble.members")
    return data


def check_price_range(members: dict[str, dict], target: np.ndarray) -> None:
    """Every member's log prices within a sane distance of the training prices' range."""
    low, high = target.min() - LOG_PRICE_MARGIN, target.max() + LOG_PRICE_MARGIN
    for name, data in members.items():
        for key in ("oof", "test"):
            values = data[key]
            if values.min() < low or values.max() > high:
                bad = values.min() if values.min() < low else values.max()
                raise PipelineError(
                    f"member {name}: a {key} prediction of {bad:.4g} (log price) is far outside "
                    f"the training prices' {target.min():.2f}-{target.max():.2f}; re-run its "
                    "stage or drop it from ensemble.members")
