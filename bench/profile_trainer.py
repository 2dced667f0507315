"""Where the batched trainer's time goes: torch.profiler's top kernels for M models, E epochs.

    python bench/profile_trainer.py [--models 1000] [--epochs 5] [--device auto]

Prints the profiler's table (device time on CUDA, CPU time on the CPU), sorted by total time.
"""

from __future__ import annotations

import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split

import argparse
import dataclasses

import torch
from common import fold_masks, load_data

from pipeline.engine.device import resolve_device
from pipeline.engine.trainer import train_batched
from pipeline.members.mlp.configs import architecture_of, per_model_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="train.compile (CUDA)")
    args = parser.parse_args()
    params, data = load_data()
    tp = params.train
    device = resolve_device(args.device)
    x = torch.tensor(data.x_train, device=device)[None]  # [1, N, d]: one encoding
    y = torch.tensor(data.y_train, device=device)
    train_mask, val_mask = fold_masks(len(y), args.models, tp.folds)
    arch = architecture_of(tp)
    per_model = per_model_settings([dataclasses.replace(tp, max_epochs=args.epochs, patience=0)],
                                   list(range(args.models)))
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    # Eager steps, so the profiler sees each kernel (a replayed graph shows as one launch).
    train_batched(x, y, train_mask, val_mask, arch, per_model, cuda_graph=False,
                  compile_kernels=args.compile)
    with torch.profiler.profile(activities=activities) as prof:
        train_batched(x, y, train_mask, val_mask, arch, per_model, cuda_graph=False,
                      compile_kernels=args.compile)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows))


if __name__ == "__main__":
    main()
