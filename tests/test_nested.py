"""bench/nested_cv.py: no outer-fold house reaches any inner choice, and the decision rule."""

import sys

import numpy as np
import pytest
from conftest import ROOT
from sklearn.base import BaseEstimator

from pipeline.scoring import compare

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

    class Recorder(BaseEstimator):
        def fit(self, x, y):
            fitted.append(x)
            return self

        def predict(self, x):
            return np.full(len(x), 12.0)

    class Family:
        @staticmethod
        def make_model(settings, train):
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
     ([0.112, 0.122, 0.117, 0.120], [0.100, 0.101, 0.099, 0.102]), "mixed"),  # loses on the rest
    (([0.114, 0.124, 0.119, 0.122], [0.100, 0.101, 0.099, 0.102]),
     ([0.112, 0.122, 0.117, 0.120], [0.100, 0.101, 0.099, 0.102]), "worse"),
])
def test_the_decision_rule(change, default, expected):
    assert compare.verdict(change[0], default[0], change[1], default[1]).startswith(expected)


def test_the_same_gain_on_every_fold_is_better():
    assert compare.verdict([0.25, 0.5], [0.5, 0.75], [0.1, 0.1], [0.1, 0.1]) == (
        "better on all rows in every sample")


def test_a_gain_on_the_normal_houses_alone_wins_when_all_rows_do_not_lose():
    """The rule is the same on both metrics: a gain beyond two SE on one, no loss on the other."""
    assert compare.verdict([0.12, 0.13, 0.12], [0.12, 0.13, 0.12],
                           [0.100, 0.102, 0.101], [0.105, 0.106, 0.107]).startswith(
        "better by") and "normal houses" in compare.verdict(
        [0.12, 0.13, 0.12], [0.12, 0.13, 0.12], [0.100, 0.102, 0.101], [0.105, 0.106, 0.107])


def test_nan_scores_get_no_verdict():
    assert compare.verdict([np.nan, 0.1], [0.1, 0.1], [0.1, 0.1], [0.1, 0.1]).startswith("no verdict")


def _houses(n=1460, seed=3):
    rng = np.random.default_rng(seed)
    err = rng.normal(0, 0.11, n) ** 2
    abnormal = np.zeros(n, dtype=bool)
    abnormal[[523, 1298]] = True
    err[abnormal] = 1.6 ** 2  # the two partial sales: a quarter of the squared error
    return rng, err, abnormal


def test_house_level_rule_pairs_houses_and_is_deterministic():
    rng, default, abnormal = _houses()
    same = compare.houses(default, default, abnormal)
    assert same == {"all rows": (0.0, 0.0), "normal houses": (0.0, 0.0)}
    change = default * rng.uniform(0.7, 1.1, len(default))  # ~10% lower squared error
    first = compare.houses(change, default, abnormal)
    assert first == compare.houses(change, default, abnormal)  # a fixed bootstrap seed
    d, se = first["normal houses"]
    assert d == pytest.approx(np.sqrt(change[~abnormal].mean()) - np.sqrt(default[~abnormal].mean()))
    assert 0 < se < abs(d) / 2
    assert compare.house_verdict(change, default, abnormal).startswith("better by")


def test_two_houses_alone_cannot_decide_the_all_rows_metric():
    """A recipe that only prices the two partial sales better is a tie: in a bootstrap over
    houses they are often absent, so their share of the error has a wide SE."""
    _, default, abnormal = _houses()
    change = default.copy()
    change[abnormal] = 0.0  # both priced exactly
    d, se = compare.houses(change, default, abnormal)["all rows"]
    assert d < -0.01 and abs(d) < 2 * se
    assert compare.house_verdict(change, default, abnormal) == "tie"


def test_house_errors_average_the_reshuffles():
    y = np.array([1.0, 2.0, 3.0])
    pred = np.array([[1.1, 2.0, np.nan], [0.9, 2.2, 3.0]])
    assert np.allclose(compare.house_errors(pred, y), [0.01, 0.02, 0.0])


def test_a_tie_is_under_two_paired_standard_errors():
    mean, se = compare.paired([0.11, 0.13, 0.12], [0.10, 0.12, 0.13])
    assert mean == pytest.approx(0.0033333, abs=1e-6)
    assert se == pytest.approx(np.std([0.01, 0.01, -0.01], ddof=1) / np.sqrt(3))
