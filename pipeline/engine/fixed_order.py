"""Batch-invariant arithmetic for the GPU: a model's bits must not depend on how many models share
its batch (a sweep's score for a config is then the score the train stage gives it).

On CUDA two kinds of kernel depend on the batch's size. cuBLAS picks the kernel of a batched
product with one output column (the output unit, the linear path, their weight gradients) by the
number of matrices, and the kernels round differently; products with 8 or more columns kept one
kernel for 2 to 2,000 matrices on an H100 (bench/README.md). PyTorch splits a reduction (a bias
gradient, a per-model sum of squared errors) across threads and blocks by the tensor's total
size, so its order of additions depends on the number of models too. So on CUDA width-1 products
run padded to PAD_COLUMNS columns and per-model sums (bias gradients, the standardisation,
per-epoch scores) add in a fixed pairwise order of elementwise adds. The CPU's kernels do not
depend on the batch's size (tests compare every weight); there the plain operations run, and
their results are what dvc.lock records.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD_COLUMNS = 8


def enabled(t: torch.Tensor) -> bool:
    """Whether computations on t take the batch-invariant path (on CUDA)."""
    return t.is_cuda


def pairwise_sum(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t summed over dim (kept, size 1) by adding halves: zero-padded to a power of two, then
    log2 elementwise adds, so every element's order of additions depends on that dim's size
    alone, never on the other dims'."""
    dim = dim % t.dim()
    n = t.shape[dim]
    size = 1 << max(0, (n - 1).bit_length())
    if size != n:
        pad = [0, 0] * (t.dim() - 1 - dim) + [0, size - n]
        t = F.pad(t, pad)
    while t.shape[dim] > 1:
        half = t.shape[dim] // 2
        t = t.narrow(dim, 0, half) + t.narrow(dim, half, half)
    return t


def _sum_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """grad summed (pairwise) over the dims an operand of `shape` was broadcast along."""
    for d, size in enumerate(shape):
        if size == 1 and grad.shape[d] != 1:
            grad = pairwise_sum(grad, d)
    return grad


class _Add(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.shapes = a.shape, b.shape
        return a + b

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _sum_to(grad, ctx.shapes[0]), _sum_to(grad, ctx.shapes[1])


def add_bias(h: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h + b (b of h's rank, broadcast), with a batch-invariant gradient of b on CUDA."""
    return _Add.apply(h, b) if enabled(h) else h + b


def product(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Batched h @ w: h [M, B, k] (or [B, k] shared by all models) @ w [M, k, n] -> [M, B, n];
    on CUDA a narrow w (n < PAD_COLUMNS) is padded with zero columns, whose outputs are dropped."""
    if not enabled(h):
        return torch.bmm(h, w) if h.dim() == 3 else torch.matmul(h, w)
    h = h if h.dim() == 3 else h.expand(w.shape[0], -1, -1)
    n = w.shape[-1]
    if n >= PAD_COLUMNS:
        return torch.bmm(h, w)
    return torch.bmm(h, F.pad(w, (0, PAD_COLUMNS - n)))[..., :n]


def affine(b: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """b + h @ w, batched as in `product`: baddbmm (or matmul for shared rows) on the CPU,
    `product` and `add_bias` on CUDA."""
    if not enabled(h):
        return torch.baddbmm(b, h, w) if h.dim() == 3 else torch.matmul(h, w) + b
    return add_bias(product(h, w), b)


def row_sum(t: torch.Tensor) -> torch.Tensor:
    """t [M, N] summed over N: a per-model total in an order that does not depend on M."""
    return pairwise_sum(t, 1).squeeze(1) if enabled(t) else t.sum(1)
