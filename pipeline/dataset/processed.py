"""The preprocess stage's output, data/processed/, written and read here alone.

`Processed` is what preprocessing gives (pipeline/dataset/matrices.py) and `save` writes:
train.npz (x: the first encoding, which the blend's other families see; y: log price; id;
outlier: the preprocess.outlier_* rows; with several MLP encodings also views [V, N, width],
view_widths and view_names), test.npz (x, id, views), transform.joblib (one fitted transform per
encoding) and features.json (the first encoding's column names). The stages read the files back
with load_train / load_test (the npz arrays by those names) and mlp_inputs."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np

from pipeline.common.atomic import atomic_path, write_text
from pipeline.common.inputs import read_npz
from pipeline.dataset.views import Views


@dataclass(frozen=True)
class Processed:
    """Preprocessed train and test houses: every encoding's matrices and its fitted transform."""

    x_train: np.ndarray        # [N, F] float32, the first encoding
    y_train: np.ndarray        # [N] log price
    id_train: np.ndarray       # [N] Id
    outlier: np.ndarray        # [N] bool, the preprocess.outlier_* rows
    x_test: np.ndarray         # [T, F]
    id_test: np.ndarray        # [T]
    feature_names: list[str]   # the first encoding's F column names
    transforms: list           # one fitted transform per encoding
    mlp_train: Views           # the MLP's inputs: every encoding (or just the first)
    mlp_test: Views
    view_names: list[list[str]]  # each encoding's column names

    @property
    def transform(self):
        """The first encoding's fitted transform (the other families' columns)."""
        return self.transforms[0]

    def save(self, out_dir: str | os.PathLike) -> None:
        """Write data/processed/'s four files, each renamed into place once complete."""
        out_dir = Path(out_dir)
        views_train, views_test = {}, {}
        if len(self.mlp_train) > 1:
            width = self.mlp_train.x.shape[2]
            names = np.array([n + [""] * (width - len(n)) for n in self.view_names], dtype=str)
            views_train = {"views": self.mlp_train.x,
                           "view_widths": np.array(self.mlp_train.widths, dtype=np.int64),
                           "view_names": names}
            views_test = {"views": self.mlp_test.x}
        with atomic_path(out_dir / "train.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, x=self.x_train, y=self.y_train, id=self.id_train, outlier=self.outlier,
                     **views_train)
        with atomic_path(out_dir / "test.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, x=self.x_test, id=self.id_test, **views_test)
        with atomic_path(out_dir / "transform.joblib") as tmp:
            joblib.dump(self.transforms, tmp)
        write_text(out_dir / "features.json", json.dumps(self.feature_names, indent=1) + "\n")


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
