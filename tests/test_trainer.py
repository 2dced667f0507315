"""The batched trainer against a plain one-model-at-a-time torch loop, and the regularisers."""

import numpy as np
import pytest
import torch
from conftest import DEVICES, MODES, NO_GPU, synthetic_regression, trained_tolerance
from reference_trainer import train_one

from pipeline.engine.specs import Architecture, PerModel
from pipeline.engine.trainer import train_batched


def fold_masks(n_rows, n_folds):
    fold = np.arange(n_rows) % n_folds
    val = np.stack([fold == k for k in range(n_folds)])
    return torch.tensor(~val), torch.tensor(val)


def make_case(n_rows=90, n_features=5):
    x, y = synthetic_regression(n_rows, n_features)
    return torch.tensor(x), torch.tensor(y)


SCALES = [[0.0, 2.0, 0.5, 1.5, 1.0], [1.0] * 5, [3.0, 0.0, 0.0, 1.0, 1.0]]


CASES = [
    # optimizer, hidden, per-model (lr, weight_decay, l1, dropout), patience, linear skip, options
    ("adamw", (16, 8), [(0.01, 0.05, 0.0, 0.0), (0.003, 0.0, 1e-3, 0.2), (0.01, 0.1, 0.0, 0.5)], 3,
     False, {}),
    ("adam", (12,), [(0.005, 0.01, 0.0, 0.0), (0.01, 0.0, 5e-4, 0.3), (0.002, 0.1, 0.0, 0.0)], 0,
     False, {}),
    ("sgd", (), [(0.05, 0.01, 0.0, 0.0), (0.02, 0.0, 1e-3, 0.0), (0.1, 0.001, 0.0, 0.0)], 2, False,
     {}),
    ("adamw", (8,), [(0.01, 0.05, 1e-3, 0.3), (0.003, 0.0, 0.0, 0.0), (0.02, 0.5, 1e-4, 0.1)], 4,
     True, {}),
    ("sgd", (), [(0.05, 0.01, 0.0, 0.0), (0.02, 0.0, 1e-3, 0.0), (0.1, 0.001, 0.0, 0.0)], 2, True,
     {}),
    # per-model Huber thresholds (log price; 0 = squared error)
    ("adamw", (8,), [(0.01, 0.05, 1e-3, 0.3), (0.003, 0.0, 0.0, 0.0), (0.02, 0.5, 1e-4, 0.1)], 3,
     True, {"huber": [0.05, 0.0, 0.3]}),
    ("adam", (6,), [(0.005, 0.01, 0.0, 0.2), (0.01, 0.05, 5e-4, 0.3), (0.002, 0.1, 0.0, 0.0)], 2,
     False, {"huber": [0.1, 0.02, 0.0]}),
    # fixed per-model input scales of the hidden layers (train.lasso_input_power): a column
    # left out, uneven scales, ones (the model without them)
    ("adamw", (8,), [(0.01, 0.05, 1e-3, 0.3), (0.003, 0.0, 0.0, 0.0), (0.02, 0.5, 1e-4, 0.1)], 3,
     True, {"feature_scale": SCALES}),
    ("adam", (6, 4), [(0.005, 0.01, 0.0, 0.2), (0.01, 0.05, 5e-4, 0.3), (0.002, 0.1, 0.0, 0.0)], 2,
     True, {"feature_scale": SCALES, "huber": [0.1, 0.0, 0.05]}),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("optimizer", "hidden", "settings", "patience", "skip", "options"), CASES)
