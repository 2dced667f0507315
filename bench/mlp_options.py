"""Cross-validated quality of MLP options against the default, on the same fold shuffles.

    python bench/mlp_options.py bench/variants/FILE.yaml [--fold-seeds 400 401 402]

The variants file maps a name to the parameters it changes (`preprocess.*`, `train.*`), e.g.
`kinks: {preprocess.piecewise_linear: kinks}`; a `default: {}` row is always added first. Each
variant is trained exactly as the train stage would train it with those params (same fold plan,
honest early stopping); variants with the same preprocessing and architecture train as one
batched model, which gives the same numbers as training each alone. Prints, per variant, the
mean over fold seeds of the CV log-RMSE (outliers not scored, and all rows), its difference from
the default, on how many shuffles it beat it, and the verdict of the project's rule
(pipeline/scoring/compare.py, paired over the fold seeds; a screening: decide with bench/nested_cv.py).

`--per-seed` adds a table of every variant's score on each fold seed.
`--averages a+b+c ...` adds rows for equal-weight averages of those variants' out-of-fold log
prices (an ensemble of MLPs that see differently encoded inputs), scored the same way.
"""

from __future__ import annotations

import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split

import argparse
import dataclasses
import datetime
import time

import numpy as np
import pandas as pd
from common import ROOT, device_name, markdown_table

from pipeline.common.inputs import read_yaml
from pipeline.config.params import load_params
from pipeline.dataset.matrices import preprocess
from pipeline.engine.device import make_deterministic, resolve_device
from pipeline.members.mlp.configs import architecture_of
from pipeline.members.mlp.fit import fit_mlp_configs
from pipeline.members.mlp.predict import oof_predictions
from pipeline.scoring import compare
from pipeline.scoring.folds import cv_metrics, plan_folds
from pipeline.search.space import FIXED_KEYS


def variant_params(params, overrides: dict):
    """params with `section.key: value` overrides applied (validated as params.yaml would be)."""
    sections = {"preprocess": {}, "train": {}}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in sections:
            raise SystemExit(f"{key}: only preprocess.* and train.* can be varied")
        sections[section][name] = tuple(value) if isinstance(value, list) else value
    return (dataclasses.replace(params.preprocess, **sections["preprocess"]),
            dataclasses.replace(params.train, **sections["train"]))


def score(variants: dict, params, fold_seeds: list[int], device, averages=()
          ) -> dict[str, np.ndarray]:
    """name -> [fold seeds, 2] (outliers not scored, all rows), for every variant and then every
    average ("a+b": the equal-weight mean of variants a and b's out-of-fold log prices)."""
    train = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_train.csv")
    test = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_test.csv")
    resolved = {name: variant_params(params, o) for name, o in variants.items()}
    by_pre: dict = {}
    for name, (pre, tp) in resolved.items():
        by_pre.setdefault(pre, []).append((name, tp))
    scores = {name: np.zeros((len(fold_seeds), 2)) for name in [*variants, *averages]}
    oofs: dict = {}  # (name, fold seed index) -> (out-of-fold log prices, fold of each row)
    for pre, members in by_pre.items():
        data = preprocess(train, test, pre)
        y, outlier = data.y_train, data.outlier
        for s, fold_seed in enumerate(fold_seeds):
            groups: dict = {}
            for name, tp in members:
                tp = dataclasses.replace(tp, fold_seed=fold_seed)
                # Configs train together when they share an architecture and a fold plan
                # (the plan's seeds are every config's seeds).
                key = (architecture_of(tp), *(getattr(tp, k) for k in FIXED_KEYS))
                groups.setdefault(key, []).append((name, tp))
            for group in groups.values():
                x = data.mlp_train
                plan = plan_folds(len(y), outlier, group[0][1], len(x))
                results = fit_mlp_configs(x, y, plan, [tp for _, tp in group], device,
                                          label=f"fold seed {fold_seed}")
                models = [r.models for r in results]
                for (name, _), m in zip(group, models, strict=True):
                    oof = oof_predictions(m, x, plan, params.ensemble.average)
                    oofs[name, s] = (oof, plan.fold_of_row)
    for name in scores:
        for s in range(len(fold_seeds)):
            parts = [oofs[part, s] for part in name.split("+")]
            fold_of_row = parts[0][1]
            if any(not np.array_equal(f, fold_of_row) for _, f in parts):
                raise SystemExit(f"--averages {name}: its variants split the rows into different "
                                 "folds (train.folds differs); average variants with the same folds")
            oof = np.mean([o for o, _ in parts], axis=0)
            metrics = cv_metrics(oof, y, outlier, fold_of_row)
            scores[name][s] = (metrics["cv_rmse_no_outliers"], metrics["cv_rmse"])
    return scores


def setup(doc: str, add_arguments) -> tuple:
    """(args, variants with the default first, params.yaml, device) for a variants bench."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("variants", help="YAML file: name -> {section.key: value}")
    parser.add_argument("--device", default="auto")
    add_arguments(parser)
    args = parser.parse_args()
    variants = {"default": {}, **(read_yaml(args.variants, "give a variants file") or {})}
    device = resolve_device(args.device)
    make_deterministic(device)
    return args, variants, load_params(ROOT / "params.yaml"), device


def main() -> None:
    def add_arguments(parser):
        parser.add_argument("--fold-seeds", type=int, nargs="+", default=[400, 401, 402])
        parser.add_argument("--averages", nargs="+", default=[], metavar="A+B",
                            help="also score equal-weight averages of these variants' predictions")
        parser.add_argument("--per-seed", action="store_true",
                            help="also print each variant's score on every fold seed")

    args, variants, params, device = setup(__doc__, add_arguments)
    unknown = {part for name in args.averages for part in name.split("+")} - set(variants)
    if unknown:
        raise SystemExit(f"--averages: {', '.join(sorted(unknown))} not in {args.variants}")
    start = time.perf_counter()
    scores = score(variants, params, args.fold_seeds, device, args.averages)
    base = scores["default"]
    rows = []
    for name, s in scores.items():
        delta = s[:, 0].mean() - base[:, 0].mean()
        wins = int((s[:, 0] < base[:, 0]).sum())
        # the project's rule, paired over the fold seeds: all rows (s[:, 1]) first, then the
        # rows without outliers (s[:, 0]); a screening on reused shuffles, not a decision
        verdict = "-" if name == "default" else compare.verdict(s[:, 1], base[:, 1], s[:, 0],
                                                               base[:, 0])
        rows.append([name, f"{s[:, 0].mean():.5f}", f"{s[:, 1].mean():.5f}", f"{delta:+.5f}",
                     f"{wins}/{len(s)}", verdict])
    print(f"\n{datetime.date.today()}, {device_name(device)}, fold seeds {args.fold_seeds}, "
          f"{time.perf_counter() - start:.0f} s")
    print(markdown_table(["variant", "CV (no outliers)", "CV (all rows)", "vs default",
                          "beats default on", "verdict"], rows))
    if args.per_seed:
        print("\nCV (no outliers) per fold seed:")
        print(markdown_table(["variant", *map(str, args.fold_seeds)],
                             [[name, *(f"{v:.5f}" for v in s[:, 0])] for name, s in scores.items()]))


if __name__ == "__main__":
    main()
