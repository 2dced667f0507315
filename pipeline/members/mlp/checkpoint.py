"""The MLP's checkpoint format: one file per model (weights + config, loadable with
torch.load(weights_only=True)) and a manifest listing them, so a stray *.pt is never loaded."""

from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import torch

from pipeline.common.atomic import atomic_path
from pipeline.common.errors import PipelineError
from pipeline.engine.stacked_mlp import StackedModels

MANIFEST = "models.json"  # the list of model files the train stage wrote


def save_models(models: StackedModels, out_dir: str | os.PathLike, config: dict) -> list[Path]:
    """One file per model (weights + config), loadable with torch.load(weights_only=True).

    Tensors are cloned (a slice would drag the whole stacked storage into every file) and
    serialised in memory first: torch.save records the file name it writes to, and a
    temporary name would make identical models differ byte for byte.
    """
    out_dir = Path(out_dir)
    paths = []
    for i, name in enumerate(models.names):
        one = models.select(slice(i, i + 1))
        payload = {
            "weights": [w[0].detach().cpu().clone() for w in one.weights],
            "biases": [b[0].detach().cpu().clone() for b in one.biases],
            "activation": models.activation,
            "linear_skip": models.linear_skip,
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