def test_batched_matches_one_by_one(optimizer, hidden, settings, patience, skip, options, device):
    x, y = make_case()
    train_mask, val_mask = fold_masks(len(y), 3)
    # Model i trains on fold i % 3 with its own hyperparameters and seed; the last row of one
    # fold is dropped so the models have different numbers of training rows.
    train_mask[1, 0] = False
    seeds = [11, 22, 33]
    huber = options.get("huber", [0.0] * 3)
    scales = options.get("feature_scale")
    arch = Architecture(hidden, "relu", optimizer, batch_size=16, linear_skip=skip)
    per_model = PerModel(seeds=seeds, lr=[s[0] for s in settings],
                         weight_decay=[s[1] for s in settings], l1=[s[2] for s in settings],
                         dropout=[s[3] for s in settings], max_epochs=[12, 9, 12],
                         patience=[patience] * 3, huber_delta=huber)
    on = device.split("+")[0]
    result = train_batched(x[None].to(on), y.to(on), train_mask, val_mask, arch, per_model,
                           compile_kernels=device.endswith("+compile"),
                           feature_scale=None if scales is None else torch.tensor(scales))
    assert result.epoch_mode == MODES[device]
    for m, (lr, wd, l1, rate) in enumerate(settings):
        ref_w, ref_b, ref_hist, ref_best = train_one(
            x, y, train_mask[m], val_mask[m], seed=seeds[m], hidden=hidden, activation="relu",
            optimizer=optimizer, batch_size=16, lr=lr, weight_decay=wd, l1=l1, dropout=rate,
            max_epochs=per_model.max_epochs[m], patience=patience, linear_skip=skip,
            huber_delta=huber[m],
            feature_scale=None if scales is None else torch.tensor(scales[m]))
        assert int(result.best_epoch[m]) == ref_best
        assert int(result.epochs_run[m]) == len(ref_hist)
        np.testing.assert_allclose(result.val_rmse[:len(ref_hist), m].numpy(), ref_hist,
                                   rtol=1e-4, atol=1e-5)
        assert torch.isnan(result.val_rmse[len(ref_hist):, m]).all()
        assert len(result.models.weights) == len(ref_w) == len(hidden) + 1 + skip
        close = trained_tolerance(optimizer, lr)
        for got, want in zip(result.models.weights, ref_w, strict=True):
            torch.testing.assert_close(got[m], want, **close)
        if scales is not None:
            assert result.models.feature_scale[m].tolist() == scales[m]
        for got, want in zip(result.models.biases, ref_b, strict=True):
            torch.testing.assert_close(got[m], want, **close)


def test_l1_on_the_skip_path_is_its_own_penalty():
    x, y = make_case()
    train_mask, val_mask = fold_masks(len(y), 3)
    arch = Architecture((8,), "relu", "adamw", batch_size=16, linear_skip=True)
    l1, l1_skip = [0.0, 1e-3, 0.0], [0.3, 0.0, 0.003]
    per_model = PerModel(seeds=[7, 8, 9], lr=[0.01] * 3, weight_decay=[0.05] * 3, l1=l1,
                         l1_skip=l1_skip, dropout=[0.0] * 3, max_epochs=[8] * 3, patience=[0] * 3)
    result = train_batched(x[None], y, train_mask, val_mask, arch, per_model)
    for m in range(3):
        ref_w, _, ref_hist, _ = train_one(
            x, y, train_mask[m], val_mask[m], seed=[7, 8, 9][m], hidden=(8,), activation="relu",
            optimizer="adamw", batch_size=16, lr=0.01, weight_decay=0.05, l1=l1[m], dropout=0.0,
            max_epochs=8, patience=0, linear_skip=True, l1_skip=l1_skip[m])
        np.testing.assert_allclose(result.val_rmse[:, m].numpy(), ref_hist, rtol=1e-4, atol=1e-5)
        for got, want in zip(result.models.weights, ref_w, strict=True):
            torch.testing.assert_close(got[m], want, **trained_tolerance("adamw", 0.01))
    # The penalty bites: model 0's skip weights (l1_skip 0.3) end up smaller than without it.
    plain = train_batched(x[None], y, train_mask[:1], val_mask[:1], arch, PerModel.repeat(
        [7], lr=0.01, weight_decay=0.05, l1=0.0, dropout=0.0, max_epochs=8, patience=0))
    assert (float(result.models.weights[-1][0].abs().sum())
            < 0.8 * float(plain.models.weights[-1][0].abs().sum()))


