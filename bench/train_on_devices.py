"""The default config's training (what the train stage runs) on each device: time, and how far
the GPU's results are from the CPU's.

    python bench/train_on_devices.py [--devices cpu,cuda,cuda+compile] [--repeats 2]
                                     [--params FILE] [--companions 8 96]

(`cuda+compile` is the GPU with train.compile: true.)

Each device trains the params.yaml config (all folds x seeds, early stopping as configured) twice.
Prints a table: seconds, whether the two runs on a device are bit-identical, and against the
first CPU run the largest difference in any out-of-fold or test log-price prediction, the CV
scores and the best epochs. With --companions, a second table: the config trained in one batch
with that many other configs, as a sweep or bench/mlp_options.py trains it, against its run alone.
"""

from __future__ import annotations

import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split

import argparse
import dataclasses
import datetime
import time
from pathlib import Path

import numpy as np
import torch
from common import ROOT, device_name, load_data, markdown_table, sync

from pipeline.engine.device import make_deterministic, resolve_device
from pipeline.members.mlp.fit import fit_mlp_configs
from pipeline.members.mlp.predict import oof_predictions
from pipeline.scoring.ensemble import combine_log_predictions
from pipeline.scoring.folds import cv_metrics, plan_folds


def run_once(data, params, plan, device, fuse, companions=0):
    """The config's models trained on the device, alone or in one batch with `companions` other
    configs (its lr times 1.1, 1.1 ** 2, ...), as a sweep trains it; seconds are the batch's."""
    sync(device)
    started = time.perf_counter()
    config = dataclasses.replace(params.train, compile=fuse)
    configs = [config] + [dataclasses.replace(config, lr=config.lr * 1.1 ** (k + 1))
                          for k in range(companions)]
    result = fit_mlp_configs(data.mlp_train, data.y_train, plan, configs, device,
                             label=f"train on {device}")[0]
    sync(device)
    seconds = time.perf_counter() - started
    oof = oof_predictions(result.models, data.mlp_train, plan, params.ensemble.average)
    test = combine_log_predictions(
        result.models.predict_log_price(data.mlp_test.model_input()).numpy(),
        params.ensemble.average)
    metrics = cv_metrics(oof, data.y_train, data.outlier.astype(bool), plan.fold_of_row)
    return {"seconds": seconds, "oof": oof, "test": test, "metrics": metrics,
            "best_epoch": result.best_epoch.numpy(), "mode": result.epoch_mode,
            "weights": [w.numpy() for w in result.models.weights]}


def identical(a, b) -> bool:
    return (np.array_equal(a["oof"], b["oof"]) and np.array_equal(a["test"], b["test"])
            and all(np.array_equal(u, v) for u, v in zip(a["weights"], b["weights"], strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="cpu,cuda,cuda+compile")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--companions", type=int, nargs="*", default=[],
                        help="also train the config in one batch with this many others (a "
                             "sweep's batch) and compare it with its run alone")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml",
                        help="train the config of another params file")
    args = parser.parse_args()
    make_deterministic(resolve_device("auto"))
    params, data = load_data(args.params)
    plan = plan_folds(len(data.y_train), data.outlier.astype(bool), params.train,
                      len(data.mlp_train))
    devices = args.devices.split(",")
    runs = {d: [run_once(data, params, plan, resolve_device(d.split("+")[0]), d.endswith("+compile"))
                for _ in range(args.repeats)] for d in devices}
    reference = runs[devices[0]][0]
    rows = []
    for name, results in runs.items():
        device = resolve_device(name.split("+")[0])
        for i, r in enumerate(results):
            m, ref = r["metrics"], reference["metrics"]
            rows.append([
                f"{device_name(device)} ({r['mode']})", i + 1, f"{r['seconds']:.2f}",
                "yes" if identical(r, results[0]) else "NO",
                f"{np.abs(r['oof'] - reference['oof']).max():.2e}",
                f"{np.abs(r['test'] - reference['test']).max():.2e}",
                f"{m['cv_rmse']:.5f} ({m['cv_rmse'] - ref['cv_rmse']:+.1e})",
                f"{m['cv_rmse_no_outliers']:.5f} "
                f"({m['cv_rmse_no_outliers'] - ref['cv_rmse_no_outliers']:+.1e})",
                int((r["best_epoch"] != reference["best_epoch"]).sum()),
            ])
    print(f"# Default-config training on each device, torch {torch.__version__}, "
          f"{datetime.date.today()}")
    print(f"{len(plan.names)} models: {params.train.folds} folds x {params.train.n_seeds} seeds, "
          f"hidden {list(params.train.hidden)}, max {params.train.max_epochs} epochs, patience "
          f"{params.train.patience}; differences are against run 1 on {devices[0]}")
    print()
    print(markdown_table(["device", "run", "train seconds", "same bits as run 1 here",
                          "max diff, oof log price", "max diff, test log price", "CV (diff)",
                          "CV no outliers (diff)", "models with another best epoch"], rows))
    if not args.companions:
        return
    rows = []
    for name in devices:
        alone = runs[name][0]
        device = resolve_device(name.split("+")[0])
        for n in args.companions:
            r = run_once(data, params, plan, device, name.endswith("+compile"), n)
            cv_alone = alone["metrics"]["cv_rmse_no_outliers"]
            rows.append([f"{device_name(device)} ({r['mode']})", n, f"{r['seconds']:.2f}",
                         "yes" if identical(r, alone) else "NO",
                         f"{np.abs(r['oof'] - alone['oof']).max():.2e}",
                         f"{r['metrics']['cv_rmse_no_outliers'] - cv_alone:+.1e}",
                         int((r["best_epoch"] != alone["best_epoch"]).sum())])
    print()
    print("The config in a batch with other configs (a sweep's batch), against its run alone on "
          "the same device:")
    print()
    print(markdown_table(["device", "other configs in the batch", "batch seconds",
                          "same bits as alone", "max diff, oof log price",
                          "CV no outliers (diff)", "models with another best epoch"], rows))


if __name__ == "__main__":
    main()
