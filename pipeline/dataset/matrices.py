"""The raw frames to model-ready matrices: the fitted encodings (impute, standardise, one-hot)
of train and test, the log target and the outlier rows. The preprocess stage saves what this
returns; bench/ and notebooks call it on frames of their own."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline.common.errors import PipelineError
from pipeline.dataset.features import build_transform
from pipeline.dataset.processed import Processed
from pipeline.dataset.schema import FEATURES, ID, TARGET, check_columns, check_target, pin_kinds
from pipeline.dataset.views import Views

if TYPE_CHECKING:  # the dataset reads the preprocess section; config checks it
    from pipeline.config.preprocess import PreprocessParams


def outlier_mask(train: pd.DataFrame, params: PreprocessParams) -> np.ndarray:
    """The two huge, cheap partial sales De Cock warns about: left out of training folds."""
    return ((train["GrLivArea"] > params.outlier_min_gr_liv_area)
            & (train[TARGET] < params.outlier_max_sale_price)).to_numpy()


def encode(features_train: pd.DataFrame, features_test: pd.DataFrame, fit_frame: pd.DataFrame,
           params: PreprocessParams) -> tuple[np.ndarray, np.ndarray, list[str], object]:
    """(train matrix, test matrix, feature names, fitted transform) of one encoding."""
    with np.errstate(all="ignore"):  # an overflow is reported below, by column
        transform = build_transform(params).fit(fit_frame)
        x_train = transform.transform(features_train).astype(np.float32)
        x_test = transform.transform(features_test).astype(np.float32)
    names = [str(n) for n in transform[-1].get_feature_names_out()]
    for matrix, part in ((x_train, "train.csv"), (x_test, "test.csv")):
        bad = [n for n, ok in zip(names, np.isfinite(matrix).all(axis=0), strict=True) if not ok]
        if bad:
            own = [f"preprocess.features.{n}" for n, _ in params.features
                   if any(b.endswith(f"__{n}") for b in bad)]
            raise PipelineError(
                f"{', '.join(own) or 'preprocess'}: {len(bad)} column(s) of {part} are not "
                f"finite once imputed and scaled as the models see them ({', '.join(bad[:5])}): "
                "values too large for the scaling (LotArea * 1e300?); keep a feature within "
                "about +-1e15 (docs/features.md)")
    return x_train, x_test, names, transform


def preprocess(train: pd.DataFrame, test: pd.DataFrame, params: PreprocessParams) -> Processed:
    """Fit the transform (on train, or train+test features) and return arrays and metadata.

    With `mlp_views`, every further encoding is fitted the same way. The MLP's inputs are
    `mlp_train` / `mlp_test` (Views: every encoding, or just the first) with `view_names`;
    `x_train` and `x_test` are the first encoding, which the other model families see.
    """
    check_columns(train, "train.csv", with_target=True)
    check_columns(test, "test.csv", with_target=False)
    check_target(train, "train.csv")
    train = pin_kinds(train, "train.csv")
    test = pin_kinds(test, "test.csv")
    features_train = train.loc[:, list(FEATURES)]
    features_test = test.loc[:, list(FEATURES)]
    fit_frame = (features_train if params.fit_on == "train"
                 else pd.concat([features_train, features_test], ignore_index=True))
    encoded = [encode(features_train, features_test, fit_frame, p) for p in params.encodings()]
    x_train, x_test, names, _ = encoded[0]
    return Processed(
        x_train=x_train,
        y_train=np.log(train[TARGET].to_numpy(dtype=np.float64)),
        id_train=train[ID].to_numpy(dtype=np.int64),
        outlier=outlier_mask(train, params),
        x_test=x_test,
        id_test=test[ID].to_numpy(dtype=np.int64),
        feature_names=names,
        transforms=[e[3] for e in encoded],
        mlp_train=Views.of([e[0] for e in encoded]),
        mlp_test=Views.of([e[1] for e in encoded]),
        view_names=[e[2] for e in encoded],
    )
