"""The competition's data contract: the columns every input file must have."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from pipeline.common.errors import PipelineError, listing

if TYPE_CHECKING:  # pandas is imported where a frame is checked: the params check needs names only
    import pandas as pd

ID = "Id"
TARGET = "SalePrice"

# The 79 explanatory variables of the Ames data, in the competition's order.
FEATURES = (
    "MSSubClass", "MSZoning", "LotFrontage", "LotArea", "Street", "Alley", "LotShape",
    "LandContour", "Utilities", "LotConfig", "LandSlope", "Neighborhood", "Condition1",
    "Condition2", "BldgType", "HouseStyle", "OverallQual", "OverallCond", "YearBuilt",
    "YearRemodAdd", "RoofStyle", "RoofMatl", "Exterior1st", "Exterior2nd", "MasVnrType",
    "MasVnrArea", "ExterQual", "ExterCond", "Foundation", "BsmtQual", "BsmtCond", "BsmtExposure",
    "BsmtFinType1", "BsmtFinSF1", "BsmtFinType2", "BsmtFinSF2", "BsmtUnfSF", "TotalBsmtSF",
    "Heating", "HeatingQC", "CentralAir", "Electrical", "1stFlrSF", "2ndFlrSF", "LowQualFinSF",
    "GrLivArea", "BsmtFullBath", "BsmtHalfBath", "FullBath", "HalfBath", "BedroomAbvGr",
    "KitchenAbvGr", "KitchenQual", "TotRmsAbvGrd", "Functional", "Fireplaces", "FireplaceQu",
    "GarageType", "GarageYrBlt", "GarageFinish", "GarageCars", "GarageArea", "GarageQual",
    "GarageCond", "PavedDrive", "WoodDeckSF", "OpenPorchSF", "EnclosedPorch", "3SsnPorch",
    "ScreenPorch", "PoolArea", "PoolQC", "Fence", "MiscFeature", "MiscVal", "MoSold", "YrSold",
    "SaleType", "SaleCondition",
)

# The features that are numbers (counts, areas, years, codes); every other feature is a category.
NUMERIC = (
    "MSSubClass", "LotFrontage", "LotArea", "OverallQual", "OverallCond", "YearBuilt",
    "YearRemodAdd", "MasVnrArea", "BsmtFinSF1", "BsmtFinSF2", "BsmtUnfSF", "TotalBsmtSF",
    "1stFlrSF", "2ndFlrSF", "LowQualFinSF", "GrLivArea", "BsmtFullBath", "BsmtHalfBath",
    "FullBath", "HalfBath", "BedroomAbvGr", "KitchenAbvGr", "TotRmsAbvGrd", "Fireplaces",
    "GarageYrBlt", "GarageCars", "GarageArea", "WoodDeckSF", "OpenPorchSF", "EnclosedPorch",
    "3SsnPorch", "ScreenPorch", "PoolArea", "MiscVal", "MoSold", "YrSold",
)

# Sums the classic Kaggle kernels add (a missing part counts as none), and whether a part exists.
TOTALS = {
    "TotalSF": {"TotalBsmtSF": 1.0, "1stFlrSF": 1.0, "2ndFlrSF": 1.0},
    "TotalBath": {"FullBath": 1.0, "HalfBath": 0.5, "BsmtFullBath": 1.0, "BsmtHalfBath": 0.5},
    "TotalPorchSF": {"OpenPorchSF": 1.0, "EnclosedPorch": 1.0, "3SsnPorch": 1.0,
                     "ScreenPorch": 1.0, "WoodDeckSF": 1.0},
}
AGES = {"HouseAge": "YearBuilt", "RemodAge": "YearRemodAdd"}  # years before the sale
PRESENCE = ("PoolArea", "2ndFlrSF", "GarageArea", "TotalBsmtSF", "Fireplaces")
ENGINEERED = (*TOTALS, *AGES, *(f"Has{col}" for col in PRESENCE))
# Names a user's feature (preprocess.features) may not take: every column a house already has.
RESERVED = frozenset({ID, TARGET, *FEATURES, *ENGINEERED})


def pin_kinds(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Each competition column read as its kind: a stray word in a numeric column is an error
    (not a silent switch to one-hot), and a category column with no values stays a category.

    Warns (one line on stderr) about a numeric column with no value at all.
    """
    import pandas as pd

    frame = frame.copy()
    for col in NUMERIC:
        values = frame[col]
        if not pd.api.types.is_numeric_dtype(values):
            as_number = pd.to_numeric(values, errors="coerce")
            bad = values.notna() & as_number.isna()
            if bad.any():
                raise PipelineError(
                    f"{name}: column {col} must be numeric; non-numeric value(s) "
                    f"{listing((repr(v) for v in values[bad].unique()), 5)} for Id "
                    f"{listing(frame.loc[bad, ID], 5)}; fix or blank those cells")
            frame[col] = as_number
        if frame[col].isna().all():
            print(f"warning: {name}: column {col} has no values at all; every house gets the "
                  "training mean", file=sys.stderr)
    for col in FEATURES:
        if col not in NUMERIC and pd.api.types.is_numeric_dtype(frame[col]):
            frame[col] = frame[col].map(lambda v: v if pd.isna(v) else str(v)).astype("str")
    return frame


def check_ids(frame: pd.DataFrame, name: str) -> None:
    """Ids must be present, integer and unique: the submission is keyed by them."""
    import pandas as pd

    ids = frame[ID]
    if not pd.api.types.is_integer_dtype(ids):
        raise PipelineError(f"{name}: column Id must hold integers; is this the competition file?")
    dup = ids[ids.duplicated()].unique().tolist()
    if dup:
        raise PipelineError(f"{name}: duplicate Id values {dup[:10]}; each house must appear once")


def check_columns(frame: pd.DataFrame, name: str, *, with_target: bool) -> None:
    """Fail with the missing column names rather than a KeyError deep inside a transformer."""
    expected = (ID, *FEATURES, *((TARGET,) if with_target else ()))
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise PipelineError(f"{name}: missing expected column(s) {shown} ({len(missing)} in all); "
                            "is this the competition's file?")
    check_ids(frame, name)


def check_target(frame: pd.DataFrame, name: str) -> None:
    """SalePrice must be a finite, positive number on every row: the model learns its log."""
    import pandas as pd

    price = pd.to_numeric(frame[TARGET], errors="coerce")
    bad = frame.loc[~(price > 0) | price.isna() | ~price.abs().lt(float("inf")), ID].tolist()
    if bad:
        raise PipelineError(f"{name}: SalePrice must be a positive number; bad rows with Id "
                            f"{bad[:10]}{' ...' if len(bad) > 10 else ''}")
