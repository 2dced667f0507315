"""Model-epochs per second: a d2l-style loop (DataLoader, one model at a time) against the batched
trainer, at several model counts, with the roofline floor measured for this device.

    python bench/trainer_throughput.py [--device auto] [--sizes 5,50,500,1000] [--one-view] [--params FILE]

With preprocess.mlp_views, model m reads view m % V of the padded [V, N, W] inputs, as the train
stage does; --one-view times the first view alone at the same padded width W (the old default's
work per model, plus the zero columns). Prints a markdown table. The loop trains models one
after another, so its rate does not depend on M: it is measured on a few models and reported
beside every M.
"""

from __future__ import annotations

import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split

import argparse
import dataclasses
import datetime
import itertools
import math
import time
from pathlib import Path

import torch
from common import ROOT, device_name, fold_masks, load_data, markdown_table, sync
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pipeline.engine.batched_optim import ADAM_BETAS
from pipeline.engine.device import resolve_device
from pipeline.engine.trainer import train_batched
from pipeline.members.mlp.configs import architecture_of, per_model_settings

ACT = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}
OPT = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def make_net(n_features, tp) -> nn.Sequential:
    layers, width = [], n_features
    for h in tp.hidden:
        layers += [nn.Linear(width, h), ACT[tp.activation](), nn.Dropout(tp.dropout)]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 1))


