"""Counter-based random numbers: a pure function of (model seed, stream, epoch, step, index).

Each model's shuffles and dropout masks depend on its own seed alone, never on which other models
share the batch or on a generator's hidden state. The same integers come out on CPU and GPU, and
the draws are plain tensor ops, so they need no host round-trip and can live inside a CUDA graph.
"""

from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
# Multipliers of a 32-bit integer finaliser; both < 2**31 so int64 products never overflow.
_MUL1 = 0x7FEB352D
_MUL2 = 0x5BD1E995
_GOLDEN = 0x9E3779B9

STREAM_SHUFFLE = 1
STREAM_DROPOUT = 100  # + layer index


def mix32(x: torch.Tensor) -> torch.Tensor:
    """Avalanche a 32-bit value held in an int64 tensor."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = (x * _MUL1) & MASK32
    x = x ^ (x >> 15)
    x = (x * _MUL2) & MASK32
    return x ^ (x >> 16)


def hash32(seed: torch.Tensor, *counters: int | torch.Tensor) -> torch.Tensor:
    """Hash a seed tensor with counters (ints or broadcastable int64 tensors) into [0, 2**32)."""
    return extend_hash(mix32(seed.to(torch.int64) + _GOLDEN), *counters)


def extend_hash(h: torch.Tensor, *counters: int | torch.Tensor) -> torch.Tensor:
    """Mix more counters into a hash: hash32(s, a, b) == extend_hash(hash32(s, a), b).

    Lets the counters shared by a whole block (model, layer, epoch, step) be mixed on [M] values,
    and only the last one (the element index) at full [M, batch, width] size.
    """
    for counter in counters:
        h = mix32((h ^ counter) + _GOLDEN)
    return h


def uniform(h: torch.Tensor) -> torch.Tensor:
    """Map 32-bit hashes to float32 in [0, 1) exactly (24 significant bits)."""
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))


def shuffle_order(seeds: torch.Tensor, member: torch.Tensor, epoch: int | torch.Tensor) -> torch.Tensor:
    """Per-model permutation of the rows: each model's member rows first, in random order.

    seeds [M] int64, member [M, N] bool -> [M, N] row indices. Ties between equal hashes are
    broken by row index (stable sort), so the order is the same on every device.
    """
    rows = torch.arange(member.shape[1], device=member.device)
    keys = hash32(seeds[:, None], STREAM_SHUFFLE, epoch, rows[None, :])
    keys = torch.where(member, keys, keys + (1 << 32))  # non-members sort after every member
    return torch.sort(keys, dim=1, stable=True).indices


def dropout_keep(seeds: torch.Tensor, layer: int, epoch: int | torch.Tensor,
                 step: int | torch.Tensor, batch: int, width: int,
                 rate: torch.Tensor, keep_mask_fn=None) -> torch.Tensor:
    """Inverted-dropout multipliers [M, batch, width]: 0 or 1/(1-rate), per model's own rate [M].

    `keep_mask_fn` replaces `keep_mask` (the trainer passes a torch.compile'd copy on CUDA).
    """
    block = hash32(seeds, STREAM_DROPOUT + layer, epoch, step)  # [M]
    return (keep_mask_fn or keep_mask)(block, batch, width, rate)


def keep_mask(block: torch.Tensor, batch: int, width: int, rate: torch.Tensor) -> torch.Tensor:
    """The full-size part of dropout_keep: mix each element's index into its block's hash."""
    device = block.device
    index = (torch.arange(batch, device=device)[:, None] * width
             + torch.arange(width, device=device)[None, :])
    u = uniform(extend_hash(block[:, None, None], index[None]))
    rate = rate.to(torch.float32)[:, None, None]
    return (u >= rate).to(torch.float32) / (1.0 - rate)
