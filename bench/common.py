"""Shared setup for the bench scripts: the real competition data, preprocessed as params.yaml says."""

from __future__ import annotations

import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split

import platform
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.config.params import load_params
from pipeline.dataset.matrices import preprocess

ROOT = Path(__file__).resolve().parents[1]


def load_data(params_path: Path = ROOT / "params.yaml"):
    """(params, preprocess result) from the bundled CSVs; no DVC outputs needed."""
    params = load_params(params_path)
    train = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_train.csv")
    test = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_test.csv")
    return params, preprocess(train, test, params.preprocess)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fold_masks(n_rows: int, n_models: int, folds: int, seed: int = 0):
    """Model m gets fold m % folds of a shuffled K-fold split."""
    from sklearn.model_selection import KFold

    split = list(KFold(folds, shuffle=True, random_state=seed).split(np.arange(n_rows)))
    train = np.zeros((n_models, n_rows), dtype=bool)
    val = np.zeros((n_models, n_rows), dtype=bool)
    for m in range(n_models):
        tr, va = split[m % folds]
        train[m, tr] = True
        val[m, va] = True
    return torch.tensor(train), torch.tensor(val)
