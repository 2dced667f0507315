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


@pytest.fixture
def ames_sample() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small slice of the real competition files (train 120 rows, test 60 rows)."""
    train = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_train.csv").iloc[:120]
    test = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_test.csv").iloc[:60]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def repo_params(preprocess: dict | None = None, **train_updates):
    """params.yaml of this checkout, validated, with some preprocess.* and train.* values
    replaced."""
    from pipeline.params import parse_params

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
