"""Batch-invariant arithmetic (pipeline/engine/fixed_order.py): on CUDA a model's bits must not depend
on how many models share its batch. CI has no GPU, so the CUDA path also runs on the CPU here
(`enabled` forced on), where it must agree with the plain path and stay batch-invariant."""

import numpy as np
import pytest
import torch
from conftest import DEVICES, MODES, synthetic_regression

from pipeline.dataset.views import Views
from pipeline.engine import fixed_order
from pipeline.engine.specs import Architecture, PerModel
from pipeline.engine.trainer import train_batched


@pytest.fixture
def forced(monkeypatch):
    monkeypatch.setattr(fixed_order, "enabled", lambda t: True)


@pytest.mark.parametrize("n", [1, 2, 5, 64, 100, 1460])
def test_pairwise_sum_is_the_sum_whatever_the_other_dims(n):
    t = torch.randn(7, n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    got = fixed_order.pairwise_sum(t, 1)
    assert got.shape == (7, 1, 3)
    torch.testing.assert_close(got, t.sum(1, keepdim=True))
    assert torch.equal(fixed_order.pairwise_sum(t[2:4], 1), got[2:4])
    assert torch.equal(fixed_order.pairwise_sum(t[..., :1], -2), got[..., :1])


def test_the_padded_product_and_the_bias_gradient_agree_with_the_plain_ones(forced):
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(4, 9, 6, generator=gen, requires_grad=True)
    w = torch.randn(4, 6, 1, generator=gen, requires_grad=True)
    b = torch.randn(4, 1, 1, generator=gen, requires_grad=True)
    out = fixed_order.affine(b, h, w)
    assert out.shape == (4, 9, 1)
    grads = torch.autograd.grad((out ** 2).sum(), (h, w, b))
    plain = torch.baddbmm(b, h, w)
    torch.testing.assert_close(out, plain)
    for got, want in zip(grads, torch.autograd.grad((plain ** 2).sum(), (h, w, b)), strict=True):
        torch.testing.assert_close(got, want)


def default_like_case(n_rows=160, n_features=24):
    x, y = synthetic_regression(n_rows, n_features)
    return torch.tensor(x), torch.tensor(y)


def train(x, y, models, arch, view_widths=None, **settings):
    """Model m trains on fold m % 5 with seed 100 + m and lr 0.01 * 1.02 ** m."""
    fold = np.arange(len(y)) % 5
    masks = torch.tensor(np.stack([fold != m % 5 for m in models]))
    per_model = PerModel(seeds=[100 + m for m in models], lr=[0.01 * 1.02 ** m for m in models],
                         weight_decay=[0.05] * len(models), l1=[1e-4] * len(models),
                         dropout=[0.3] * len(models), max_epochs=[6] * len(models),
                         patience=[2] * len(models), huber_delta=[0.1] * len(models),
                         view=None if view_widths is None else [m % 2 for m in models])
    views = x if view_widths is not None else x[None]  # [V, N, W]: one view unless given
    return train_batched(views, y, masks, ~masks, arch, per_model, view_widths=view_widths,
                         **settings)


def assert_same_bits(result, position, alone):
    def tensors(models):
        return [*models.weights, *models.biases]

    for got, want in zip(tensors(result.models), tensors(alone.models), strict=True):
        assert torch.equal(got[position], want[0])
    for name in ("train_rmse", "val_rmse"):
        got, want = getattr(result, name)[:, position], getattr(alone, name)[:, 0]
        n = min(len(got), len(want))  # epochs after every model stopped are NaN rows
        torch.testing.assert_close(got[:n], want[:n], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("path", [*DEVICES, "cpu, CUDA's arithmetic"])
@pytest.mark.parametrize("views", [False, True])
def test_a_model_has_the_same_bits_alone_and_among_hundreds(path, views, request):
    """The default's kind of model (a hidden layer, the linear path, Huber loss, dropout, L1,
    early stopping; with and without views) with one other, among 3 and among 300 models: the
    same weights and scores to the bit, on every device (cuBLAS changes kernels between those
    batch sizes on an H100). (A batch of one matrix rounds differently on the CPU; the trainer
    never runs one alone.)"""
    if path.startswith("cpu, "):
        request.getfixturevalue("forced")
    on = path.split("+")[0].split(",")[0]
    x, y = default_like_case()
    widths = None
    if views:
        views_ = Views.of([x.numpy(), x[:, :20].numpy() ** 2])
        x, widths = torch.tensor(views_.x), views_.widths
    x, y = x.to(on), y.to(on)
    arch = Architecture((32,), "relu", "adamw", batch_size=64, linear_skip=True)
    settings = dict(compile_kernels=path.endswith("+compile"), view_widths=widths)
    alone = train(x, y, [7, 8], arch, **settings)
    assert alone.epoch_mode == MODES.get(path, "eager")
    for models in (range(5, 8), range(300)):
        assert_same_bits(train(x, y, list(models), arch, **settings), list(models).index(7), alone)


def test_rows_shared_by_all_models_take_the_padded_products_too(forced, monkeypatch):
    """Rows shared by all models (evaluation without views): the CUDA path's results agree with
    the CPU's plain ones."""
    x, y = default_like_case()
    arch = Architecture((16,), "relu", "adamw", batch_size=64, linear_skip=True)
    fixed = train(x, y, [0, 1, 2], arch)
    monkeypatch.setattr(fixed_order, "enabled", lambda t: False)
    plain = train(x, y, [0, 1, 2], arch)
    for got, want in zip(fixed.models.weights, plain.models.weights, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    plain_prediction = fixed.models.predict_log_price(x[None])
    monkeypatch.setattr(fixed_order, "enabled", lambda t: True)
    torch.testing.assert_close(fixed.models.predict_log_price(x[None]), plain_prediction)
