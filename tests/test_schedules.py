"""The lr / regulariser schedules: the batched factors are the scalar ones, with the right shape."""

import itertools
import math

import pytest
import torch

from pipeline.schedules import KINDS, factor, factors, kind_codes


@pytest.mark.parametrize("max_epochs", [1, 7, 200])
def test_batched_factors_equal_the_scalar_definition(max_epochs):
    kinds = kind_codes(list(KINDS), 3, torch.device("cpu"))
    for epoch in range(max_epochs):
        got = factors(kinds, epoch, torch.tensor([max_epochs] * 3)).tolist()
        want = [factor(k, epoch, max_epochs) for k in KINDS]
        assert got == pytest.approx(want, rel=1e-15, abs=1e-15)


def test_schedule_shapes():
    assert [factor("constant", e, 10) for e in range(10)] == [1.0] * 10
    cosine = [factor("cosine", e, 10) for e in range(10)]
    assert cosine[0] == 1.0 and all(a > b > 0 for a, b in itertools.pairwise(cosine))
    assert cosine[5] == pytest.approx(0.5)
    flat = [factor("flat_cos", e, 10) for e in range(10)]
    assert flat[:6] == [1.0] * 6 and all(a > b > 0 for a, b in itertools.pairwise(flat[5:]))
    assert flat[9] == pytest.approx((1 + math.cos(math.pi * 0.8)) / 2)
    assert kind_codes(None, 2, torch.device("cpu")).tolist() == [0, 0]
