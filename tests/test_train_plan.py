"""Which rows each fold model trains on, stops on and is scored on."""

import dataclasses

import numpy as np
import torch
from conftest import repo_params, synthetic_regression

from pipeline.dataset.views import Views
from pipeline.members._lasso import LassoSettings, fit_lasso
from pipeline.members.mlp.configs import lasso_input_scale, lasso_skip_start, stopping_rows
from pipeline.members.mlp.fit import fit_mlp_configs
from pipeline.scoring.folds import plan_folds

TIGHT = LassoSettings(0.01, 50_000, 1e-6)


def lasso(x, y, alpha):
    return fit_lasso(x, y, TIGHT._replace(alpha=alpha), "test")

N_ROWS = 200


def _plan(**updates):
    from conftest import repo_params

    params = repo_params(**{"folds": 4, "n_seeds": 2, **updates}).train
    outlier = np.zeros(N_ROWS, dtype=bool)
    outlier[[3, 50]] = True
    return plan_folds(N_ROWS, outlier, params), params, outlier


def test_holdout_is_drawn_from_training_rows_never_the_scored_fold():
    plan, params, outlier = _plan(patience=10, early_stopping_holdout=0.2, exclude_outliers=True)
    train, stop = stopping_rows(plan, params)
    assert not (train & stop).any()
    assert not (stop & plan.val_mask).any() and not (train & plan.val_mask).any()
    np.testing.assert_array_equal(train | stop, plan.train_mask)
    assert not stop[:, outlier].any()
    held = stop.sum(1) / plan.train_mask.sum(1)
    np.testing.assert_allclose(held, 0.2, atol=0.01)
    # The two seeds of a fold hold out different rows (each its own draw), reproducibly.
    assert (stop[0] != stop[1]).any()
    np.testing.assert_array_equal(stopping_rows(plan, params)[1], stop)


def test_holdout_zero_stops_on_the_scored_fold_and_patience_zero_on_nothing():
    plan, params, _ = _plan(patience=10, early_stopping_holdout=0.0)
    train, stop = stopping_rows(plan, params)
    np.testing.assert_array_equal(train, plan.train_mask)
    np.testing.assert_array_equal(stop, plan.val_mask)
    plan, params, _ = _plan(patience=0, early_stopping_holdout=0.2)
    train, stop = stopping_rows(plan, params)
    np.testing.assert_array_equal(train, plan.train_mask)
    assert not stop.any()


def test_lasso_warm_start_is_each_models_own_lasso():
    x, y = synthetic_regression(N_ROWS, 6)
    plan, params, _ = _plan(patience=10, early_stopping_holdout=0.2)
    train, _ = stopping_rows(plan, params)
    cache = {}
    weights, intercepts = lasso_skip_start(Views.coerce(x), y, train, TIGHT, cache)
    assert len(cache) == len(plan.names)  # every model has its own rows (its own holdout)
    for model in (0, 5):  # in log price (the trainer standardises it with the model's target)
        rows = train[model]
        start = x @ weights[model].numpy() + intercepts[model].item()
        np.testing.assert_allclose(start, lasso(x[rows], y[rows], 0.01).predict(x), atol=1e-5)
    again = lasso_skip_start(Views.coerce(x), y, train, TIGHT, cache)  # shared fits
    assert torch.equal(again[0], weights)


def test_lasso_fits_in_float64_whatever_the_inputs_dtype():
    """float32 input would be fitted in float32, which gave one of two coefficient vectors from
    fit to fit on the same rows: the warm start, and every MLP trained from it, were not
    reproducible. In float64 the fit is the same for either dtype."""
    x, y = synthetic_regression(N_ROWS, 6)
    x32 = x.astype(np.float32)
    fitted = lasso(x32, y, 0.01)
    assert fitted.coef_.dtype == np.float64
    reference = lasso(x32.astype(np.float64), y, 0.01)
    assert np.array_equal(fitted.coef_, reference.coef_)
    assert fitted.intercept_ == reference.intercept_


