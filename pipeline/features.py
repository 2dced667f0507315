"""The fitted feature transform: engineering switches, then impute/standardize/one-hot.

One scikit-learn Pipeline, so the exact transform fitted in the preprocess stage is saved and can
be applied to any new frame later.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from pipeline.params import PreprocessParams

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
# Sums the classic Kaggle kernels add (a missing part counts as none), and whether a part exists.
TOTALS = {
    "TotalSF": {"TotalBsmtSF": 1.0, "1stFlrSF": 1.0, "2ndFlrSF": 1.0},
    "TotalBath": {"FullBath": 1.0, "HalfBath": 0.5, "BsmtFullBath": 1.0, "BsmtHalfBath": 0.5},
    "TotalPorchSF": {"OpenPorchSF": 1.0, "EnclosedPorch": 1.0, "3SsnPorch": 1.0,
                     "ScreenPorch": 1.0, "WoodDeckSF": 1.0},
}
AGES = {"HouseAge": "YearBuilt", "RemodAge": "YearRemodAdd"}  # years before the sale
PRESENCE = ("PoolArea", "2ndFlrSF", "GarageArea", "TotalBsmtSF", "Fireplaces")


class FeatureEngineer(TransformerMixin, BaseEstimator):
    """Recode columns by the preprocess switches; which columns to log1p is learned in fit."""

    def __init__(self, numeric_as_category=(), ordinal_quality=False, log1p_skewed=False,
                 skew_threshold=0.75, engineered_features=False):
        self.engineered_features = engineered_features
        self.numeric_as_category = numeric_as_category
        self.ordinal_quality = ordinal_quality
        self.log1p_skewed = log1p_skewed
        self.skew_threshold = skew_threshold

    def _recode(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        if self.engineered_features:
            frame = add_engineered_features(frame)
        for col in self.numeric_as_category:
            values = frame[col]
            frame[col] = values.map(lambda v: MISSING_LEVEL if pd.isna(v) else str(v)).astype("str")
        if self.ordinal_quality:
            for col, scale in ORDINAL_SCALES.items():
                frame[col] = frame[col].map(scale).fillna(0).astype("float64")
        return frame

    def fit(self, frame: pd.DataFrame, y=None):
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
        for col in self.log1p_columns_:
            recoded[col] = np.log1p(recoded[col].clip(lower=0))
        return recoded


def add_engineered_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Totals, ages at sale and has-a-part flags: whole-house sizes no single column holds."""
    added = {name: sum(frame[col].fillna(0) * weight for col, weight in parts.items())
             for name, parts in TOTALS.items()}
    added |= {name: (frame["YrSold"] - frame[col]).clip(lower=0) for name, col in AGES.items()}
    added |= {f"Has{col}": (frame[col].fillna(0) > 0).astype("float64") for col in PRESENCE}
    return frame.assign(**added)


def build_transform(params: PreprocessParams) -> Pipeline:
    """Numeric: mean-impute then standardize. Categorical: one-hot, missing as its own level."""
    numeric = make_pipeline(SimpleImputer(strategy="mean"), StandardScaler())
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
        engineered_features=params.engineered_features,
    )
    return Pipeline([("engineer", engineer), ("columns", columns)])
