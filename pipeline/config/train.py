"""The train section: the MLP's architecture, optimiser, early stopping, folds and seeds, and the
project's one Lasso setting (train.lasso_*)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from pipeline.config.checks import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_FOLDS,
    MAX_HIDDEN_WEIGHTS,
    MAX_LASSO_ALPHA,
    MAX_LAYERS,
    MAX_LR,
    MAX_N_SEEDS,
    MAX_SEED,
    MAX_WIDTH,
    check_bool,
    check_choice,
    check_number,
    fail,
)

ACTIVATIONS = ("relu", "gelu", "tanh", "silu")
OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class TrainParams:
    """K-fold cross-validation of an MLP on log price."""

    folds: int
    fold_seed: int
    seed: int
    n_seeds: int
    exclude_outliers: bool
    hidden: tuple[int, ...]
    linear_skip: bool
    skip_init: str
    lasso_input_power: float
    activation: str
    dropout: float
    weight_decay: float
    l1: float
    l1_skip: float
    huber_delta: float
    optimizer: str
    lr: float
    batch_size: int
    max_epochs: int
    patience: int
    early_stopping_holdout: float
    device: str
    compile: bool
    lasso_alpha: float
    lasso_max_iter: int
    lasso_tol: float
    clip_to_train_range: bool = True  # the test houses' features clamped to the training range

    def __post_init__(self):
        check_number("train.folds", self.folds, low=2, high=MAX_FOLDS, integer=True)
        check_number("train.fold_seed", self.fold_seed, low=0, high=MAX_SEED, integer=True)
        check_number("train.seed", self.seed, low=0, high=MAX_SEED, integer=True)
        check_number("train.n_seeds", self.n_seeds, low=1, high=MAX_N_SEEDS, integer=True)
        check_bool("train.exclude_outliers", self.exclude_outliers)
        hidden = list(self.hidden) if isinstance(self.hidden, list | tuple) else self.hidden
        if not isinstance(hidden, list):
            fail("train.hidden", f"must be a list of layer widths ([] = linear model), got {hidden!r}")
        if len(hidden) > MAX_LAYERS:
            fail("train.hidden", f"must have at most {MAX_LAYERS} layers, got {len(hidden)}")
        for width in hidden:
            check_number("train.hidden", width, low=1, high=MAX_WIDTH, integer=True)
        if sum(a * b for a, b in itertools.pairwise(hidden)) > MAX_HIDDEN_WEIGHTS:
            fail("train.hidden", f"has more than {MAX_HIDDEN_WEIGHTS:,} weights between its "
                  f"layers, got {hidden!r}")
        object.__setattr__(self, "hidden", tuple(hidden))
        check_bool("train.linear_skip", self.linear_skip)
        check_choice("train.skip_init", self.skip_init, ("zeros", "lasso"))
        if self.skip_init == "lasso" and not self.linear_skip:
            fail("train.skip_init", "lasso warm-starts the linear skip path; set "
                  "train.linear_skip=true or train.skip_init=zeros")
        check_number("train.lasso_input_power", self.lasso_input_power, low=0)
        check_choice("train.activation", self.activation, ACTIVATIONS)
        check_number("train.dropout", self.dropout, low=0, high=1, high_open=True)
        check_number("train.weight_decay", self.weight_decay, low=0)
        check_number("train.l1", self.l1, low=0)
        check_number("train.l1_skip", self.l1_skip, low=0)
        check_number("train.huber_delta", self.huber_delta, low=0)
        check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        check_number("train.lr", self.lr, low=0, low_open=True, high=MAX_LR)
        check_number("train.batch_size", self.batch_size, low=1, high=MAX_BATCH_SIZE, integer=True)
        check_number("train.max_epochs", self.max_epochs, low=1, high=MAX_EPOCHS, integer=True)
        check_number("train.patience", self.patience, low=0, high=MAX_EPOCHS, integer=True)
        check_number("train.early_stopping_holdout", self.early_stopping_holdout, low=0, high=0.5)
        check_choice("train.device", self.device, ("auto", "cpu", "cuda"))
        check_bool("train.compile", self.compile)
        check_number("train.lasso_alpha", self.lasso_alpha, low=0, low_open=True, high=MAX_LASSO_ALPHA)
        check_number("train.lasso_max_iter", self.lasso_max_iter, low=1, high=1_000_000, integer=True)
        check_number("train.lasso_tol", self.lasso_tol, low=0, low_open=True)
        check_bool("train.clip_to_train_range", self.clip_to_train_range)
