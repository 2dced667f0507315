"""Preprocess: imputation, scaling, one-hot with missing/unseen levels, and the input schema."""

import numpy as np
import pandas as pd
import pytest

from pipeline.common.errors import PipelineError
from pipeline.config.preprocess import PreprocessParams
from pipeline.dataset.features import FeatureEngineer, PiecewiseLinear, RobustSmoothClip
from pipeline.dataset.matrices import preprocess
from pipeline.dataset.schema import FEATURES
from pipeline.members.mlp.importance import column_groups

BOOK = PreprocessParams(fit_on="train", numeric_as_category=[], ordinal_quality=False,
                        log1p_skewed=False, skew_threshold=0.75, skew_lambda=0.0,
                        engineered_features=False, domain_fills=False, scaler="standard",
                        piecewise_linear="none",
                        piecewise_bins=4, outlier_min_gr_liv_area=4000,
                        outlier_max_sale_price=300000)


def column(result, name):
    return result.x_train[:, result.feature_names.index(name)]


def test_numeric_mean_imputed_and_standardized(ames_sample):
    train, test = ames_sample
    result = preprocess(train, test, BOOK)
    lot = column(result, "num__LotFrontage")
    assert train["LotFrontage"].isna().any()
    assert not np.isnan(result.x_train).any() and not np.isnan(result.x_test).any()
    assert abs(lot.mean()) < 1e-5 and abs(lot.std() - 1) < 1e-3
    # A missing value becomes the mean, i.e. 0 after standardisation.
    assert np.allclose(lot[train["LotFrontage"].isna().to_numpy()], 0, atol=1e-6)


def test_missing_category_is_its_own_level_and_unseen_level_is_ignored(ames_sample):
    train, test = ames_sample
    test = test.copy()
    test.loc[0, "Neighborhood"] = "Atlantis"  # never seen in train
    result = preprocess(train, test, BOOK)
    names = result.feature_names
    assert "cat__Alley_missing" in names
    hood = [i for i, n in enumerate(names) if n.startswith("cat__Neighborhood_")]
    assert result.x_test[0, hood].sum() == 0  # unseen: all zeros, no error
    assert np.allclose(result.x_train[:, hood].sum(axis=1), 1)


def test_target_is_log_price_and_ids_kept(ames_sample):
    train, test = ames_sample
    result = preprocess(train, test, BOOK)
    np.testing.assert_allclose(result.y_train, np.log(train["SalePrice"]))
    np.testing.assert_array_equal(result.id_test, test["Id"])
    assert result.x_train.shape[1] == result.x_test.shape[1] == len(result.feature_names)


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
    names = result.feature_names
    assert "cat__MSSubClass_60" in names and "num__MSSubClass" not in names
    assert "num__ExterQual" in names and not any(n.startswith("cat__ExterQual") for n in names)
    skewed = result.transform.named_steps["engineer"].log1p_columns_
    assert "LotArea" in skewed


def test_engineered_features_on_train_and_test(ames_sample):
    train, test = ames_sample
    test = test.copy()
    test.loc[0, ["TotalBsmtSF", "BsmtFullBath", "BsmtHalfBath"]] = np.nan  # no basement at all
    engineered = PreprocessParams(**{**BOOK.__dict__, "engineered_features": True})
    engineer = preprocess(train, test, engineered).transform.named_steps["engineer"]
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
    names = preprocess(train, test, engineered).feature_names
    assert {"num__TotalSF", "num__TotalPorchSF", "num__HasPoolArea"} <= set(names)
    assert "num__TotalSF" not in preprocess(train, test, BOOK).feature_names


def test_outliers_flagged(ames_sample):
    train, test = ames_sample
    train = train.copy()
    train.loc[3, ["GrLivArea", "SalePrice"]] = [5000, 150000]
    assert preprocess(train, test, BOOK).outlier.tolist() == [i == 3 for i in range(len(train))]


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


def with_(**changes) -> PreprocessParams:
    return PreprocessParams(**{**BOOK.__dict__, **changes})


def test_piecewise_linear_kinks_keep_the_column_and_add_slope_changes():
    """Each column stays and gains max(0, x - edge) at its inner quantile edges; a column with
    too few values for bins stays as it is."""
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=200), rng.integers(0, 2, 200), np.full(200, 3.0)])
    kinks = PiecewiseLinear(4).fit(x)
    k = kinks.transform(x)
    assert k.shape == (200, 4 + 1 + 1)
    assert list(kinks.get_feature_names_out(["a", "b", "c"])) == [
        "a", "a_ple1", "a_ple2", "a_ple3", "b", "c"]
    np.testing.assert_array_equal(k[:, 0], x[:, 0])
    np.testing.assert_array_equal(k[:, 4:], x[:, 1:])  # a flag and a constant: unchanged
    inner = np.quantile(x[:, 0], [0.25, 0.5, 0.75])
    np.testing.assert_allclose(k[:, 1:4], np.maximum(x[:, :1] - inner, 0))


