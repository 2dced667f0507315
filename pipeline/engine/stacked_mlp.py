"""M independent MLPs held as one: every weight has a leading model axis [M, in, out].

One batched matmul (`baddbmm`) runs a layer of all M models at once, which is what makes
training many folds x seeds x configs fast on a GPU. The same functions serve the linear model of
the d2l book (no hidden layers).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.common.atomic import atomic_path
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
MANIFEST = "models.json"  # the list of model files the train stage wrote


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

    def save_each(self, out_dir: str | os.PathLike, config: dict) -> list[Path]:
        """One file per model (weights + config), loadable with torch.load(weights_only=True).

        Tensors are cloned (a slice would drag the whole stacked storage into every file) and
        serialised in memory first: torch.save records the file name it writes to, and a
        temporary name would make identical models differ byte for byte.
        """
        out_dir = Path(out_dir)
        paths = []
        for i, name in enumerate(self.names):
            one = self.select(slice(i, i + 1))
            payload = {
                "weights": [w[0].detach().cpu().clone() for w in one.weights],
                "biases": [b[0].detach().cpu().clone() for b in one.biases],
                "activation": self.activation,
                "linear_skip": self.linear_skip,
                **({} if one.view is None else {"view": int(one.view[0])}),
                **({} if one.feature_scale is None
                   else {"feature_scale": one.feature_scale[0].detach().cpu().clone()}),
                "y_mean": float(one.y_mean[0]),
                "y_std": float(one.y_std[0]),
                "name": name,
                "config": config,
            }
            path = out_dir / f"{name}.pt"
            buffer = io.BytesIO()
            torch.save(payload, buffer)
            with atomic_path(path) as tmp:
                tmp.write_bytes(buffer.getvalue())
            paths.append(path)
        manifest = json.dumps({"models": [p.name for p in paths]}, indent=1) + "\n"
        with atomic_path(out_dir / MANIFEST) as tmp:
            tmp.write_text(manifest, encoding="utf-8")
        return paths


def listed_model_paths(models_dir: str | os.PathLike) -> list[Path]:
    """The model files the train stage wrote, by its manifest: a stray *.pt is never loaded."""
    from pipeline.common.inputs import read_json

    models_dir = Path(models_dir)
    manifest = models_dir / MANIFEST
    names = read_json(manifest, "run the train stage first (dvc repro)").get("models")
    if not isinstance(names, list):
        raise PipelineError(f"{manifest}: no list of models; re-run the train stage (dvc repro)")
    paths = [models_dir / Path(str(name)).name for name in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing or not paths:
        raise PipelineError(f"{models_dir}: model files {', '.join(missing) or '(none)'} listed in "
                            f"{MANIFEST} are missing; re-run the train stage (dvc repro)")
    return paths


def load_models(paths: Sequence[str | os.PathLike]) -> StackedModels:
    """Stack saved model files (same architecture) back into one StackedModels."""
    if not paths:
        raise PipelineError("no model files found; run the train stage first (dvc repro)")
    payloads = []
    for path in paths:
        try:
            payloads.append(torch.load(path, map_location="cpu", weights_only=True))
        except pickle.UnpicklingError:  # torch's own text would suggest weights_only=False
            raise PipelineError(f"{path}: holds objects a weights-only load refuses (none of its "
                                "code ran); it is not a model file this project wrote: delete "
                                "it and re-run train (dvc repro)") from None
        except (OSError, RuntimeError, KeyError) as exc:
            raise PipelineError(f"{path}: not a readable model file ({exc}); re-run train") from exc
    shapes = {tuple(tuple(w.shape) for w in p["weights"]) for p in payloads}
    if len(shapes) != 1 or len({(p["activation"], p["linear_skip"], "view" in p,
                                 "feature_scale" in p)
                                for p in payloads}) != 1:
        raise PipelineError("model files differ in architecture; clear models/ and re-run train")
    n_weights, n_biases = len(payloads[0]["weights"]), len(payloads[0]["biases"])
    return StackedModels(
        weights=[torch.stack([p["weights"][i] for p in payloads]) for i in range(n_weights)],
        biases=[torch.stack([p["biases"][i] for p in payloads]) for i in range(n_biases)],
        activation=payloads[0]["activation"],
        y_mean=torch.tensor([p["y_mean"] for p in payloads], dtype=torch.float64),
        y_std=torch.tensor([p["y_std"] for p in payloads], dtype=torch.float64),
        names=[p["name"] for p in payloads],
        linear_skip=payloads[0]["linear_skip"],
        view=(torch.tensor([p["view"] for p in payloads], dtype=torch.int64)
              if "view" in payloads[0] else None),
        feature_scale=(torch.stack([p["feature_scale"] for p in payloads])
                       if "feature_scale" in payloads[0] else None),
    )
