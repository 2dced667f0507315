"""Features as data (preprocess.features): named expressions over the houses' numeric columns,
evaluated by an interpreter that runs no other code, checked before any output is touched."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, repo_params

from pipeline.common.errors import PipelineError
from pipeline.dataset.expressions import evaluate, parse
from pipeline.dataset.matrices import preprocess

KNOWN = {"LotArea", "TotRmsAbvGrd", "GrLivArea", "FullBath"}


@pytest.mark.parametrize(("features", "message"), [
    ({"X": "LotArea / NoSuch"}, "reads NoSuch, not a numeric column"),
    ({"X": "__import__('os').system('true')"}, "calls"),
    ({"X": "LotArea.real"}, "attribute syntax"),
    ({"X": "[LotArea][0]"}, "syntax; only arithmetic"),
    ({"X": "'text'"}, "only numbers and column names"),
    ({"X": "LotArea ** 100"}, r"\*\* takes a number within"),
    ({"X": "LotArea if GrLivArea else 0"}, "syntax; only arithmetic"),
    ({"X": "LotArea and GrLivArea"}, "syntax; only arithmetic"),
    ({"LotArea": "GrLivArea * 2"}, "already exists"),
    ({"X": "LotArea +"}, "is not an expression"),
    ({"X": "+".join(["LotArea"] * 80)}, "more than 60 parts|longer than 300"),
    ({"1x": "LotArea"}, "is not a column name"),
    ({"Neighborhood": "LotArea"}, "already exists"),  # a categorical column: once replaced
    ({"SalePrice": "LotArea"}, "already exists"),
    ({"Id": "LotArea"}, "already exists"),
    ({"TotalSF": "LotArea"}, "already exists"),  # engineered, whether or not switched on
    ({"X": "log1p + 1"}, "uses the function log1p without calling it; write log1p"),
    ({"X": "max"}, r"uses the function max without calling it; write max\(a, b\)"),
    ({f"F{i}": "LotArea" for i in range(101)}, "has 101 features, more than the 100"),
])
def test_a_bad_expression_is_one_clear_line(features, message):
    with pytest.raises(PipelineError, match=message):
        parse(features, KNOWN)


def test_a_negative_power_within_the_limit_is_a_power():
    """`LotArea ** -1` was refused as "raises to -1; ** takes a number within +-4"."""
    pairs = parse({"Inv": "LotArea ** -1", "Sq": "LotArea ** +2"}, KNOWN)
    frame = pd.DataFrame({"LotArea": [4.0, 0.5]})
    assert evaluate(*pairs[0], frame).tolist() == [0.25, 2.0]
    with pytest.raises(PipelineError, match=r"raises to -5; \*\* takes a number within \+-4"):
        parse({"X": "LotArea ** -5"}, KNOWN)


def test_features_read_earlier_features_and_evaluate_as_numpy():
    pairs = parse({"PerRoom": "LotArea / max(TotRmsAbvGrd, 1)", "Big": "PerRoom > 1000",
                   "Root": "sqrt(abs(-GrLivArea)) + log1p(FullBath) ** 2"}, KNOWN)
    frame = pd.DataFrame({"LotArea": [8000.0, 500.0, np.nan], "TotRmsAbvGrd": [4.0, 0.0, 5.0],
                          "GrLivArea": [1600.0, 900.0, 1000.0], "FullBath": [1.0, 2.0, 0.0]})
    for name, text in pairs:
        frame[name] = evaluate(name, text, frame)
    assert frame["PerRoom"].tolist()[:2] == [2000.0, 500.0] and np.isnan(frame["PerRoom"][2])
    assert frame["Big"].tolist()[:2] == [1.0, 0.0] and np.isnan(frame["Big"][2])  # blank stays
    assert frame["Root"][0] == pytest.approx(40 + np.log1p(1) ** 2)


def test_a_division_by_zero_names_the_houses():
    frame = pd.DataFrame({"LotArea": [1.0, 2.0], "FullBath": [1.0, 0.0]})
    with pytest.raises(PipelineError, match=r"infinite or undefined for 1 house\(s\) \(Id \[7\]\)"):
        evaluate("X", "LotArea / FullBath", frame, ids=[6, 7])


def test_a_feature_is_a_column_of_every_encoding(ames_sample):
    train, test = ames_sample
    params = repo_params({"features": {"LotPerRoom": "LotArea / max(TotRmsAbvGrd, 1)"}})
    result = preprocess(train, test, params.preprocess)
    assert all(any("LotPerRoom" in n for n in names) for names in result.view_names)
    plain = preprocess(train, test, repo_params().preprocess)
    assert len(result.feature_names) == len(plain.feature_names) + 1


@pytest.mark.parametrize(("expression", "message"), [
    ("LotArea / (FullBath - FullBath)", "infinite or undefined for"),
    ("LotArea * 1e300", "not finite once imputed and scaled"),  # finite raw, NaN once scaled
    ("LotArea * Neighborhood", "reads Neighborhood, not a numeric column"),
])
def test_the_parameter_check_refuses_a_bad_feature_before_any_stage_runs(tmp_path, expression,
                                                                         message):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["preprocess"]["features"] = {"X": expression}
    (tmp_path / "data").mkdir()
    (tmp_path / "data/bundled").symlink_to(ROOT / "data/bundled")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    stamp = tmp_path / "params.valid"
    proc = subprocess.run([sys.executable, "-m", "pipeline.stages.check_params", "--params",
                           str(tmp_path / "params.yaml"), "--stamp", str(stamp)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1 and not stamp.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "preprocess.features.X" in lines[0]


def test_preprocess_itself_refuses_a_feature_that_scales_to_nan():
    """The stage's own check (a params file edited past the parameter check): nothing written."""
    from conftest import ames_slice

    train, test = ames_slice()
    raw = dict(repo_params().raw)
    raw["preprocess"] = {**raw["preprocess"], "features": {"X": "LotArea * 1e300"}}
    from pipeline.config.params import parse_params

    with pytest.raises(PipelineError, match=r"not finite once imputed and scaled .*num__X"):
        preprocess(train, test, parse_params(raw).preprocess)


def test_a_hundred_features_build_one_frame_at_once():
    """At the stated limit (expressions.MAX_FEATURES) the features join the frame at once, not
    by a column insert each (pandas' fragmented-frame warnings and the hang at 10,000)."""
    import warnings

    from conftest import ames_slice

    train, test = ames_slice()
    raw = dict(repo_params().raw)
    raw["preprocess"] = {**raw["preprocess"], "mlp_views": [],
                         "features": {f"F{i}": f"LotArea * {i + 1}" for i in range(100)}}
    from pipeline.config.params import parse_params

    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        result = preprocess(train, test, parse_params(raw).preprocess)
    import re

    assert sum(bool(re.fullmatch(r"num__F\d+", n)) for n in result.feature_names) == 100
