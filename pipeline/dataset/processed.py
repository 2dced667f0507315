"""The preprocess stage's output as the other stages read it: the matrices, the MLP's
encodings and the feature names (data/processed/, written by pipeline/stages/preprocess.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.common.inputs import read_npz
from pipeline.dataset.views import Views


def mlp_inputs(data: dict[str, np.ndarray], widths: Sequence[int] | None = None) -> Views:
    """The MLP's inputs in a loaded train.npz / test.npz: its views, or its one matrix. A test
    file's views take the widths of the train file's (`widths`)."""
    if "views" not in data:
        return Views.coerce(data["x"])
    widths = data["view_widths"] if widths is None else widths
    return Views(data["views"], tuple(int(w) for w in widths))


def load_train(data_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    return read_npz(Path(data_dir) / "train.npz", "run the preprocess stage first (dvc repro)")


def load_test(data_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    return read_npz(Path(data_dir) / "test.npz", "run the preprocess stage first (dvc repro)")


def read_feature_names(data_dir: str | os.PathLike, data: dict, views: Views
                       ) -> list[list[str]]:
    """Each view's feature names (train.npz's view_names, or features.json with one view), or
    f0, f1, ... where they are missing."""
    if "view_names" in data:
        return [[str(n) for n in names[:width]]
                for names, width in zip(data["view_names"], views.widths, strict=True)]
    path = Path(data_dir) / "features.json"
    if path.is_file():
        names = json.loads(path.read_text(encoding="utf-8"))
        if len(names) == views.widths[0]:
            return [[str(n) for n in names]]
    return [[f"num__f{i}" for i in range(width)] for width in views.widths]