def test_configs_trained_together_keep_their_own_skip_init():
    x, y = synthetic_regression(N_ROWS, 6)
    plan, params, _ = _plan(hidden=[4], max_epochs=3, patience=2, n_seeds=1)
    configs = [dataclasses.replace(params, skip_init=init) for init in ("lasso", "zeros")]
    together = fit_mlp_configs(Views.coerce(x), y, plan, configs, torch.device("cpu"))
    for config, result in zip(configs, together, strict=True):
        alone = fit_mlp_configs(Views.coerce(x), y, plan, [config], torch.device("cpu"))[0]
        for got, want in zip(result.models.weights, alone.models.weights, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert together[0].models.weights[-1].abs().sum() > together[1].models.weights[-1].abs().sum()


def test_lasso_input_scale_is_mean_one_over_the_kept_columns():
    coef = torch.tensor([[0.0, 2.0, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]],
                        dtype=torch.float64)
    scale = lasso_input_scale(coef, 1.5)
    assert scale.dtype == torch.float32
    want = torch.tensor([0.0, 2 ** 1.5, 1.0, 0.0]) * 2 / (2 ** 1.5 + 1)
    torch.testing.assert_close(scale[0], want)
    assert scale[1].tolist() == [1.0] * 4  # the Lasso kept nothing: every input alike
    assert scale[2].tolist() == [1.0, 1.0, 0.0, 0.0]  # equal weights: ones, dropped columns out
    torch.testing.assert_close(lasso_input_scale(coef, 1.0)[0], torch.tensor([0, 4 / 3, 2 / 3, 0]))


def test_configs_trained_together_keep_their_own_input_scales():
    """Each model's scales come from its own Lasso (the one its warm start uses), whether or not
    its linear path starts there; a config without them trains as it would alone."""
    x, y = synthetic_regression(N_ROWS, 6)
    plan, params, _ = _plan(hidden=[4], max_epochs=3, patience=2, n_seeds=1)
    configs = [dataclasses.replace(params, lasso_input_power=power, skip_init=init)
               for power, init in ((1.5, "lasso"), (0.0, "lasso"), (2.0, "zeros"))]
    together = fit_mlp_configs(Views.coerce(x), y, plan, configs, torch.device("cpu"))
    train, _ = stopping_rows(plan, params)
    coef = lasso_skip_start(Views.coerce(x), y, train,
                            TIGHT._replace(alpha=params.lasso_alpha))[0]
    for config, result in zip(configs, together, strict=True):
        alone = fit_mlp_configs(Views.coerce(x), y, plan, [config], torch.device("cpu"))[0]
        for got, want in zip(result.models.weights, alone.models.weights, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        if config.lasso_input_power:
            assert torch.equal(alone.models.feature_scale, result.models.feature_scale)
            assert torch.equal(result.models.feature_scale,
                               lasso_input_scale(coef, config.lasso_input_power))
        else:
            assert alone.models.feature_scale is None
            assert (result.models.feature_scale == 1).all()
    assert together[2].models.weights[-1].abs().sum() < together[0].models.weights[-1].abs().sum()


def test_unconverged_lasso_is_one_line_not_a_warning(monkeypatch, capsys):
    import warnings

    import sklearn.linear_model

    def short(**kwargs):
        return real(**{**kwargs, "max_iter": 1})

    real = sklearn.linear_model.Lasso
    monkeypatch.setattr(sklearn.linear_model, "Lasso", short)
    x, y = synthetic_regression(N_ROWS, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ConvergenceWarning escaping would fail the test
        fitted = lasso(x, y, 1e-4)
    assert fitted.coef_.shape == (6,)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stopped at its iteration limit" in err


def test_a_configs_result_is_bit_identical_alone_and_inside_any_batch(ames_sample):
    """The default training (200 epochs, early stopping on a holdout, Lasso warm start), one
    config alone and as the 3rd of a 4-config grid: the same bits, so a sweep's score for a
    config is the score dvc repro gives for it."""
    import dataclasses

    import torch

    from pipeline.dataset.matrices import preprocess
    from pipeline.engine.device import make_deterministic
    from pipeline.members.mlp.fit import fit_mlp_configs
    from pipeline.scoring.folds import plan_folds

    params = repo_params(device="cpu")
    train_frame, test_frame = ames_sample
    data = preprocess(train_frame, test_frame, params.preprocess)
    x, y, outlier = data.x_train, data.y_train, data.outlier
    make_deterministic(torch.device("cpu"))
    grid = [dataclasses.replace(params.train, dropout=d, lr=lr)
            for d in (0.3, 0.56) for lr in (0.00078, 0.002)]
    target = grid[2]
    plan = plan_folds(len(y), outlier, target)
    alone = fit_mlp_configs(Views.coerce(x), y, plan, [target], torch.device("cpu"))[0]
    batched = fit_mlp_configs(Views.coerce(x), y, plan, grid, torch.device("cpu"))[2]
    # early stopping had room to differ: models ran past their patience and stopped apart
    assert int(alone.epochs_run.max()) > target.patience
    assert len(set(alone.epochs_run.tolist())) > 1
    assert torch.equal(alone.best_epoch, batched.best_epoch)
    assert torch.equal(alone.epochs_run, batched.epochs_run)
    for got, want in zip(batched.models.weights + batched.models.biases,
                         alone.models.weights + alone.models.biases, strict=True):
        assert torch.equal(got, want)
    ran = alone.train_rmse.shape[0]
    assert torch.equal(batched.train_rmse[:ran].nan_to_num(-1), alone.train_rmse.nan_to_num(-1))
