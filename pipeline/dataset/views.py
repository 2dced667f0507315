"""The MLP's inputs when it trains on several encodings of the same houses (`preprocess.mlp_views`).

Each encoding ("view") is one matrix [N, w_v]. They travel as one array [V, N, W], zero-padded
on the right to the widest, with each view's own width beside it, so one batched model can hold
models that see different views: a model reads its view's slab. The padding columns are zeros
and start with zero weights (pipeline/stacked_mlp.init_weights), so their gradients are zero and
they never move: a model is the model it would be on its view alone, up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Views:
    x: np.ndarray  # [V, N, W], zero-padded
    widths: tuple[int, ...]  # [V]: each view's own number of columns

    @classmethod
    def of(cls, matrices: Sequence[np.ndarray]) -> Views:
        """Stack matrices with the same rows, padding the narrower ones with zero columns."""
        width = max(m.shape[1] for m in matrices)
        x = np.zeros((len(matrices), matrices[0].shape[0], width), dtype=matrices[0].dtype)
        for v, m in enumerate(matrices):
            x[v, :, :m.shape[1]] = m
        return cls(x, tuple(int(m.shape[1]) for m in matrices))

    @classmethod
    def coerce(cls, x: np.ndarray | Views) -> Views:
        """A plain matrix [N, d] is one view."""
        return x if isinstance(x, Views) else cls(x[None], (int(x.shape[1]),))

    def __len__(self) -> int:
        return len(self.widths)

    @property
    def n_rows(self) -> int:
        return self.x.shape[1]

    def matrix(self, view: int) -> np.ndarray:
        """View `view` without its padding, [N, w_v]."""
        return self.x[view, :, :self.widths[view]]

    def rows(self, rows) -> Views:
        return Views(self.x[:, rows], self.widths)

    def model_input(self):
        """The torch tensor models take, [V, N, W] (V = 1 for one encoding)."""
        import torch

        return torch.tensor(self.x)
