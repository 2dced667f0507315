"""The fitted feature transform: engineering switches, then impute/standardize/one-hot.

One scikit-learn Pipeline, so the exact transform fitted in the preprocess stage is saved and can
be applied to any new frame later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.special import boxcox1p
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from pipeline.dataset.schema import AGES, PRESENCE, TOTALS

if TYPE_CHECKING:  # the dataset reads the preprocess section; config checks it
    from pipeline.config.preprocess import PreprocessParams

QUALITY = {"Po": 1, "Fa": 2, "TA": 3, "Gd": 4, "Ex": 5}
# Ordered levels of the data description; a missing value means "none" (no basement, ...) -> 0.
ORDINAL_SCALES = {
    **{c: QUALITY for c in ("ExterQual", "ExterCond", "BsmtQual", "BsmtCond", "HeatingQC",
                            "KitchenQual", "FireplaceQu", "GarageQual", "GarageCond", "PoolQC")},
    "BsmtExposure": {"No": 1, "Mn": 2, "Av": 3, "Gd": 4},
    "BsmtFinType1": {"Unf": 1, "LwQ": 2, "Rec": 3, "BLQ": 4, "ALQ": 5, "GLQ": 6},
    "BsmtFinType2": {"Unf": 1, "LwQ": 2, "Rec": 3, "BLQ": 4, "ALQ": 5, "GLQ": 6},
    "GarageFinish": {"Unf": 1, "RFn": 2, "Fin": 3},
}
MISSING_LEVEL = "missing"
# Domain fills: a blank measurement of a part the house lacks (no basement, garage, veneer) is 0.
ABSENT_IS_ZERO = ("MasVnrArea", "BsmtFinSF1", "BsmtFinSF2", "BsmtUnfSF", "TotalBsmtSF",
                  "BsmtFullBath", "BsmtHalfBath", "GarageCars", "GarageArea")


class FeatureEngineer(TransformerMixin, BaseEstimator):
    """Recode columns by the preprocess switches; which columns to transform for skew, and the
    neighbourhood medians of the domain fills, are learned in fit."""

    def __init__(self, numeric_as_category=(), ordinal_quality=False, log1p_skewed=False,
                 skew_threshold=0.75, skew_lambda=0.0, engineered_features=False,
                 domain_fills=False, features=()):
        self.engineered_features = engineered_features
        self.features = features
        self.numeric_as_category = numeric_as_category
        self.ordinal_quality = ordinal_quality
        self.log1p_skewed = log1p_skewed
        self.skew_threshold = skew_threshold
        self.skew_lambda = skew_lambda
        self.domain_fills = domain_fills

    def _fill(self, frame: pd.DataFrame) -> pd.DataFrame:
        """What the data description implies for a blank: 0 for an absent part's measurements,
        the house's own build year for a garage's, its neighbourhood's median lot frontage."""
        frame = frame.copy()
        for col in ABSENT_IS_ZERO:
            frame[col] = frame[col].fillna(0.0)
        frame["GarageYrBlt"] = frame["GarageYrBlt"].fillna(frame["YearBuilt"])
        median = frame["Neighborhood"].map(self.frontage_median_).astype("float64")
        frame["LotFrontage"] = frame["LotFrontage"].fillna(median).fillna(self.frontage_overall_)
        return frame

    def _recode(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = self._fill(frame) if self.domain_fills else frame.copy()
        if self.engineered_features:
            frame = add_engineered_features(frame)
        if self.features:  # the user's own (preprocess.features), in order
            from collections import ChainMap

            from pipeline.dataset.expressions import evaluate

            added: dict = {}
            for name, text in self.features:  # a feature may read those defined before it
                added[name] = evaluate(name, text, ChainMap(added, frame), ids=None, n=len(frame))
            frame = pd.concat([frame, pd.DataFrame(added, index=frame.index)], axis=1)
        for col in self.numeric_as_category:
            values = frame[col]
            frame[col] = values.map(lambda v: MISSING_LEVEL if pd.isna(v) else str(v)).astype("str")
        if self.ordinal_quality:
            for col, scale in ORDINAL_SCALES.items():
                frame[col] = frame[col].map(scale).fillna(0).astype("float64")
        return frame

    def fit(self, frame: pd.DataFrame, y=None):
        frontage = frame["LotFrontage"]
        self.frontage_median_ = frontage.groupby(frame["Neighborhood"]).median().dropna().to_dict()
        self.frontage_overall_ = float(frontage.median()) if frontage.notna().any() else 0.0
        recoded = self._recode(frame)
        self.log1p_columns_ = []
        if self.log1p_skewed:
            numeric = recoded.select_dtypes("number")
            skew = numeric.skew()
            nonneg = numeric.min() >= 0
            self.log1p_columns_ = sorted(skew.index[(skew.abs() > self.skew_threshold) & nonneg])
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        recoded = self._recode(frame)
        for col in self.log1p_columns_:  # Box-Cox of 1 + x, whose lambda 0 is log1p
            values = recoded[col].clip(lower=0)
            recoded[col] = (np.log1p(values) if self.skew_lambda == 0
                            else boxcox1p(values, self.skew_lambda))
        return recoded


class RobustSmoothClip(TransformerMixin, BaseEstimator):
    """RealMLP's input scaling (Holzmüller et al., 2024): centre on the median, divide by the
    interquartile range (half the range where that is 0), then clip smoothly with
    z / sqrt(1 + (z / 3)^2), so a heavy tail or an unseen extreme cannot dominate a layer."""

    def fit(self, x, y=None):
        x = validate_data(self, x, dtype=np.float64)
        q25, self.median_, q75 = np.quantile(x, [0.25, 0.5, 0.75], axis=0)
        spread = q75 - q25
        half_range = (x.max(0) - x.min(0)) / 2
        self.scale_ = np.where(spread > 0, spread, np.where(half_range > 0, half_range, 1.0))
        return self

    def transform(self, x):
        check_is_fitted(self)
        z = (validate_data(self, x, dtype=np.float64, reset=False) - self.median_) / self.scale_
        return z / np.sqrt(1 + (z / 3) ** 2)

    def get_feature_names_out(self, input_features=None):
        return np.asarray(input_features if input_features is not None
                          else [f"x{i}" for i in range(self.n_features_in_)], dtype=object)


class PiecewiseLinear(TransformerMixin, BaseEstimator):
    """Piecewise-linear encoding of numeric columns on quantile bins (after Gorishniy et al.,
    2022), as kinks: each column stays and gains max(0, x - edge) per inner edge of its bins, a
    change of slope there, so an L1 penalty keeps a column linear unless its kinks pay for
    themselves. Edges are the quantiles of the fit rows (repeated edges merged, so a flag or a
    count with few values keeps fewer or no kinks). The added columns are `COLUMN_ple1`, ...
    (The paper's own ramp basis tied with it: git tag mlp-options-2026-11.)
    """

    def __init__(self, bins=4):
        self.bins = bins

    def fit(self, x, y=None):
        x = validate_data(self, x, dtype=np.float64)
        quantiles = np.linspace(0, 1, self.bins + 1)
        self.edges_ = [np.unique(np.quantile(col, quantiles)) for col in x.T]
        return self

    def transform(self, x):
        check_is_fitted(self)
        x = validate_data(self, x, dtype=np.float64, reset=False)
        parts = [p for col, edges in zip(x.T, self.edges_, strict=True)
                 for p in (col, *(np.maximum(col - edge, 0.0) for edge in edges[1:-1]))]
        return np.stack(parts, axis=1)

    def get_feature_names_out(self, input_features=None):
        names = (input_features if input_features is not None
                 else [f"x{i}" for i in range(self.n_features_in_)])
        out = []
        for name, edges in zip(names, self.edges_, strict=True):
            out += [name, *(f"{name}_ple{i + 1}" for i in range(max(0, len(edges) - 2)))]
        return np.array(out, dtype=object)


def add_engineered_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Totals, ages at sale and has-a-part flags: whole-house sizes no single column holds."""
    added = {name: sum(frame[col].fillna(0) * weight for col, weight in parts.items())
             for name, parts in TOTALS.items()}
    added |= {name: (frame["YrSold"] - frame[col]).clip(lower=0) for name, col in AGES.items()}
    added |= {f"Has{col}": (frame[col].fillna(0) > 0).astype("float64") for col in PRESENCE}
    return frame.assign(**added)


def build_transform(params: PreprocessParams) -> Pipeline:
    """Numeric: mean-impute then standardize or robust-scale (then a piecewise-linear encoding, if chosen).
    Categorical: one-hot, missing as its own level."""
    scaler = StandardScaler() if params.scaler == "standard" else RobustSmoothClip()
    numeric = make_pipeline(SimpleImputer(strategy="mean"), scaler)
    if params.piecewise_linear != "none":
        numeric.steps.append(("piecewise", PiecewiseLinear(params.piecewise_bins)))
    categorical = make_pipeline(
        SimpleImputer(strategy="constant", fill_value=MISSING_LEVEL, keep_empty_features=True),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32),
    )
    columns = ColumnTransformer(
        [("num", numeric, make_column_selector(dtype_include="number")),
         ("cat", categorical, make_column_selector(dtype_exclude="number"))],
        verbose_feature_names_out=True,
    )
    engineer = FeatureEngineer(
        numeric_as_category=tuple(params.numeric_as_category),
        ordinal_quality=params.ordinal_quality,
        log1p_skewed=params.log1p_skewed,
        skew_threshold=params.skew_threshold,
        skew_lambda=params.skew_lambda,
        engineered_features=params.engineered_features,
        domain_fills=params.domain_fills,
        features=tuple(params.features),
    )
    return Pipeline([("engineer", engineer), ("columns", columns)])
