"""Preprocess: imputation, scaling, one-hot with missing/unseen levels, and the input schema."""

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.params import PreprocessParams
from pipeline.preprocess import preprocess

BOOK = PreprocessParams(fit_on="train", numeric_as_category=[], ordinal_quality=False,
                        log1p_skewed=False, skew_threshold=0.75, engineered_features=False,
                        outlier_min_gr_liv_area=4000, outlier_max_sale_price=300000)


def column(result, name):
    return result["x_train"][:, result["feature_names"].index(name)]


def test_numeric_mean_imputed_and_standardized(ames_sample):
    train, test = ames_sample
    result = preprocess(train, test, BOOK)
    lot = column(result, "num__LotFrontage")
    assert train["LotFrontage"].isna().any()
    assert not np.isnan(result["x_train"]).any() and not np.isnan(result["x_test"]).any()
    assert abs(lot.mean()) < 1e-5 and abs(lot.std() - 1) < 1e-3
    # A missing value becomes the mean, i.e. 0 after standardisation.
    assert np.allclose(lot[train["LotFrontage"].isna().to_numpy()], 0, atol=1e-6)


def test_missing_category_is_its_own_level_and_unseen_level_is_ignored(ames_sample):
    train, test = ames_sample
    test = test.copy()
    test.loc[0, "Neighborhood"] = "Atlantis"  # never seen in train
    result = preprocess(train, test, BOOK)
    names = result["feature_names"]
    assert "cat__Alley_missing" in names
    hood = [i for i, n in enumerate(names) if n.startswith("cat__Neighborhood_")]
    assert result["x_test"][0, hood].sum() == 0  # unseen: all zeros, no error
    assert np.allclose(result["x_train"][:, hood].sum(axis=1), 1)


def test_target_is_log_price_and_ids_kept(ames_sample):
    train, test = ames_sample
    result = preprocess(train, test, BOOK)
    np.testing.assert_allclose(result["y_train"], np.log(train["SalePrice"]))
    np.testing.assert_array_equal(result["id_test"], test["Id"])
    assert result["x_train"].shape[1] == result["x_test"].shape[1] == len(result["feature_names"])


def test_fit_on_train_plus_test_uses_test_statistics(ames_sample):
    train, test = ames_sample
    both = PreprocessParams(**{**BOOK.__dict__, "fit_on": "train+test"})
    on_train = column(preprocess(train, test, BOOK), "num__LotArea")
    on_both = column(preprocess(train, test, both), "num__LotArea")
    assert not np.allclose(on_train, on_both)


def test_engineering_switches(ames_sample):
    train, test = ames_sample
    params = PreprocessParams(**{**BOOK.__dict__, "numeric_as_category": ["MSSubClass"],
                                 "ordinal_quality": True, "log1p_skewed": True})
    result = preprocess(train, test, params)
    names = result["feature_names"]
    assert "cat__MSSubClass_60" in names and "num__MSSubClass" not in names
    assert "num__ExterQual" in names and not any(n.startswith("cat__ExterQual") for n in names)
    skewed = result["transform"].named_steps["engineer"].log1p_columns_
    assert "LotArea" in skewed


def test_engineered_features_on_train_and_test(ames_sample):
    train, test = ames_sample
    test = test.copy()
    test.loc[0, ["TotalBsmtSF", "BsmtFullBath", "BsmtHalfBath"]] = np.nan  # no basement at all
    engineered = PreprocessParams(**{**BOOK.__dict__, "engineered_features": True})
    engineer = preprocess(train, test, engineered)["transform"].named_steps["engineer"]
    frame = engineer.transform(test)
    row = test.iloc[0]
    assert frame.loc[0, "TotalSF"] == row["1stFlrSF"] + row["2ndFlrSF"]  # missing counts as none
    assert frame.loc[0, "HasTotalBsmtSF"] == 0
    assert frame.loc[0, "TotalBath"] == row["FullBath"] + 0.5 * row["HalfBath"]
    one = train.iloc[1]
    expected = {"TotalSF": one["TotalBsmtSF"] + one["1stFlrSF"] + one["2ndFlrSF"],
                "HouseAge": one["YrSold"] - one["YearBuilt"],
                "RemodAge": one["YrSold"] - one["YearRemodAdd"],
                "Has2ndFlrSF": float(one["2ndFlrSF"] > 0)}
    assert engineer.transform(train).loc[1, list(expected)].to_dict() == expected
    names = preprocess(train, test, engineered)["feature_names"]
    assert {"num__TotalSF", "num__TotalPorchSF", "num__HasPoolArea"} <= set(names)
    assert "num__TotalSF" not in preprocess(train, test, BOOK)["feature_names"]


def test_outliers_flagged(ames_sample):
    train, test = ames_sample
    train = train.copy()
    train.loc[3, ["GrLivArea", "SalePrice"]] = [5000, 150000]
    assert preprocess(train, test, BOOK)["outlier"].tolist() == [i == 3 for i in range(len(train))]


def test_missing_column_is_a_clear_error(ames_sample):
    train, test = ames_sample
    with pytest.raises(PipelineError, match=r"test.csv: missing expected column\(s\) GrLivArea"):
        preprocess(train, test.drop(columns=["GrLivArea"]), BOOK)


@pytest.mark.parametrize("bad", [np.nan, -5, 0, "cheap"])
def test_bad_sale_price_is_a_clear_error(ames_sample, bad):
    train, test = ames_sample
    train = train.copy()
    train["SalePrice"] = train["SalePrice"].astype(object)
    train.loc[7, "SalePrice"] = bad
    with pytest.raises(PipelineError, match=rf"SalePrice must be a positive number.*Id \[{train.Id[7]}\]"):
        preprocess(train, test, BOOK)


def test_duplicate_ids_rejected(ames_sample):
    train, test = ames_sample
    test = pd.concat([test, test.iloc[:1]], ignore_index=True)
    with pytest.raises(PipelineError, match="duplicate Id"):
        preprocess(train, test, BOOK)
