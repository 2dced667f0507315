"""bench/nested_cv.py: no outer-fold house reaches any inner choice, and the decision rule."""

import sys

import numpy as np
import pytest
from conftest import ROOT

from pipeline import compare

sys.path.insert(0, str(ROOT / "bench"))
import nested_cv


def test_the_outer_fold_plays_the_test_set_and_its_prices_are_nowhere_inside():
    train, _ = nested_cv.competition_frames()
    held = nested_cv.outer_folds(1000) == 2
    data = nested_cv.outer_data(1000, 2)
    outer_ids = set(train["Id"][held])
    assert set(data["id_test"]) == outer_ids
    assert not outer_ids & set(data["id_train"])  # preprocessing and the inner folds never see them
    assert len(data["y_train"]) == (~held).sum()
    assert np.array_equal(data["y_train"], np.log(train["SalePrice"][~held].to_numpy(float)))
    assert np.array_equal(data["outer_rows"], np.flatnonzero(held))


def test_no_inner_fit_sees_an_outer_fold_row(tmp_path, monkeypatch):
    """Every candidate's every fold model is fitted on rows of the outer training part only."""
    data = nested_cv.outer_data(1000, 2)
    fitted = []

    class Recorder:
        def fit(self, x, y):
            fitted.append(x)
            return self

        def predict(self, x):
            return np.full(len(x), 12.0)

    class Family:
        @staticmethod
        def make_model(settings):
            return Recorder()

    monkeypatch.setattr(nested_cv, "family", lambda name: Family)
    nested_cv.run_family("lasso_svr", 1000, 2, str(tmp_path), quick=True)
    inner = {row.tobytes() for row in data["x_train"].astype(np.float64)}
    outer = {row.tobytes() for row in data["x_test"].astype(np.float64)}
    assert len(fitted) == 3 * 5  # default, the quick grid's point, default with outliers; 5 folds
    for x in fitted:
        rows = {row.tobytes() for row in x}
        assert rows <= inner and not rows & outer
    saved = np.load(tmp_path / "s1000_f2_lasso_svr.npz")
    assert len(saved["outer__default"]) == len(data["x_test"])


@pytest.mark.parametrize(("change", "default", "expected"), [
    # per-fold scores on all rows, then without the outlier rows (lower is better)
    (([0.110, 0.121, 0.115, 0.117], [0.100, 0.101, 0.099, 0.102]),
     ([0.112, 0.122, 0.117, 0.120], [0.100, 0.101, 0.099, 0.102]), "better by 4.9 SE"),
    (([0.1119, 0.1221, 0.1172, 0.1199], [0.100, 0.101, 0.099, 0.102]),
     ([0.112, 0.122, 0.117, 0.120], [0.100, 0.101, 0.099, 0.102]), "tie"),  # under 2 SE
    (([0.110, 0.120, 0.115, 0.118], [0.104, 0.105, 0.103, 0.106]),
     ([0.112, 0.122, 0.117, 0.120], [0.100, 0.101, 0.099, 0.102]), "worse"),  # loses on the rest
    (([0.114, 0.124, 0.119, 0.122], [0.100, 0.101, 0.099, 0.102]),
     ([0.112, 0.122, 0.117, 0.120], [0.100, 0.101, 0.099, 0.102]), "worse"),
])
def test_the_decision_rule(change, default, expected):
    assert compare.verdict(change[0], default[0], change[1], default[1]).startswith(expected)


def test_the_same_gain_on_every_fold_is_better():
    assert compare.verdict([0.25, 0.5], [0.5, 0.75], [0.1, 0.1], [0.1, 0.1]) == "better on every fold"


def test_a_tie_is_under_two_paired_standard_errors():
    mean, se = compare.paired([0.11, 0.13, 0.12], [0.10, 0.12, 0.13])
    assert mean == pytest.approx(0.0033333, abs=1e-6)
    assert se == pytest.approx(np.std([0.01, 0.01, -0.01], ddof=1) / np.sqrt(3))