@pytest.mark.parametrize("device", DEVICES)
def test_model_result_does_not_depend_on_batch_companions(device):
    x, y = make_case()
    x, y = x.to(device.split("+")[0]), y.to(device.split("+")[0])
    train_mask, val_mask = fold_masks(len(y), 3)
    arch = Architecture((16,), "relu", "adamw", batch_size=16)
    kwargs = dict(lr=0.01, weight_decay=0.01, l1=1e-4, dropout=0.3, max_epochs=8, patience=3)
    fuse = device.endswith("+compile")
    together = train_batched(x[None], y, train_mask, val_mask, arch,
                             PerModel.repeat([5, 6, 7], **kwargs), compile_kernels=fuse)
    alone = train_batched(x[None], y, train_mask[1:2], val_mask[1:2], arch,
                          PerModel.repeat([6], **kwargs), compile_kernels=fuse)
    for got, want in zip(together.models.weights, alone.models.weights, strict=True):
        torch.testing.assert_close(got[1], want[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(together.val_rmse[:, 1], alone.val_rmse[:together.val_rmse.shape[0], 0],
                               equal_nan=True, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_dropping_stopped_models_from_the_batch_changes_no_result(device):
    """Models that stop at different epochs leave the batch (several compactions, the last
    model running alone); every result equals the run that keeps them all to the end, exactly
    on the CPU, and on CUDA too (its graph is captured again after each compaction)."""
    on = device.split("+")[0]
    x, y = make_case()
    train_mask, val_mask = fold_masks(len(y), 3)
    train_mask = torch.cat([train_mask, train_mask])
    val_mask = torch.cat([val_mask, val_mask])
    stop = val_mask.clone()
    arch = Architecture((16,), "relu", "adamw", batch_size=16, linear_skip=True)
    per_model = PerModel(seeds=[1, 2, 3, 4, 5, 6], lr=[0.01, 0.003, 0.02, 0.01, 0.005, 0.001],
                         weight_decay=[0.01] * 6, l1=[1e-4, 0, 1e-4, 0, 1e-3, 0],
                         dropout=[0.3, 0.0, 0.1, 0.5, 0.0, 0.2],
                         max_epochs=[3, 30, 6, 12, 40, 9], patience=[0, 2, 1, 3, 4, 0],
                         l1_skip=[1e-3] * 6)
    seen = []
    runs = {compact: train_batched(x[None].to(on), y.to(on), train_mask, val_mask, arch, per_model,
                                   stop_mask=stop, compact=compact,
                                   compile_kernels=device.endswith("+compile"),
                                   on_epoch=lambda e, n, b: seen.append((e, n, b)))
            for compact in (False, True)}
    kept, full = runs[True], runs[False]
    assert len(set(full.epochs_run.tolist())) >= 4  # stops spread out: several compactions
    torch.testing.assert_close(kept.best_epoch, full.best_epoch, rtol=0, atol=0)
    torch.testing.assert_close(kept.epochs_run, full.epochs_run, rtol=0, atol=0)
    exact = {"rtol": 0, "atol": 0} if on == "cpu" else {"rtol": 1e-5, "atol": 1e-6}
    for got, want in zip([*kept.models.weights, *kept.models.biases],
                         [*full.models.weights, *full.models.biases], strict=True):
        torch.testing.assert_close(got, want, **exact)
    for name in ("train_rmse", "val_rmse", "stop_rmse"):
        torch.testing.assert_close(getattr(kept, name), getattr(full, name), equal_nan=True,
                                   **exact)
    half = len(seen) // 2  # progress reports the same active counts and best scores
    assert seen[half:] == seen[:half] or on != "cpu"
    assert kept.epoch_mode == MODES[device]


@NO_GPU
def test_cuda_graph_replay_gives_the_eager_result_exactly():
    x, y = make_case()
    train_mask, val_mask = fold_masks(len(y), 3)
    arch = Architecture((16,), "relu", "adamw", batch_size=16, linear_skip=True)
    per_model = PerModel(seeds=[1, 2, 3], lr=[0.01, 0.003, 0.02], weight_decay=[0.1, 0.0, 0.5],
                         l1=[1e-4, 0.0, 1e-3], dropout=[0.3, 0.0, 0.5], max_epochs=[10, 6, 10],
                         patience=[3, 0, 2])
    runs = {graph: train_batched(x[None].cuda(), y.cuda(), train_mask, val_mask, arch, per_model,
                                 cuda_graph=graph) for graph in (True, False)}
    assert runs[True].epoch_mode == "cuda graph" and runs[False].epoch_mode == "eager"
    for got, want in zip(runs[True].models.weights, runs[False].models.weights, strict=True):
        assert torch.equal(got, want)
    assert torch.equal(runs[True].val_rmse.nan_to_num(-1), runs[False].val_rmse.nan_to_num(-1))
    assert torch.equal(runs[True].best_epoch, runs[False].best_epoch)


@NO_GPU
def test_failed_graph_capture_falls_back_to_eager_epochs(monkeypatch):
    x, y = make_case()
    train_mask, val_mask = fold_masks(len(y), 3)
    arch = Architecture((8,), "relu", "adamw", batch_size=16)
    per_model = PerModel.repeat([4, 5, 6], lr=0.01, weight_decay=0.1, l1=1e-4, dropout=0.3,
                                max_epochs=6, patience=0)
    eager = train_batched(x[None].cuda(), y.cuda(), train_mask, val_mask, arch, per_model,
                          cuda_graph=False)

    def broken_capture(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "graph", broken_capture)
    with pytest.warns(UserWarning, match="CUDA graph capture failed, training eagerly"):
        fallback = train_batched(x[None].cuda(), y.cuda(), train_mask, val_mask, arch, per_model)
    assert fallback.epoch_mode == "eager (graph capture failed)"
    for got, want in zip(fallback.models.weights, eager.models.weights, strict=True):
        assert torch.equal(got, want)


def test_compile_is_a_cuda_option_and_changes_nothing_on_the_cpu():
    x, y = make_case()
    train_mask, val_mask = fold_masks(len(y), 3)
    arch = Architecture((8,), "relu", "adamw", batch_size=16)
    per_model = PerModel.repeat([4, 5, 6], lr=0.01, weight_decay=0.1, l1=1e-4, dropout=0.3,
                                max_epochs=5, patience=0)
    runs = [train_batched(x[None], y, train_mask, val_mask, arch, per_model, compile_kernels=fuse)
            for fuse in (True, False)]
    assert [r.epoch_mode for r in runs] == ["eager", "eager"]
    for got, want in zip(runs[0].models.weights, runs[1].models.weights, strict=True):
        assert torch.equal(got, want)


def _train(**overrides):
    x, y = make_case()
    train_mask, val_mask = fold_masks(len(y), 3)
    settings = dict(lr=0.01, weight_decay=0.0, l1=0.0, dropout=0.0, max_epochs=15, patience=0)
    settings.update(overrides)
    arch = Architecture((16,), "relu", "adam", batch_size=16)
    return train_batched(x[None], y, train_mask[:1], val_mask[:1], arch,
                         PerModel.repeat([3], **settings))


def _weight_norms(result, order):
    return sum(float(w.abs().pow(order).sum()) for w in result.models.weights)


def test_weight_decay_shrinks_weights():
    assert _weight_norms(_train(weight_decay=0.5), 2) < 0.8 * _weight_norms(_train(), 2)


def test_l1_penalty_shrinks_weights_and_zeroes_them_out():
    plain, sparse = _train(), _train(l1=0.01)
    assert _weight_norms(sparse, 1) < 0.75 * _weight_norms(plain, 1)
    small = sum(int((w.abs() < 1e-3).sum()) for w in sparse.models.weights)
    assert small > sum(int((w.abs() < 1e-3).sum()) for w in plain.models.weights)


def test_dropout_changes_training():
    plain, dropped = _train(), _train(dropout=0.5)
    assert not torch.allclose(plain.models.weights[0], dropped.models.weights[0])
    # The training curve is noisier/higher with dropout: it regularises.
    assert float(dropped.train_rmse[-1, 0]) > float(plain.train_rmse[-1, 0])


def test_early_stopping_restores_best_epoch_and_stops():
    result = _train(lr=0.05, max_epochs=200, patience=4)
    best = int(result.best_epoch[0])
    ran = int(result.epochs_run[0])
    assert ran == best + 1 + 4 < 200
    val = result.val_rmse[:ran, 0]
    assert float(val[best]) == pytest.approx(float(val.min()))
    assert torch.isnan(result.val_rmse[ran:, 0]).all()


def test_patience_zero_keeps_last_epoch():
    result = _train(max_epochs=7, patience=0)
    assert int(result.best_epoch[0]) == 6
    assert int(result.epochs_run[0]) == 7


def test_early_stopping_watches_stop_rows_not_validation_rows():
    x, y = make_case()
    train_mask, val_mask = fold_masks(len(y), 3)
    stop_mask = train_mask[:1] & (torch.arange(len(y)) % 5 == 0)
    train_rows = train_mask[:1] & ~stop_mask
    arch = Architecture((16,), "relu", "adam", batch_size=16)
    settings = dict(lr=0.05, weight_decay=0.0, l1=0.0, dropout=0.0, max_epochs=200, patience=4)
    on_val = train_batched(x[None], y, train_rows, val_mask[:1], arch, PerModel.repeat([3], **settings))
    on_stop = train_batched(x[None], y, train_rows, val_mask[:1], arch, PerModel.repeat([3], **settings),
                            stop_mask=stop_mask)
    # Same training either way; only the rows that choose the epoch differ.
    ran = min(int(on_val.epochs_run[0]), int(on_stop.epochs_run[0]))
    torch.testing.assert_close(on_val.val_rmse[:ran], on_stop.val_rmse[:ran])
    assert int(on_val.best_epoch[0]) == int(on_val.val_rmse[:, 0].nan_to_num(float("inf")).argmin())
    assert int(on_stop.best_epoch[0]) != int(on_val.best_epoch[0])


def test_skip_start_is_where_the_linear_path_begins():
    x, y = make_case()
    train_mask, val_mask = fold_masks(len(y), 3)
    arch = Architecture((4,), "relu", "adamw", batch_size=16, linear_skip=True)
    settings = dict(lr=1e-30, weight_decay=0.0, l1=0.0, dropout=0.0, max_epochs=1, patience=0)
    start_w = torch.arange(15, dtype=torch.float64).view(3, 5) / 10
    start_b = torch.tensor([0.5, 0.0, -1.0], dtype=torch.float64)
    plain = train_batched(x[None], y, train_mask, val_mask, arch, PerModel.repeat([1, 2, 3], **settings))
    warm = train_batched(x[None], y, train_mask, val_mask, arch, PerModel.repeat([1, 2, 3], **settings),
                         skip_start=(start_w, start_b))
    assert plain.models.weights[-1].abs().max() < 1e-20  # the default start: zeros (lr ~ 0)
    # the start is a fit in log price: the model holds it in its standardised target units
    mean, std = warm.models.y_mean, warm.models.y_std
    torch.testing.assert_close(warm.models.weights[-1][:, :, 0],
                               (start_w / std[:, None]).float())
    torch.testing.assert_close(warm.models.biases[-1][:, 0, 0],
                               plain.models.biases[-1][:, 0, 0] + ((start_b - mean) / std).float())
    for got, want in zip(warm.models.weights[:-1], plain.models.weights[:-1], strict=True):
        torch.testing.assert_close(got, want)  # the deep part starts as it always does
    with pytest.raises(ValueError, match="linear skip path"):
        train_batched(x[None], y, train_mask, val_mask, Architecture((4,), "relu", "adamw", 16),
                      PerModel.repeat([1, 2, 3], **settings), skip_start=(start_w, start_b))


@pytest.mark.parametrize("options", [{"huber_delta": 0.1}, {"feature_scale": SCALES}])
def test_model_options_are_deterministic_batch_independent_and_finite(options):
    """The Huber loss and fixed input scales on the CPU: the same weights run to run, the same
    weights whichever other models share the batch, a constant input column and rows far outside
    the training range give finite predictions."""
    x, y = make_case()
    x[:, 2] = 0.0  # a constant column (what standardising a constant gives)
    train_mask, val_mask = fold_masks(len(y), 3)
    options = dict(options)
    scales = options.pop("feature_scale", None)
    scales = None if scales is None else torch.tensor(scales)
    arch = Architecture((12,), "relu", "adamw", batch_size=16, linear_skip=True)
    settings = dict(lr=0.01, weight_decay=0.01, l1=1e-4, dropout=0.3, max_epochs=15, patience=4,
                    l1_skip=1e-3, **options)
    runs = [train_batched(x[None], y, train_mask, val_mask, arch, PerModel.repeat([5, 6, 7], **settings),
                          feature_scale=scales)
            for _ in range(2)]
    pair = train_batched(x[None], y, train_mask[1:], val_mask[1:], arch,
                         PerModel.repeat([6, 7], **settings),
                         feature_scale=None if scales is None else scales[1:])
    first, second, alone = ([*r.models.weights, *r.models.biases] for r in (*runs, pair))
    for a, b, c in zip(first, second, alone, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(a[1:], c)
    far = runs[0].models.predict_log_price(x[None] * 100)
    assert torch.isfinite(far).all() and far.shape == (3, len(y))
    if scales is not None:
        assert torch.equal(runs[0].models.feature_scale, scales)
        assert torch.equal(pair.models.feature_scale, scales[1:])


def test_fixed_input_scales_of_the_wrong_shape_are_refused():
    x, y = make_case()
    train_mask, val_mask = fold_masks(len(y), 3)
    per_model = PerModel.repeat([1, 2, 3], lr=0.01, weight_decay=0.0, l1=0.0, dropout=0.0,
                                max_epochs=2, patience=0)
    with pytest.raises(ValueError, match="feature_scale"):
        train_batched(x[None], y, train_mask, val_mask, Architecture((4,), "relu", "adamw", 16),
                      per_model, feature_scale=torch.ones(3, 4))


def test_the_train_stage_trains_the_default_model_the_reference_specifies(ames_sample):
    """params.yaml's own train section (three encodings, early-stopping rows, each model's Lasso
    start and input scales, L1, Huber, dropout, AdamW), shortened, through the path the train
    stage takes (pipeline/mlp.fit_mlp_configs): every fold x view model is the model
    tests/reference_trainer.default_model trains on its own view alone."""
    import dataclasses

    from conftest import repo_params
    from reference_trainer import default_model

    from pipeline.dataset.matrices import preprocess
    from pipeline.members.mlp.fit import fit_mlp_configs
    from pipeline.scoring.folds import plan_folds

    params = repo_params()
    config = dataclasses.replace(params.train, folds=3, max_epochs=6, patience=2, device="cpu")
    assert config.skip_init == "lasso" and config.lasso_input_power > 0 and config.l1 > 0
    data = preprocess(*ames_sample, params.preprocess)
    views, y = data.mlp_train, data.y_train
    assert len(views) == 3  # the default's encodings
    plan = plan_folds(len(y), data.outlier, config, len(views))
    result = fit_mlp_configs(views, y, plan, [config], torch.device("cpu"))[0]
    for m, seed in enumerate(plan.seeds):
        view = int(plan.view_of_model[m])
        width = views.widths[view]
        ref_w, ref_b, ref_hist, ref_best = default_model(
            torch.tensor(views.matrix(view)), torch.tensor(y), torch.tensor(plan.train_mask[m]),
            torch.tensor(plan.val_mask[m]), seed, config)
        assert int(result.best_epoch[m]) == ref_best
        np.testing.assert_allclose(result.val_rmse[:len(ref_hist), m].numpy(), ref_hist,
                                   rtol=1e-4, atol=1e-5)
        close = trained_tolerance(config.optimizer, config.lr)
        first, *rest = result.models.weights
        torch.testing.assert_close(first[m, :width], ref_w[0], **close)
        assert not first[m, width:].any()  # the view's padding never moves
        torch.testing.assert_close(rest[-1][m, :width], ref_w[-1], **close)
        for got, want in zip(rest[:-1], ref_w[1:-1], strict=True):
            torch.testing.assert_close(got[m], want, **close)
        for got, want in zip(result.models.biases, ref_b, strict=True):
            torch.testing.assert_close(got[m], want, **close)
