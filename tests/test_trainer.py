"""The batched trainer against a plain one-model-at-a-time torch loop, and the regularisers."""

import numpy as np
import pytest
import torch
from conftest import synthetic_regression
from reference_trainer import train_one

from pipeline.trainer import Architecture, PerModel, train_batched


def fold_masks(n_rows, n_folds):
    fold = np.arange(n_rows) % n_folds
    val = np.stack([fold == k for k in range(n_folds)])
    return torch.tensor(~val), torch.tensor(val)


def make_case(n_rows=90, n_features=5):
    x, y = synthetic_regression(n_rows, n_features)
    return torch.tensor(x), torch.tensor(y)


CASES = [
    # optimizer, hidden, per-model (lr, weight_decay, l1, dropout), patience, linear skip
    ("adamw", (16, 8), [(0.01, 0.05, 0.0, 0.0), (0.003, 0.0, 1e-3, 0.2), (0.01, 0.1, 0.0, 0.5)], 3,
     False),
    ("adam", (12,), [(0.005, 0.01, 0.0, 0.0), (0.01, 0.0, 5e-4, 0.3), (0.002, 0.1, 0.0, 0.0)], 0,
     False),
    ("sgd", (), [(0.05, 0.01, 0.0, 0.0), (0.02, 0.0, 1e-3, 0.0), (0.1, 0.001, 0.0, 0.0)], 2, False),
    ("adamw", (8,), [(0.01, 0.05, 1e-3, 0.3), (0.003, 0.0, 0.0, 0.0), (0.02, 0.5, 1e-4, 0.1)], 4,
     True),
]


@pytest.mark.parametrize(("optimizer", "hidden", "settings", "patience", "skip"), CASES)
def test_batched_matches_one_by_one(optimizer, hidden, settings, patience, skip):
    x, y = make_case()
    train_mask, val_mask = fold_masks(len(y), 3)
    # Model i trains on fold i % 3 with its own hyperparameters and seed; the last row of one
    # fold is dropped so the models have different numbers of training rows.
    train_mask[1, 0] = False
    seeds = [11, 22, 33]
    arch = Architecture(hidden, "relu", optimizer, batch_size=16, linear_skip=skip)
    per_model = PerModel(seeds=seeds, lr=[s[0] for s in settings],
                         weight_decay=[s[1] for s in settings], l1=[s[2] for s in settings],
                         dropout=[s[3] for s in settings], max_epochs=[12, 9, 12],
                         patience=[patience] * 3)
    result = train_batched(x, y, train_mask, val_mask, arch, per_model)
    for m, (lr, wd, l1, rate) in enumerate(settings):
        ref_w, ref_b, ref_hist, ref_best = train_one(
            x, y, train_mask[m], val_mask[m], seed=seeds[m], hidden=hidden, activation="relu",
            optimizer=optimizer, batch_size=16, lr=lr, weight_decay=wd, l1=l1, dropout=rate,
            max_epochs=per_model.max_epochs[m], patience=patience, linear_skip=skip)
        assert int(result.best_epoch[m]) == ref_best
        assert int(result.epochs_run[m]) == len(ref_hist)
        np.testing.assert_allclose(result.val_rmse[:len(ref_hist), m].numpy(), ref_hist,
                                   rtol=1e-4, atol=1e-5)
        assert torch.isnan(result.val_rmse[len(ref_hist):, m]).all()
        assert len(result.models.weights) == len(ref_w) == len(hidden) + 1 + skip
        for got, want in zip(result.models.weights, ref_w, strict=True):
            torch.testing.assert_close(got[m], want, rtol=1e-4, atol=1e-5)
        for got, want in zip(result.models.biases, ref_b, strict=True):
            torch.testing.assert_close(got[m], want, rtol=1e-4, atol=1e-5)


def test_model_result_does_not_depend_on_batch_companions():
    x, y = make_case()
    train_mask, val_mask = fold_masks(len(y), 3)
    arch = Architecture((16,), "relu", "adamw", batch_size=16)
    kwargs = dict(lr=0.01, weight_decay=0.01, l1=1e-4, dropout=0.3, max_epochs=8, patience=3)
    together = train_batched(x, y, train_mask, val_mask, arch,
                             PerModel.repeat([5, 6, 7], **kwargs))
    alone = train_batched(x, y, train_mask[1:2], val_mask[1:2], arch,
                          PerModel.repeat([6], **kwargs))
    for got, want in zip(together.models.weights, alone.models.weights, strict=True):
        torch.testing.assert_close(got[1], want[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(together.val_rmse[:, 1], alone.val_rmse[:together.val_rmse.shape[0], 0],
                               equal_nan=True, rtol=1e-5, atol=1e-6)


def _train(**overrides):
    x, y = make_case()
    train_mask, val_mask = fold_masks(len(y), 3)
    settings = dict(lr=0.01, weight_decay=0.0, l1=0.0, dropout=0.0, max_epochs=15, patience=0)
    settings.update(overrides)
    arch = Architecture((16,), "relu", "adam", batch_size=16)
    return train_batched(x, y, train_mask[:1], val_mask[:1], arch,
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
    on_val = train_batched(x, y, train_rows, val_mask[:1], arch, PerModel.repeat([3], **settings))
    on_stop = train_batched(x, y, train_rows, val_mask[:1], arch, PerModel.repeat([3], **settings),
                            stop_mask=stop_mask)
    # Same training either way; only the rows that choose the epoch differ.
    ran = min(int(on_val.epochs_run[0]), int(on_stop.epochs_run[0]))
    torch.testing.assert_close(on_val.val_rmse[:ran], on_stop.val_rmse[:ran])
    assert int(on_val.best_epoch[0]) == int(on_val.val_rmse[:, 0].nan_to_num(float("inf")).argmin())
    assert int(on_stop.best_epoch[0]) != int(on_val.best_epoch[0])
