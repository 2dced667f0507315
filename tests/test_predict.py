"""predict end to end on a small sample: extreme test houses stay finite, positive and sane."""


import numpy as np
import pandas as pd
import pytest
from conftest import repo_params

from pipeline.predict import predict
from pipeline.preprocess import preprocess, save
from pipeline.train import train


@pytest.fixture
def trained(ames_sample, tmp_path):
    params = repo_params(folds=3, n_seeds=2, max_epochs=30, patience=5, device="cpu")
    train_frame, test_frame = ames_sample
    test_frame = test_frame.copy()
    # An out-of-range house: every area ten to a hundred times anything in training.
    for col in ("LotArea", "GrLivArea", "TotalBsmtSF", "1stFlrSF", "GarageArea", "MasVnrArea"):
        test_frame.loc[0, col] = train_frame[col].max() * 50
    save(preprocess(train_frame, test_frame, params.preprocess), tmp_path / "processed")
    train(params.train, params.ensemble.average, tmp_path / "processed", tmp_path / "models",
          tmp_path / "cv.json", tmp_path / "oof.csv", tmp_path / "live")
    return params, tmp_path, train_frame


@pytest.mark.parametrize("average", ["log", "price"])
def test_predictions_finite_positive_and_in_a_sane_range(trained, average):
    params, tmp_path, train_frame = trained
    ensemble = params.ensemble.__class__(average=average)
    path = predict(params.predict, ensemble, tmp_path / "processed", tmp_path / "models",
                   tmp_path / "submission.csv")
    prices = pd.read_csv(path)["SalePrice"].to_numpy()
    assert np.isfinite(prices).all() and (prices > 0).all()
    low, high = train_frame["SalePrice"].min(), train_frame["SalePrice"].max()
    assert (prices > low / 3).all() and (prices < high * 3).all()


def test_clipping_is_what_keeps_the_extreme_house_sane(trained):
    params, tmp_path, _ = trained
    unclipped = params.predict.__class__(clip_to_train_range=False)
    clipped_price = pd.read_csv(predict(params.predict, params.ensemble, tmp_path / "processed",
                                        tmp_path / "models", tmp_path / "a.csv"))["SalePrice"][0]
    try:
        raw = pd.read_csv(predict(unclipped, params.ensemble, tmp_path / "processed",
                                  tmp_path / "models", tmp_path / "b.csv"))["SalePrice"][0]
    except Exception as exc:  # a blown-up prediction is refused, never written
        assert "finite and positive" in str(exc)
        assert not (tmp_path / "b.csv").exists()
    else:
        assert raw != clipped_price
