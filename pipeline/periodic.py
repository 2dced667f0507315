"""Periodic embeddings of numeric inputs, for M models at once (Gorishniy et al. 2022, "On
Embeddings for Numerical Features in Tabular Deep Learning", the PLR embedding).

Each numeric column x of a model becomes ReLU(W [cos(2 pi c x), sin(2 pi c x)] + b): k learned
frequencies c per column (started from N(0, sigma)), then a linear map of its own per column to
`dim` units. The hidden layers see those units in place of the raw column, so the network can bend
each feature's effect before features meet; the wide (linear) path still sees the raw inputs.
Columns with at most two distinct values (the one-hot levels, the has-a-feature flags) are left
as they are: a periodic function of a 0/1 value is just another 0/1 value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from pipeline import fixed_order
from pipeline.counter_rng import stream_generator

PERIODIC_STREAM = 0x9E7  # seeds the embeddings apart from the layers' init and the adapters


def embedded_columns(x: torch.Tensor) -> torch.Tensor:
    """Indices of x's [N, d] columns with more than two distinct values (the numeric ones)."""
    return torch.tensor([j for j in range(x.shape[1]) if torch.unique(x[:, j]).numel() > 2],
                        dtype=torch.int64)


def init_periodic(seeds: Sequence[int], n_columns: int, frequencies: int, dim: int,
                  sigma: float) -> list[torch.Tensor]:
    """[frequencies [M, F, k], weight [M, F, 2k * dim], bias [M, F, dim]] from each model's
    own seed: frequencies ~ N(0, sigma), the linear maps as nn.Linear(2k, dim) would start."""
    bound = 1.0 / math.sqrt(2 * frequencies)
    parts: list[list[torch.Tensor]] = [[], [], []]
    for seed in seeds:
        gen = stream_generator(seed, PERIODIC_STREAM)
        parts[0].append(torch.randn(n_columns, frequencies, generator=gen) * sigma)
        parts[1].append((torch.rand(n_columns, 2 * frequencies * dim, generator=gen) * 2 - 1)
                        * bound)
        parts[2].append((torch.rand(n_columns, dim, generator=gen) * 2 - 1) * bound)
    return [torch.stack(p) for p in parts]


def embedded_width(n_inputs: int, n_columns: int, dim: int) -> int:
    """Width of the hidden layers' input: the columns left as they are, then F x dim units."""
    return n_inputs - n_columns + n_columns * dim


@dataclass
class Periodic:
    """The embeddings of M models: which columns, and each model's parameters."""

    n_inputs: int  # d, the width of x
    columns: torch.Tensor  # [F] int64, shared by the models
    frequencies: torch.Tensor  # [M, F, k]
    weight: torch.Tensor  # [M, F, 2k * dim]
    bias: torch.Tensor  # [M, F, dim]
    # (embedded, kept-as-is) column indices per device, made once: a CUDA graph may not copy
    # from the host or sync, which building them on every call would do
    _indices: dict = field(default_factory=dict, repr=False, compare=False)

    def indices(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._indices:
            embedded = set(self.columns.tolist())
            kept = [j for j in range(self.n_inputs) if j not in embedded]
            self._indices[key] = (self.columns.to(device),
                                  torch.tensor(kept, dtype=torch.int64, device=device))
        return self._indices[key]

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [self.frequencies, self.weight, self.bias]

    def select(self, models: slice | torch.Tensor) -> Periodic:
        return Periodic(self.n_inputs, self.columns, *(t[models] for t in self.tensors),
                        self._indices)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, B, d] (or [B, d] shared by all models) -> [M, B, d - F + F * dim]."""
        n_models, n_cols, k = self.frequencies.shape
        dim = self.bias.shape[2]
        x = x if x.dim() == 3 else x.expand(n_models, -1, -1)
        columns, kept = self.indices(x.device)
        angle = fixed_order.mul((2 * math.pi) * x[:, :, columns, None],
                                self.frequencies[:, None])  # [M, B, F, k]
        waves = torch.cat([torch.cos(angle), torch.sin(angle)], dim=3)  # [M, B, F, 2k]
        units = fixed_order.einsum("mbfj,mfjd->mbfd", waves,
                                   self.weight.view(n_models, n_cols, 2 * k, dim))
        units = torch.relu(fixed_order.add_bias(units, self.bias[:, None]))
        return torch.cat([x[:, :, kept], units.flatten(2)], dim=2)
