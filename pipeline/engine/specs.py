"""What the batched trainer is given and gives back: the shared architecture, the per-model
settings (each an [M] tensor) and the trained result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pipeline.engine.stacked_mlp import StackedModels


@dataclass(frozen=True)
class Architecture:
    """What all models trained together share."""

    hidden: tuple[int, ...]
    activation: str
    optimizer: str
    batch_size: int
    linear_skip: bool = False


@dataclass(frozen=True)
class PerModel:
    """Per-model settings, one entry per model."""

    seeds: Sequence[int]
    lr: Sequence[float]
    weight_decay: Sequence[float]
    l1: Sequence[float]  # on the MLP's weights
    dropout: Sequence[float]
    max_epochs: Sequence[int]
    patience: Sequence[int]  # 0: no early stopping, keep the last epoch
    l1_skip: Sequence[float] | None = None  # on the linear skip path; None: the same as l1
    # Huber loss beyond this residual, in log price (None or 0: squared error); see
    # `squared_or_huber`
    huber_delta: Sequence[float] | None = None
    # With views (x [V, N, W], pipeline/dataset/views.py): the one each model reads
    view: Sequence[int] | None = None

    def __len__(self) -> int:
        return len(self.seeds)

    @staticmethod
    def repeat(seeds: Sequence[int], **scalars) -> PerModel:
        return PerModel(seeds=list(seeds), **{k: [v] * len(seeds) for k, v in scalars.items()})


@dataclass
class TrainResult:
    models: StackedModels  # best-epoch weights, on the CPU
    train_rmse: torch.Tensor  # [epochs, M] log-RMSE on the model's training rows; NaN once stopped
    val_rmse: torch.Tensor  # [epochs, M] log-RMSE on its validation rows; NaN once stopped/no rows
    best_epoch: torch.Tensor  # [M], 0-based
    epochs_run: torch.Tensor  # [M]
    epoch_mode: str = "eager"  # how the training steps ran: eager, or replayed as a CUDA graph
    stop_rmse: torch.Tensor | None = None  # [epochs, M] on the rows that pick the best epoch

    def select(self, models: slice) -> TrainResult:
        """The results of a contiguous range of models (e.g. one config of a sweep)."""
        return TrainResult(self.models.select(models), self.train_rmse[:, models],
                           self.val_rmse[:, models], self.best_epoch[models],
                           self.epochs_run[models], self.epoch_mode,
                           None if self.stop_rmse is None else self.stop_rmse[:, models])