def test_piecewise_linear_extrapolates_outside_the_training_range():
    """Rows beyond the fit rows' extremes continue the end bins' lines, never a plateau."""
    x = np.linspace(0, 1, 101)[:, None]
    far = np.array([[-1.0], [2.0]])
    k = PiecewiseLinear(4).fit(x).transform(far)
    np.testing.assert_allclose(k[:, 0], far[:, 0])
    np.testing.assert_allclose(k[1, 1:], [1.75, 1.5, 1.25])


def test_piecewise_linear_in_the_pipeline(ames_sample):
    train, test = ames_sample
    plain = preprocess(train, test, BOOK)
    result = preprocess(train, test, with_(piecewise_linear="kinks", piecewise_bins=3))
    names = result.feature_names
    assert "num__LotArea_ple1" in names and "num__LotArea_ple3" not in names
    np.testing.assert_array_equal(column(result, "num__LotArea"), column(plain, "num__LotArea"))
    assert not np.isnan(result.x_test).any()
    assert set(column_groups(names)) == set(column_groups(plain.feature_names))


def test_domain_fills(ames_sample):
    """LotFrontage from the neighbourhood's median on the fit rows (the overall median for a
    neighbourhood never seen), GarageYrBlt from YearBuilt, an absent part's size 0."""
    train, test = ames_sample
    test = test.copy()
    test.loc[0, ["LotFrontage", "Neighborhood"]] = [np.nan, "Atlantis"]
    test.loc[1, "MasVnrArea"] = np.nan
    engineer = FeatureEngineer(domain_fills=True).fit(train[list(FEATURES)])
    filled = engineer.transform(test[list(FEATURES)])
    assert filled.loc[0, "LotFrontage"] == train["LotFrontage"].median()
    blank = train["LotFrontage"].isna()
    on_train = engineer.transform(train[list(FEATURES)])
    hood_median = train.groupby("Neighborhood")["LotFrontage"].median()
    expected = train.loc[blank, "Neighborhood"].map(hood_median).fillna(
        train["LotFrontage"].median())
    np.testing.assert_allclose(on_train.loc[blank, "LotFrontage"], expected)
    no_garage = train["GarageYrBlt"].isna()
    assert no_garage.any()
    np.testing.assert_array_equal(on_train.loc[no_garage, "GarageYrBlt"],
                                  train.loc[no_garage, "YearBuilt"])
    assert filled.loc[1, "MasVnrArea"] == 0
    result = preprocess(train, test, with_(domain_fills=True))
    assert not np.isnan(result.x_test).any()
    lot = column(result, "num__LotFrontage")[blank.to_numpy()]
    assert len(np.unique(lot)) > 1  # neighbourhood medians, not one mean


def test_skew_lambda_zero_is_log1p_and_positive_is_box_cox(ames_sample):
    train, _ = ames_sample
    log1p = FeatureEngineer(log1p_skewed=True).fit(train[list(FEATURES)])
    boxcox = FeatureEngineer(log1p_skewed=True, skew_lambda=0.15).fit(train[list(FEATURES)])
    assert "LotArea" in log1p.log1p_columns_
    raw = train["LotArea"].to_numpy(dtype=float)
    np.testing.assert_array_equal(log1p.transform(train[list(FEATURES)])["LotArea"], np.log1p(raw))
    np.testing.assert_allclose(boxcox.transform(train[list(FEATURES)])["LotArea"],
                               ((1 + raw) ** 0.15 - 1) / 0.15)


def test_robust_smooth_clip_scaling():
    """Median/IQR scaling, half the range for a column with no spread, a constant column kept
    finite; the smooth clip bounds an extreme test value below 3 and is odd and monotone."""
    x = np.column_stack([np.arange(101.0), np.r_[np.zeros(99), 1.0, 2.0], np.full(101, 7.0)])
    clip = RobustSmoothClip().fit(x)
    np.testing.assert_allclose(clip.median_, [50, 0, 7])
    np.testing.assert_allclose(clip.scale_, [50, 1, 1])
    z = clip.transform(np.array([[50.0, 0, 7], [100.0, 2, 7], [1e9, -1e9, 7]]))
    assert np.all(z[0] == 0) and np.all(z[:, 2] == 0)
    assert z[1, 0] == pytest.approx(1 / np.sqrt(1 + 1 / 9))
    assert 2.99 < z[2, 0] <= 3 and -3 <= z[2, 1] < -2.99


def test_robust_clip_in_the_pipeline(ames_sample):
    train, test = ames_sample
    test = test.copy()
    test.loc[0, "LotArea"] = 10 ** 9  # far outside the training range
    result = preprocess(train, test, with_(scaler="robust_clip"))
    lot = result.feature_names.index("num__LotArea")
    assert np.abs(result.x_train[:, lot]).max() < 3 and 2.9 < result.x_test[0, lot] <= 3
