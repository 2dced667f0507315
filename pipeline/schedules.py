"""Per-epoch schedules of the learning rate and the regularisers (after RealMLP, Holzmueller et
al. 2024, which anneals the learning rate and holds dropout and weight decay for half of training,
then anneals them too).

A schedule multiplies a model's setting by a factor of its epoch and its own max_epochs:
  constant   1
  cosine     (1 + cos(pi t)) / 2, t = epoch / max_epochs: from 1 down towards 0
  flat_cos   1 for the first half, then a cosine from 1 down towards 0 over the second half
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where the tensors are made: params.py reads the names
    import torch

LR_SCHEDULES = ("constant", "cosine")
REG_SCHEDULES = ("constant", "flat_cos")
KINDS = tuple(dict.fromkeys(LR_SCHEDULES + REG_SCHEDULES))  # every schedule, coded by index


def factor(kind: str, epoch: int, max_epochs: int) -> float:
    """The multiplier of one model's setting at `epoch` (0-based)."""
    t = epoch / max_epochs
    if kind == "cosine":
        return (1 + math.cos(math.pi * t)) / 2
    if kind == "flat_cos":
        return 1.0 if t < 0.5 else (1 + math.cos(math.pi * (2 * t - 1))) / 2
    return 1.0


def factors(kinds: torch.Tensor, epoch: int, max_epochs: torch.Tensor) -> torch.Tensor:
    """`factor` for M models at once: kinds [M] (indices into KINDS), max_epochs [M] -> [M]
    float64, the same numbers `factor` gives."""
    import torch

    t = epoch / max_epochs.to(torch.float64)
    cosine = (1 + torch.cos(math.pi * t)) / 2
    flat_cos = torch.where(t < 0.5, 1.0, (1 + torch.cos(math.pi * (2 * t - 1))) / 2)
    return torch.where(kinds == KINDS.index("cosine"), cosine,
                       torch.where(kinds == KINDS.index("flat_cos"), flat_cos, 1.0))


def kind_codes(kinds, n_models: int, device: torch.device) -> torch.Tensor:
    """[M] indices into KINDS; None means constant for every model."""
    import torch

    names = ["constant"] * n_models if kinds is None else list(kinds)
    return torch.tensor([KINDS.index(k) for k in names], dtype=torch.int64, device=device)
