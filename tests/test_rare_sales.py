"""ensemble.rare_sales: a region fixed on features alone (huge houses sold as partial sales) is
priced from the training houses in it; no house outside it moves, bit for bit."""

import numpy as np
import pandas as pd
import pytest

from pipeline.common.errors import PipelineError
from pipeline.config.params import EnsembleParams
from pipeline.scoring.rare_sales import in_region, price_held_out, price_test, region_of

ENS = EnsembleParams(average="log", rare_sales="comparable")


def test_the_region_reads_features_only():
    frame = pd.DataFrame({"GrLivArea": [5000, 5000, 3000, np.nan],
                          "SaleCondition": ["Partial", "Normal", "Partial", "Partial"],
                          "SalePrice": [1, 2, 3, 4]})
    assert in_region(frame, ENS).tolist() == [True, False, False, False]
    assert in_region(frame.drop(columns="SalePrice"), ENS).tolist() == [True, False, False, False]


def test_a_held_out_region_house_is_priced_by_the_other_folds_ones_and_nothing_else_moves():
    rng = np.random.default_rng(0)
    n = 40
    target, oof, test = rng.normal(12, 0.4, n), rng.normal(12, 0.4, n), rng.normal(12, 0.4, 9)
    fold = np.arange(n) % 4
    region = np.zeros(n, dtype=bool)
    region[[1, 2, 5]] = True  # folds 1, 2, 1
    region_test = np.zeros(9, dtype=bool)
    region_test[3] = True
    new_oof = price_held_out(oof, target, region, fold)
    new_test = price_test(test, target, region, region_test)
    assert new_oof[1] == target[2] and new_oof[5] == target[2]  # fold 1's: fold 2's house only
    assert new_oof[2] == pytest.approx(target[[1, 5]].mean())
    assert new_test[3] == pytest.approx(target[region].mean())
    np.testing.assert_array_equal(new_oof[~region], oof[~region])
    np.testing.assert_array_equal(new_test[~region_test], test[~region_test])
    # a region house with no comparable house in the other folds, or no training house in the
    # region at all: the blend's price stays
    alone = np.zeros(n, dtype=bool)
    alone[3] = True
    np.testing.assert_array_equal(price_held_out(oof, target, alone, fold), oof)
    np.testing.assert_array_equal(price_test(test, target, ~np.ones(n, bool), region_test), test)
    assert price_test(test, target, alone, region_test)[3] == target[3]


def test_the_raw_file_must_hold_the_region_columns_and_houses(tmp_path):
    csv = tmp_path / "train.csv"
    pd.DataFrame({"Id": [1, 2], "GrLivArea": [5000, 10]}).to_csv(csv, index=False)
    with pytest.raises(PipelineError, match="no column SaleCondition"):
        region_of(np.array([1, 2]), csv, ENS)
    pd.DataFrame({"Id": [1, 2], "GrLivArea": [5000, 10], "SaleCondition": ["Partial"] * 2}
                 ).to_csv(csv, index=False)
    assert region_of(np.array([2, 1]), csv, ENS).tolist() == [False, True]
    with pytest.raises(PipelineError, match=r"lacks the houses \[3\]"):
        region_of(np.array([1, 3]), csv, ENS)


def test_a_bad_region_setting_is_one_line():
    with pytest.raises(PipelineError, match="rare_sale_conditions.*Partial"):
        EnsembleParams(average="log", rare_sale_conditions=("Parital",))
    with pytest.raises(PipelineError, match="ensemble.rare_sales must be one of comparable, none"):
        EnsembleParams(average="log", rare_sales="gate")
