"""Wall time of a sweep: C configs x K folds x E epochs of the default architecture family.

    python bench/sweep_throughput.py [--configs 20] [--epochs 100] [--device auto]

Every config trains for exactly E epochs (no early stopping), so the time is the worst case of
a real sweep. Configs differ in lr, weight decay, L1 and dropout (per-model scalars), so they all
train in one batched group, as `python -m pipeline.search.sweep` would run them.
"""

from __future__ import annotations

import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split

import argparse
import dataclasses
import datetime
import time

import numpy as np
import torch
from common import device_name, load_data, markdown_table, sync

from pipeline.engine.device import resolve_device
from pipeline.members.mlp.fit import fit_mlp_configs
from pipeline.scoring.folds import plan_folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true",
                        help="train.compile: fuse elementwise work with torch.compile (CUDA)")
    args = parser.parse_args()

    params, data = load_data()
    device = resolve_device(args.device)
    rng = np.random.default_rng(0)
    base = dataclasses.replace(params.train, n_seeds=1, max_epochs=args.epochs, patience=0,
                               compile=args.compile)
    configs = [dataclasses.replace(base, lr=float(10 ** rng.uniform(-4, -2.5)),
                                   weight_decay=float(10 ** rng.uniform(-2, 0.5)),
                                   l1=float(10 ** rng.uniform(-6, -3)),
                                   dropout=float(rng.uniform(0, 0.6)))
               for _ in range(args.configs)]
    plan = plan_folds(len(data.y_train), data.outlier, base, len(data.mlp_train))
    sync(device)
    started = time.perf_counter()
    results = fit_mlp_configs(data.mlp_train, data.y_train, plan, configs, device,
                              label="bench")
    sync(device)
    seconds = time.perf_counter() - started
    models = args.configs * base.folds
    print(f"# Sweep wall time, {device_name(device)}, torch {torch.__version__}, "
          f"{datetime.date.today()}")
    print()
    print(markdown_table(
        ["configs", "folds", "epochs", "models", "architecture", "steps run", "seconds",
         "model-epochs/s"],
        [[args.configs, base.folds, args.epochs, models,
          f"{list(base.hidden)} skip={base.linear_skip}", results[0].epoch_mode, f"{seconds:.1f}",
          f"{models * args.epochs / seconds:,.0f}"]]))


if __name__ == "__main__":
    main()