def loop_rate(x, y, train_mask, tp, device, n_models, epochs) -> float:
    """The d2l book's style: a DataLoader and an nn.Sequential per model, trained in turn."""
    started = time.perf_counter()
    for m in range(n_models):
        torch.manual_seed(m)
        net = make_net(x.shape[1], tp).to(device)
        opt = OPT[tp.optimizer](net.parameters(), lr=tp.lr, weight_decay=tp.weight_decay)
        rows = train_mask[m].nonzero().squeeze(1)
        loader = DataLoader(TensorDataset(x[rows].cpu(), y[rows].float().cpu()),
                            batch_size=tp.batch_size, shuffle=True)
        for _ in range(epochs):
            for xb, yb in loader:  # the book keeps the data on the host and moves each batch
                xb, yb = xb.to(device), yb.to(device)
                loss = nn.functional.mse_loss(net(xb).squeeze(-1), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
    sync(device)
    return n_models * epochs / (time.perf_counter() - started)


def batched_rate(x, y, train_mask, val_mask, tp, device, n_models, epochs, cuda_graph=True,
                 compile_kernels=False) -> tuple[float, float]:
    """(end-to-end, steady-state) model-epochs/s of the batched trainer.

    End to end counts everything: per-model init, the first (warm-up) epoch, graph capture, the
    per-epoch evaluation. Steady state is the median epoch after the first two, from the
    per-epoch callback (which follows the trainer's one host sync per epoch).
    """
    arch = architecture_of(tp)
    n_views = x.shape[0]
    per_model = per_model_settings([dataclasses.replace(tp, max_epochs=epochs, patience=0)],
                                   list(range(n_models)),
                                   None if n_views == 1 else [m % n_views for m in range(n_models)])
    stamps = []
    sync(device)
    started = time.perf_counter()
    train_batched(x, y, train_mask, val_mask, arch, per_model, cuda_graph=cuda_graph,
                  compile_kernels=compile_kernels,
                  on_epoch=lambda *_: stamps.append(time.perf_counter()),
                  view_widths=None if n_views == 1 else [x.shape[2]] * n_views,
                  # the default's fixed input scales (train.lasso_input_power): their values do
                  # not change the work, so ones stand in for the Lasso fits
                  feature_scale=(torch.ones(n_models, x.shape[-1], device=device)
                                 if tp.lasso_input_power else None))
    sync(device)
    total = n_models * epochs / (time.perf_counter() - started)
    gaps = sorted(b - a for a, b in itertools.pairwise(stamps[1:]))
    steady = n_models / gaps[len(gaps) // 2] if gaps else total
    return total, steady


def measured_peaks(device) -> tuple[float, float]:
    """(float32 matmul FLOP/s, copy bandwidth bytes/s) this device reaches, measured here."""
    n = 4096 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    sync(device)
    reps = 20 if device.type == "cuda" else 3
    started = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    flops = 2 * n ** 3 * reps / (time.perf_counter() - started)
    src = torch.empty(64 << 20 if device.type == "cuda" else 16 << 20, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    sync(device)
    started = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    sync(device)
    bandwidth = 2 * src.numel() * 4 * reps / (time.perf_counter() - started)
    return flops, bandwidth


def floor_rate(n_features, n_train_rows, tp, flops, bandwidth) -> tuple[float, str]:
    """Roofline bound in model-epochs/s: Adam's state traffic (read p, g, m, v; write p, m, v per
    step, fp32) against bandwidth, and forward+backward matmul work against FLOP/s."""
    sizes = [n_features, *tp.hidden, 1]
    n_params = sum(i * o + o for i, o in itertools.pairwise(sizes))
    n_weights = sum(i * o for i, o in itertools.pairwise(sizes))
    steps = math.ceil(n_train_rows / tp.batch_size)
    memory_s = steps * 7 * 4 * n_params / bandwidth
    compute_s = 6 * n_train_rows * n_weights / flops
    return 1 / max(memory_s, compute_s), "memory" if memory_s > compute_s else "compute"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml",
                        help="time the config of another params file (e.g. an older default)")
    parser.add_argument("--sizes", default="5,50,500,1000")
    parser.add_argument("--epochs", type=int, default=0,
                        help="epochs per timing (default: 20 on GPU; 5, or 1 for M >= 500, on CPU)")
    parser.add_argument("--loop-models", type=int, default=3)
    parser.add_argument("--one-view", action="store_true",
                        help="time the first of preprocess.mlp_views' encodings alone")
    parser.add_argument("--tf32", action="store_true",
                        help="let CUDA matmuls use TF32 (10-bit mantissa inputs; not what train does)")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = args.tf32

    params, data = load_data(args.params)
    tp = params.train
    device = resolve_device(args.device)
    views = data.mlp_train
    x = torch.tensor(views.x[:1] if args.one_view else views.x, device=device)  # [V, N, W]
    y = torch.tensor(data.y_train, device=device)
    sizes = [int(s) for s in args.sizes.split(",")]
    flops, bandwidth = measured_peaks(device)
    train_mask, _ = fold_masks(len(y), 1, tp.folds)
    floor, bound = floor_rate(x.shape[-1], int(train_mask[0].sum()), tp, flops, bandwidth)

    def epochs_for(m):
        if args.epochs:
            return args.epochs
        return 50 if device.type == "cuda" else (5 if m < 500 else 3)

    # Warm-up (CUDA context, kernels, allocator, torch.compile's one-off compilation) outside
    # every timing.
    tm, vm = fold_masks(len(y), 5, tp.folds)
    batched_rate(x, y, tm, vm, tp, device, 5, 3)
    modes = {"eager": (False, False)}
    if device.type == "cuda":
        started = time.perf_counter()
        batched_rate(x, y, tm, vm, tp, device, 5, 3, True, True)
        compile_seconds = time.perf_counter() - started
        modes = {"cuda graph + torch.compile": (True, True), "cuda graph": (True, False),
                 "eager": (False, False)}
    loop = loop_rate(x[0], y, train_mask.expand(args.loop_models, -1), tp, device,
                     args.loop_models, 3 if device.type == "cuda" else epochs_for(5))
    rows = []
    for m in sizes:
        tm, vm = fold_masks(len(y), m, tp.folds)
        for mode, (graph, fuse) in modes.items():
            total, steady = batched_rate(x, y, tm, vm, tp, device, m, epochs_for(m), graph, fuse)
            rows.append([m, mode, f"{loop:,.0f}", f"{total:,.0f}",
                         f"{steady:,.0f}", f"{steady / loop:,.1f}x", f"{floor:,.0f} ({bound})",
                         f"{steady / floor:.1%}"])
    print(f"# Trainer throughput, {device_name(device)}, torch {torch.__version__}, "
          f"{datetime.date.today()}")
    print(f"architecture {list(tp.hidden)} {tp.activation}, linear skip {tp.linear_skip}, dropout "
          f"{tp.dropout}, {tp.optimizer}, batch {tp.batch_size}, "
          f"{x.shape[-1]} features ({x.shape[0]} view(s)), "
          f"{int(train_mask[0].sum())} training rows per model; "
          f"{'TF32' if args.tf32 else 'full fp32'} matmuls; measured "
          f"peaks {flops / 1e12:.2f} TFLOP/s fp32 matmul, {bandwidth / 1e9:.0f} GB/s copy; "
          f"Adam betas {ADAM_BETAS}")
    print()
    print(f"epochs per timing: {', '.join(f'M={m}: {epochs_for(m)}' for m in sizes)}")
    if device.type == "cuda":
        print(f"torch.compile's one-off compilation (in the warm-up, not in the table): "
              f"{compile_seconds:.1f} s")
    print()
    print(markdown_table(["M models", "steps run", "loop (model-epochs/s)",
                          "batched, end to end", "batched, steady state", "speedup (steady)",
                          "roofline floor", "of floor"], rows))


if __name__ == "__main__":
    main()
