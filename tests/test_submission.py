"""Submission checks: a bad prediction is a hard error naming the Ids, never a clip."""

import numpy as np
import pandas as pd
import pytest

from pipeline.common.errors import PipelineError
from pipeline.kaggle.submission import read_submission, validate_submission, write_submission
from pipeline.members.mlp.predict import clip_to_range

IDS = np.arange(1461, 1471)


def frame(ids=IDS, prices=None):
    prices = np.full(len(ids), 150000.0) if prices is None else prices
    return pd.DataFrame({"Id": ids, "SalePrice": prices})


def test_valid_submission_written_exactly(tmp_path):
    path = write_submission(tmp_path / "submission.csv", IDS, np.linspace(1e5, 2e5, 10))
    text = path.read_text()
    assert text.splitlines()[0] == "Id,SalePrice"
    assert text.splitlines()[1] == "1461,100000.0000"
    validate_submission(read_submission(path), IDS)


@pytest.mark.parametrize(("bad", "label"), [(np.nan, "NaN"), (-3.0, "negative"),
                                            (0.0, "zero"), (np.inf, "inf")])
def test_bad_price_rejected_with_ids_and_nothing_written(tmp_path, bad, label):
    prices = np.full(10, 150000.0)
    prices[[2, 5]] = bad
    with pytest.raises(PipelineError, match="finite and positive; bad for Ids 1463, 1466"):
        write_submission(tmp_path / "submission.csv", IDS, prices)
    assert list(tmp_path.iterdir()) == []


def test_missing_id_rejected():
    with pytest.raises(PipelineError, match="missing Ids 1470"):
        validate_submission(frame(IDS[:-1]), IDS)


def test_duplicate_id_rejected():
    ids = IDS.copy()
    ids[3] = ids[2]
    with pytest.raises(PipelineError, match="duplicate Ids 1463"):
        validate_submission(frame(ids), IDS)


def test_unknown_id_and_order():
    ids = IDS.copy()
    ids[0] = 99
    with pytest.raises(PipelineError, match="unknown Ids 99"):
        validate_submission(frame(ids), IDS)
    with pytest.raises(PipelineError, match="not in the order"):
        validate_submission(frame(IDS[::-1]), IDS)


def test_header_checked():
    with pytest.raises(PipelineError, match="header must be Id,SalePrice"):
        validate_submission(frame().rename(columns={"SalePrice": "Price"}), IDS)


def test_clip_to_train_range_counts_rows():
    train = np.array([[0.0, 1.0], [2.0, 3.0]])
    test = np.array([[1.0, 2.0], [50.0, 2.0], [-1.0, 9.0]])
    clipped, n = clip_to_range(test, train)
    assert n == 2
    np.testing.assert_array_equal(clipped, [[1, 2], [2, 2], [0, 3]])


def test_the_leaderboard_log_stores_every_text_cell_formula_safe_and_numbers_as_they_are(tmp_path):
    """`submit --experiment '=HYPERLINK(...)'` once wrote a live formula into leaderboard.csv."""
    from pipeline.kaggle.leaderboard import append_leaderboard, read_log

    log = tmp_path / "leaderboard.csv"
    row = {"utc_time": "2026-12-06T00:00:00Z", "commit": "abc", "experiment": "=HYPERLINK(\"x\")",
           "params_sha1": "ff", "cv_rmse": "0.118000", "cv_rmse_std": "0.020000",
           "cv_rmse_no_outliers": "-0.5", "public_score": "", "submission_ref": "+1"}
    append_leaderboard(log, row)
    logged = read_log(log)[0]
    assert logged["experiment"] == "'=HYPERLINK(\"x\")" and logged["submission_ref"] == "+1"
    assert logged["cv_rmse"] == "0.118000" and logged["cv_rmse_no_outliers"] == "-0.5"


def test_concurrent_appends_to_the_leaderboard_lose_no_row(tmp_path):
    """Each submit reads and rewrites the log; under the lock, eight at once keep all eight."""
    import multiprocessing

    log = tmp_path / "leaderboard.csv"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_one, args=(str(log), i)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    from pipeline.kaggle.leaderboard import read_log

    assert sorted(r["commit"] for r in read_log(log)) == sorted(f"c{i}" for i in range(8))


def _append_one(path: str, i: int) -> None:
    from pathlib import Path

    from pipeline.kaggle.leaderboard import append_leaderboard

    append_leaderboard(Path(path), {"utc_time": "t", "commit": f"c{i}", "experiment": "",
                                    "params_sha1": "", "cv_rmse": "0.1", "cv_rmse_std": "0.1",
                                    "cv_rmse_no_outliers": "0.1", "public_score": "",
                                    "submission_ref": str(i)})
