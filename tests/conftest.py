import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Trainer tests run on each device this machine has: "cuda" is the CUDA-graph path, "cuda+compile"
# adds torch.compile; MODES is the epoch mode each should report.
NO_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=NO_GPU),
           pytest.param("cuda+compile", marks=NO_GPU)]
MODES = {"cpu": "eager", "cuda": "cuda graph", "cuda+compile": "cuda graph + torch.compile"}


@pytest.fixture
def repo_root() -> Path:
    return ROOT


def ames_slice() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small slice of the real competition files (train 120 rows, test 60 rows)."""
    train = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_train.csv").iloc[:120]
    test = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_test.csv").iloc[:60]
    return train.reset_index(drop=True), test.reset_index(drop=True)


@pytest.fixture
def ames_sample() -> tuple[pd.DataFrame, pd.DataFrame]:
    return ames_slice()


def repo_params(preprocess: dict | None = None, **train_updates):
    """params.yaml of this checkout, validated, with some preprocess.* and train.* values
    replaced."""
    from pipeline.config.params import parse_params

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["preprocess"].update(preprocess or {})
    raw["train"].update(train_updates)
    return parse_params(raw)


def synthetic_regression(n_rows=96, n_features=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    y = 12 + x @ rng.normal(scale=0.3, size=n_features) + 0.2 * np.tanh(x[:, 0] * x[:, 1])
    y = y + rng.normal(scale=0.05, size=n_rows)
    return x, y


# The sections of params.yaml as the stages see them (pipeline/config/params.py's dataclasses).
def _section_classes() -> dict[type, str]:
    from pipeline.config import params as p
    from pipeline.config.preprocess import PreprocessParams
    from pipeline.config.train import TrainParams
    return {p.DownloadParams: "download", PreprocessParams: "preprocess", TrainParams: "train",
            p.EnsembleParams: "ensemble", p.KaggleParams: "kaggle"}


def _read_by_the_stage(frame) -> bool:
    if frame.f_code.co_filename.endswith("dataclasses.py"):
        return False
    while frame is not None:
        if frame.f_code.co_name in ("parse_params", "__post_init__"):
            return False
        frame = frame.f_back
    return True


class ParamReads:
    """Records `section.key` for every params field the code reads while active. Reads made while
    params.yaml is parsed and checked (parse_params) and by dataclasses itself (`replace`, `asdict`
    copy every field) are not the stage's: a copy's fields count when the code reads them."""

    def __init__(self):
        self.read: set[str] = set()
        self._saved: dict[type, object] = {}

    def __enter__(self):
        import dataclasses

        read = self.read
        for cls, section in _section_classes().items():
            fields = {f.name for f in dataclasses.fields(cls)}
            self._saved[cls] = cls.__dict__.get("__getattribute__")

            def get(obj, name, _section=section, _fields=fields):
                if name in _fields and _read_by_the_stage(sys._getframe(1)):
                    read.add(f"{_section}.{name}")
                return object.__getattribute__(obj, name)

            cls.__getattribute__ = get
        from pipeline.config.members import MembersParams

        self._members_getattr = MembersParams.__getattr__

        def member(obj, name, _get=self._members_getattr):  # members.NAME: a family's section
            if _read_by_the_stage(sys._getframe(1)):
                read.add(f"members.{name}")
            return _get(obj, name)

        MembersParams.__getattr__ = member
        return self

    def __exit__(self, *exc):
        from pipeline.config.members import MembersParams

        MembersParams.__getattr__ = self._members_getattr
        for cls, saved in self._saved.items():
            if saved is None:
                del cls.__getattribute__
            else:
                cls.__getattribute__ = saved


SMALL_RUN = {"train": {"max_epochs": 3, "patience": 2, "device": "cpu", "folds": 2},
             "members": {"lgbm": {"n_estimators": 30}},
             "download": {"sources": ["data/bundled"]}}


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """Every dvc.yaml stage run once, in dvc.yaml's order, by its own command line (its CLI
    called in this process) in a copy of the project with short training (SMALL_RUN): the small
    trained run that tests read, and the params each stage read (ParamReads), by stage name."""
    import os
    import shutil

    root = tmp_path_factory.mktemp("small_run")
    shutil.copytree(ROOT / "data/bundled", root / "data/bundled")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in SMALL_RUN.items():
        for key, value in values.items():
            current = raw[section][key]
            raw[section][key] = {**current, **value} if isinstance(current, dict) else value
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    reads = {}
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for name, stage in stages.items():  # dvc.yaml lists them in the order they run
            module, *argv = stage["cmd"].split("python -m ", 1)[1].split()
            main = __import__(module, fromlist=["main"]).main
            with ParamReads() as recorder:
                main(argv)
            reads[name] = recorder.read
    finally:
        os.chdir(cwd)
    return root, reads


def train_in(train_params, average: str, root: Path, data_dir: Path | None = None, **extra):
    """The train stage on ROOT/processed (or data_dir), writing ROOT/models, ROOT/cv.json,
    ROOT/oof.csv and ROOT/live, as the tests lay out a tiny run."""
    from pipeline.stages.train import train

    return train(train_params, average, data_dir=data_dir or root / "processed",
                 models_dir=root / "models", metrics_path=root / "cv.json",
                 oof_path=root / "oof.csv", live_dir=root / "live", **extra)


def trained_tolerance(optimizer: str, lr: float) -> dict:
    """Tolerance for a weight that two float32 implementations trained, adding in other orders
    (the batched trainer against tests/reference_trainer.py, on any x86-64 CPU). rtol 1e-4:
    float32's 1.2e-7 per rounding, compounded over the few hundred steps these tests train.
    atol: where a weight's summed gradient cancels to its rounding noise, the rounding decides
    its sign; Adam(W) divides by the gradient's own scale, so that step moves the weight by up to
    lr either way (seen: 3e-5 on one weight of 32,896 on an AMD EPYC, lr 7.8e-4). SGD's step is
    the gradient times lr, so there the noise stays at rounding level (1e-5)."""
    return {"rtol": 1e-4, "atol": lr if optimizer in ("adam", "adamw") else 1e-5}
