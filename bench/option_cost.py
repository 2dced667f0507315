"""What an MLP option costs: the train stage's models (fold seed 0, params.yaml's settings plus
the variant's changes), each variant trained alone, wall seconds per run.

    python bench/option_cost.py bench/variants/FILE.yaml [--repeats 2] [--device auto]

Prints a markdown table: the variant, its feature count, seconds (best of the repeats), the mean
epochs its models ran, and model-epochs per second.
"""

from __future__ import annotations

import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split

import dataclasses
import datetime
import time

import pandas as pd
from common import ROOT, device_name, markdown_table, sync
from mlp_options import setup, variant_params

from pipeline.dataset.matrices import preprocess
from pipeline.members.mlp.fit import fit_mlp_configs
from pipeline.scoring.folds import plan_folds


def main() -> None:
    args, variants, params, device = setup(__doc__, lambda p: p.add_argument(
        "--repeats", type=int, default=2))
    train = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_train.csv")
    test = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_test.csv")
    rows = []
    for name, overrides in variants.items():
        pre, tp = variant_params(params, overrides)
        data = preprocess(train, test, pre)
        x, y, outlier = data.mlp_train, data.y_train, data.outlier
        plan = plan_folds(len(y), outlier, dataclasses.replace(tp, fold_seed=0), len(x))
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = fit_mlp_configs(x, y, plan, [tp], device, label=name)[0]
            sync(device)
            times.append(time.perf_counter() - start)
        epochs = float(result.epochs_run.double().mean())
        rows.append([name, "+".join(str(w) for w in x.widths), f"{min(times):.1f}", f"{epochs:.0f}",
                     f"{len(plan.names) * epochs / min(times):.0f}"])
    print(f"\n{datetime.date.today()}, {device_name(device)}, fold seed 0, best of {args.repeats}")
    print(markdown_table(["variant", "features", "seconds", "mean epochs run",
                          "model-epochs/s"], rows))


if __name__ == "__main__":
    main()
