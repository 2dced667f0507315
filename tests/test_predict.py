"""predict end to end on a small sample: extreme test houses stay finite, positive and sane."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import repo_params, train_in

from pipeline.dataset.matrices import preprocess
from pipeline.stages.predict import predict


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Trained once for the module (its tests only read the run)."""
    from conftest import ames_slice

    tmp_path = tmp_path_factory.mktemp("trained")
    params = repo_params(folds=3, n_seeds=2, max_epochs=30, patience=5, device="cpu")
    train_frame, test_frame = ames_slice()
    test_frame = test_frame.copy()
    # An out-of-range house: every area ten to a hundred times anything in training.
    for col in ("LotArea", "GrLivArea", "TotalBsmtSF", "1stFlrSF", "GarageArea", "MasVnrArea"):
        test_frame.loc[0, col] = train_frame[col].max() * 50
    preprocess(train_frame, test_frame, params.preprocess).save(tmp_path / "processed")
    train_in(params.train, params.ensemble.average, tmp_path)
    return params, tmp_path, train_frame


@pytest.mark.parametrize("average", ["log", "price"])
def test_predictions_finite_positive_and_in_a_sane_range(trained, average):
    params, tmp_path, train_frame = trained
    ensemble = params.ensemble.__class__(average=average)
    path = predict(params.train, ensemble, tmp_path / "processed", tmp_path / "models",
                   tmp_path / "submission.csv")
    prices = pd.read_csv(path)["SalePrice"].to_numpy()
    assert np.isfinite(prices).all() and (prices > 0).all()
    low, high = train_frame["SalePrice"].min(), train_frame["SalePrice"].max()
    assert (prices > low / 3).all() and (prices < high * 3).all()


def test_clipping_is_what_keeps_the_extreme_house_sane(trained):
    params, tmp_path, _ = trained
    unclipped = dataclasses.replace(params.train, clip_to_train_range=False)
    clipped_price = pd.read_csv(predict(params.train, params.ensemble, tmp_path / "processed",
                                        tmp_path / "models", tmp_path / "a.csv"))["SalePrice"][0]
    try:
        raw = pd.read_csv(predict(unclipped, params.ensemble, tmp_path / "processed",
                                  tmp_path / "models", tmp_path / "b.csv"))["SalePrice"][0]
    except Exception as exc:  # a blown-up prediction is refused, never written
        assert "finite and positive" in str(exc)
        assert not (tmp_path / "b.csv").exists()
    else:
        assert raw != clipped_price


def test_saved_models_reload_and_predict_sane_prices(ames_sample, tmp_path):
    """On the piecewise-linear, domain-filled, robust-scaled features with one encoding: the
    saved fold models reload and give the out-of-fold predictions training gave, and the extreme
    test house still gets a finite, sane price."""
    import dataclasses
    import json

    import torch

    from pipeline.members.mlp.checkpoint import listed_model_paths, load_models

    params = repo_params(preprocess={"mlp_views": []}, folds=3, n_seeds=2, max_epochs=30,
                         patience=5, device="cpu")
    params = dataclasses.replace(params, preprocess=dataclasses.replace(
        params.preprocess, piecewise_linear="kinks", domain_fills=True, scaler="robust_clip"))
    train_frame, test_frame = ames_sample
    test_frame = test_frame.copy()
    test_frame.loc[0, ["LotArea", "GrLivArea"]] = train_frame[["LotArea", "GrLivArea"]].max() * 50
    test_frame.loc[1, "LotFrontage"] = np.nan
    preprocess(train_frame, test_frame, params.preprocess).save(tmp_path / "processed")
    train_in(params.train, params.ensemble.average, tmp_path)
    models = load_models(listed_model_paths(tmp_path / "models"))
    assert models.feature_scale is not None  # train.lasso_input_power's scales, saved
    data = np.load(tmp_path / "processed" / "train.npz")
    oof = pd.read_csv(tmp_path / "oof.csv")
    log_pred = models.predict_log_price(torch.tensor(data["x"])[None]).numpy()  # [6 models, rows]
    np.testing.assert_array_equal(oof["Id"], data["id"])
    fold_of_model = np.repeat(np.arange(3), 2)  # fold0_seed0, fold0_seed1, fold1_seed0, ...
    again = [log_pred[fold_of_model == f, row].mean() for row, f in enumerate(oof["fold"])]
    np.testing.assert_allclose(again, oof["predicted_log_price"], rtol=0, atol=1e-9)
    assert json.loads((tmp_path / "cv.json").read_text())["cv_rmse_no_outliers"] < 0.3
    path = predict(params.train, params.ensemble, tmp_path / "processed", tmp_path / "models",
                   tmp_path / "submission.csv")
    prices = pd.read_csv(path)["SalePrice"].to_numpy()
    assert np.isfinite(prices).all() and (prices > 0).all()
    low, high = train_frame["SalePrice"].min(), train_frame["SalePrice"].max()
    assert (prices > low / 3).all() and (prices < high * 3).all()
