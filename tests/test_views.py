"""The MLP on several encodings of the same houses (preprocess.mlp_views): params, preprocess,
fold plan, the batched trainer against one model trained on its own view, and the stages."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import DEVICES, MODES, repo_params, synthetic_regression, train_in, trained_tolerance
from reference_trainer import train_one

from pipeline.common.errors import PipelineError
from pipeline.dataset.views import Views
from pipeline.engine.specs import Architecture, PerModel
from pipeline.engine.trainer import train_batched
from pipeline.scoring.folds import plan_folds

KINKS_ROBUST = [{"piecewise_linear": "kinks"}, {"scaler": "robust_clip"}]


def with_views(params, views):
    return dataclasses.replace(params, preprocess=dataclasses.replace(params.preprocess,
                                                                      mlp_views=views))


def two_views():
    """View 0: 5 columns; view 1: 3 of them, squared (another encoding, narrower)."""
    x, y = synthetic_regression(90, 5)
    return Views.of([x, x[:, :3] ** 2]), y


@pytest.mark.parametrize("bad", [[{"scaler": "minmax"}], [{"fit_on": "train+test"}], "kinks",
                                 ["kinks"]])
def test_a_bad_view_is_one_line_naming_it(bad):
    with pytest.raises(PipelineError, match=r"preprocess\.mlp_views") as err:
        with_views(repo_params(), bad)
    assert "\n" not in str(err.value)


def test_views_are_validated_hashable_and_expand_to_encodings():
    params = with_views(repo_params(), KINKS_ROBUST).preprocess
    hash(params)  # variants are grouped by their preprocess settings
    encodings = params.encodings()
    assert [(e.piecewise_linear, e.scaler) for e in encodings] == [
        (params.piecewise_linear, params.scaler), ("kinks", params.scaler),
        (params.piecewise_linear, "robust_clip")]
    assert all(e.mlp_views == () for e in encodings)


def test_views_pad_to_the_widest_and_give_each_back_unpadded():
    x, _ = synthetic_regression(10, 5)
    views = Views.of([x, x[:, :2]])
    assert views.x.shape == (2, 10, 5) and views.widths == (5, 2)
    np.testing.assert_array_equal(views.matrix(1), x[:, :2])
    assert not views.x[1, :, 2:].any()
    assert views.model_input().shape == (2, 10, 5)
    assert Views.coerce(x).model_input().shape == (1, 10, 5)  # one view: one input shape


def test_fold_plan_gives_every_view_its_own_seeds_and_keeps_view_zero():
    params = repo_params(folds=3, n_seeds=2).train
    outlier = np.zeros(60, dtype=bool)
    one, three = plan_folds(60, outlier, params), plan_folds(60, outlier, params, n_views=3)
    assert len(three.names) == 3 * 3 * 2 and three.names[2] == "fold0_view1_seed0"
    assert three.view_of_model.tolist()[:6] == [0, 0, 1, 1, 2, 2]
    for fold in range(3):
        seeds = [s for s, f in zip(three.seeds, three.fold_of_model, strict=True) if f == fold]
        assert len(set(seeds)) == 6
    view0 = three.view_of_model == 0
    assert [s for s, v in zip(three.seeds, view0, strict=True) if v] == one.seeds
    np.testing.assert_array_equal(three.train_mask[view0], one.train_mask)
    assert one.view_of_model is None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("optimizer", "skip", "dropout"), [("adamw", True, 0.3), ("adam", False, 0.0)])
def test_each_model_is_the_model_trained_on_its_own_view_alone(optimizer, skip, dropout, device):
    """Three models, two views of different widths, one batch: each matches the plain
    reference trainer run on its own (unpadded) view; its padding weights stay exactly zero."""
    views, y = two_views()
    x, y = torch.tensor(views.x), torch.tensor(y)
    fold = np.arange(90) % 3
    train_mask = torch.tensor(np.stack([fold != k for k in range(3)]))
    val_mask = ~train_mask
    seeds, view = [11, 22, 33], [1, 0, 1]
    arch = Architecture((8,), "relu", optimizer, batch_size=16, linear_skip=skip)
    settings = dict(lr=0.01, weight_decay=0.05, l1=1e-3, dropout=dropout, max_epochs=10,
                    patience=3)
    per_model = dataclasses.replace(PerModel.repeat(seeds, **settings), view=view)
    on = device.split("+")[0]
    result = train_batched(x.to(on), y.to(on), train_mask, val_mask, arch, per_model,
                           view_widths=views.widths, compile_kernels=device.endswith("+compile"))
    assert result.models.view.tolist() == view and result.epoch_mode == MODES[device]
    for m in range(3):
        own = torch.tensor(views.matrix(view[m]))
        ref_w, ref_b, ref_hist, ref_best = train_one(
            own, y, train_mask[m], val_mask[m], seed=seeds[m], hidden=(8,), activation="relu",
            optimizer=optimizer, batch_size=16, linear_skip=skip, **settings)
        assert int(result.best_epoch[m]) == ref_best
        np.testing.assert_allclose(result.val_rmse[:len(ref_hist), m].numpy(), ref_hist,
                                   rtol=1e-4, atol=1e-5)
        width = views.widths[view[m]]
        for got, want in zip(result.models.weights, ref_w, strict=True):
            if got.shape[1] == 5:  # a layer that reads the inputs: real rows, then padding
                assert not got[m, width:].any()
                got = got[:, :width]
            torch.testing.assert_close(got[m], want, **trained_tolerance(optimizer, settings["lr"]))
        for got, want in zip(result.models.biases, ref_b, strict=True):
            torch.testing.assert_close(got[m], want, **trained_tolerance(optimizer, settings["lr"]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("options", [{}, {"feature_scale": True}])
def test_views_are_deterministic_batch_independent_and_finite(options, device):
    """With views (and fixed input scales): the same weights
    run to run and whichever other models share the batch; a constant column and rows far
    outside the training range give finite predictions."""
    options = dict(options)
    scales = None
    if options.pop("feature_scale", False):  # padding columns scaled too: they stay zero
        scales = torch.tensor([[0.0, 2.0, 1.0, 1.0, 0.5], [1.0, 0.0, 3.0, 1.0, 1.0],
                               [0.5, 0.5, 0.5, 2.0, 2.0]])
    views, y = two_views()
    views.x[0, :, 2] = 0.0  # a constant column (what standardising a constant gives)
    on = device.split("+")[0]
    x, y = torch.tensor(views.x, device=on), torch.tensor(y, device=on)
    fold = np.arange(90) % 3
    train_mask = torch.tensor(np.stack([fold != k for k in range(3)]))
    arch = Architecture((12,), "relu", "adamw", batch_size=16, linear_skip=True)
    settings = dict(lr=0.01, weight_decay=0.01, l1=1e-4, dropout=0.3, max_epochs=15, patience=4,
                    huber_delta=0.1)

    def run(models):
        per_model = dataclasses.replace(PerModel.repeat([5, 6, 7][models], **settings),
                                        view=[0, 1, 1][models])
        return train_batched(x, y, train_mask[models], ~train_mask[models], arch, per_model,
                             view_widths=views.widths, compile_kernels=device.endswith("+compile"),
                             feature_scale=None if scales is None else scales[models])

    first, second, pair = run(slice(None)), run(slice(None)), run(slice(1, None))
    for a, b, c in zip(*([*r.models.weights, *r.models.biases] for r in (first, second, pair)),
                       strict=True):
        assert torch.equal(a, b) and torch.equal(a[1:], c)
    far = first.models.predict_log_price(x.cpu() * 100)  # trained models come back on the CPU
    assert torch.isfinite(far).all() and far.shape == (3, 90)
    with pytest.raises(PipelineError, match="take 2 encodings of the features, the data has 1"):
        first.models.predict_log_price(x[:1].cpu())


def test_preprocess_writes_every_view_and_the_first_is_what_members_see(ames_sample, tmp_path):
    from pipeline.dataset.matrices import preprocess
    from pipeline.dataset.processed import load_test, load_train, mlp_inputs

    params = with_views(repo_params(), KINKS_ROBUST)
    result = preprocess(*ames_sample, params.preprocess)
    views = result.mlp_train
    assert len(views) == 3 and views.widths[1] > views.widths[0] == result.x_train.shape[1]
    np.testing.assert_array_equal(views.matrix(0), result.x_train)
    assert any("_ple" in n for n in result.view_names[1])  # the kinks view's extra columns
    assert not any("_ple" in n for n in result.view_names[0])
    result.save(tmp_path)
    train, test = load_train(tmp_path), load_test(tmp_path)
    np.testing.assert_array_equal(train["x"], result.x_train)  # the members' matrix
    again = mlp_inputs(train)
    assert again.widths == views.widths and np.array_equal(again.x, views.x)
    assert np.array_equal(mlp_inputs(test, again.widths).x, result.mlp_test.x)


def test_train_and_predict_with_views_end_to_end(ames_sample, tmp_path):
    """The stages with three views: 3 models per fold, saved with their view, reloaded to the
    out-of-fold predictions training gave; a test house far outside the training range gets a
    sane price; a second run writes the same bytes."""
    import json

    import pandas as pd

    from pipeline.dataset.matrices import preprocess
    from pipeline.dataset.processed import load_train, mlp_inputs
    from pipeline.members.mlp.checkpoint import listed_model_paths, load_models
    from pipeline.stages.predict import predict

    params = with_views(repo_params(folds=3, n_seeds=1, max_epochs=30, patience=5, device="cpu",
                                    lasso_input_power=1.5), KINKS_ROBUST)
    train_frame, test_frame = ames_sample
    test_frame = test_frame.copy()
    test_frame.loc[0, ["LotArea", "GrLivArea"]] = train_frame[["LotArea", "GrLivArea"]].max() * 50
    preprocess(train_frame, test_frame, params.preprocess).save(tmp_path / "processed")
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        train_in(params.train, params.ensemble.average, out, data_dir=tmp_path / "processed")
        predict(params.train, params.ensemble, tmp_path / "processed", out / "models",
                out / "submission.csv")
        outputs.append([(out / name).read_bytes() for name in
                        ("cv.json", "oof.csv", "importance.csv", "submission.csv")])
    assert outputs[0] == outputs[1]
    models = load_models(listed_model_paths(tmp_path / "a" / "models"))
    assert models.view.tolist() == [0, 1, 2] * 3
    # fixed input scales (train.lasso_input_power), saved with each model
    assert params.train.lasso_input_power == 1.5 and models.feature_scale is not None
    assert models.feature_scale.shape == (9, models.weights[-1].shape[1])
    assert (models.feature_scale >= 0).all() and (models.feature_scale == 0).any()
    assert models.names[:3] == ["fold0_view0_seed0", "fold0_view1_seed0", "fold0_view2_seed0"]
    views = mlp_inputs(load_train(tmp_path / "processed"))
    oof = pd.read_csv(tmp_path / "a" / "oof.csv")
    log_pred = models.predict_log_price(views.model_input()).numpy()
    fold_of_model = np.repeat(np.arange(3), 3)
    again = [log_pred[fold_of_model == f, row].mean() for row, f in enumerate(oof["fold"])]
    np.testing.assert_allclose(again, oof["predicted_log_price"], rtol=0, atol=1e-9)
    assert json.loads((tmp_path / "a" / "cv.json").read_text())["cv_rmse_no_outliers"] < 0.3
    prices = pd.read_csv(tmp_path / "a" / "submission.csv")["SalePrice"].to_numpy()
    low, high = train_frame["SalePrice"].min(), train_frame["SalePrice"].max()
    assert np.isfinite(prices).all() and (prices > low / 3).all() and (prices < high * 3).all()
    importance = pd.read_csv(tmp_path / "a" / "importance.csv")
    assert "GrLivArea" in set(importance["feature"]) and importance["feature"].is_unique
