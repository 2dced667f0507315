"""M independent MLPs held as one: every weight has a leading model axis [M, in, out].

One batched matmul (`baddbmm`) runs a layer of all M models at once, which is what makes
training many folds x seeds x configs fast on a GPU. The same functions serve the linear model of
the d2l book (no hidden layers).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.common.errors import PipelineError
from pipeline.engine import fixed_order

ACTIVATION_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "silu": F.silu,
}
# Largest [models x rows x width] block evaluated at once; bounds memory for large M, not results.
EVAL_BLOCK_ELEMENTS = 1 << 25


def layer_sizes(n_features: int, hidden: Sequence[int]) -> list[int]:
    """Widths from input to output."""
    return [n_features, *hidden, 1]


def init_weights(seeds: Sequence[int], sizes: Sequence[int], linear_skip: bool = False,
                 n_inputs: Sequence[int] | None = None
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """nn.Linear's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from each model's own seed.

    With `linear_skip`, a last weight [M, in, 1] (zeros) maps the input straight to the output.
    `n_inputs` [M]: a model whose input is narrower than sizes[0] (a view padded to the widest,
    pipeline/dataset/views.py) starts as a model of that width, its first layer's extra rows zero.
    """
    per_model = []
    for model, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(int(seed))
        layers = []
        for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            rows = fan_in if n_inputs is None or layer > 0 else int(n_inputs[model])
            bound = 1.0 / math.sqrt(rows)
            w = (torch.rand(rows, fan_out, generator=gen) * 2 - 1) * bound
            b = (torch.rand(1, fan_out, generator=gen) * 2 - 1) * bound
            layers.append((F.pad(w, (0, 0, 0, fan_in - rows)), b))
        per_model.append(layers)
    weights = [torch.stack([m[i][0] for m in per_model]) for i in range(len(sizes) - 1)]
    biases = [torch.stack([m[i][1] for m in per_model]) for i in range(len(sizes) - 1)]
    if linear_skip:
        weights.append(torch.zeros(len(seeds), sizes[0], 1))
    return weights, biases


def forward(x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
            activation: str, dropout: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
            linear_skip: bool = False, feature_scale: torch.Tensor | None = None) -> torch.Tensor:
    """x [M, B, d] (or [B, d] shared by all models) -> [M, B] in the models' output units.

    With `linear_skip` the last weight is a linear path from input to output (wide and deep).
    With `feature_scale` [M, d] (fixed, not trained), the hidden layers see column j times the
    model's scale j; the linear path sees x itself. tests/reference_trainer.py is the same
    model written for one model with torch.nn.
    """
    act = ACTIVATION_FUNCTIONS[activation]
    layers = weights[:-1] if linear_skip else weights
    h = x if feature_scale is None else x * feature_scale[:, None, :]
    last = len(layers) - 1
    for i, (w, b) in enumerate(zip(layers, biases, strict=True)):
        h = fixed_order.affine(b, h, w)
        if i < last:
            h = act(h)
            if dropout is not None:
                h = h * dropout(i, h)
    if linear_skip:
        h = h + fixed_order.product(x, weights[-1])
    return h.squeeze(-1)


def predict_rows(x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                 activation: str, linear_skip: bool = False, view: torch.Tensor | None = None,
                 feature_scale: torch.Tensor | None = None) -> torch.Tensor:
    """Every model on every row of x [V, N, W] -> [M, N], in blocks of models to bound memory;
    `view` [M] says which encoding each model reads."""
    n_models = weights[0].shape[0]
    widest = max(max(w.shape[2] for w in weights), weights[0].shape[1])
    block = max(1, EVAL_BLOCK_ELEMENTS // max(1, x.shape[1] * widest))
    parts = []
    for start in range(0, n_models, block):
        sl = slice(start, start + block)
        rows = x[view[sl]]
        parts.append(forward(rows, [w[sl] for w in weights], [b[sl] for b in biases], activation,
                             linear_skip=linear_skip,
                             feature_scale=None if feature_scale is None else feature_scale[sl]))
    return torch.cat(parts)


@dataclass
class StackedModels:
    """Trained models ready to predict: weights plus each model's target scaling."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    activation: str
    y_mean: torch.Tensor  # [M], float64
    y_std: torch.Tensor  # [M], float64
    names: list[str]
    linear_skip: bool = False
    view: torch.Tensor | None = None  # [M] int64: the encoding each model reads (None: view 0)
    feature_scale: torch.Tensor | None = None  # [M, d]: fixed scales of the hidden layers' inputs

    @property
    def n_inputs(self) -> int:
        """The number of features the models take."""
        return self.weights[-1 if self.linear_skip else 0].shape[1]

    def predict_log_price(self, x: torch.Tensor) -> torch.Tensor:
        """[V, N, W] features (every encoding, Views.model_input) -> [M, N] predicted log prices
        (float64)."""
        view = (torch.zeros(len(self.names), dtype=torch.int64) if self.view is None
                else self.view)
        if x.dim() != 3:
            raise ValueError("x must be [views, rows, features] (Views.model_input)")
        if int(view.max()) >= x.shape[0]:
            raise PipelineError(f"the models take {int(view.max()) + 1} encodings of the "
                                f"features, the data has {x.shape[0]}; re-run preprocess and "
                                "train (dvc repro)")
        with torch.no_grad():
            raw = predict_rows(x.to(self.weights[0].dtype), self.weights, self.biases,
                               self.activation, self.linear_skip, view, self.feature_scale
                               ).to(torch.float64)
        return raw * self.y_std[:, None] + self.y_mean[:, None]

    def select(self, models: slice) -> StackedModels:
        """A contiguous range of the models."""
        return StackedModels([w[models] for w in self.weights], [b[models] for b in self.biases],
                             self.activation, self.y_mean[models], self.y_std[models],
                             self.names[models], self.linear_skip,
                             None if self.view is None else self.view[models],
                             None if self.feature_scale is None else self.feature_scale[models])
