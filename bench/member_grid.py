"""A grid of one member family's settings, each scored alone and in the default blend.

    python bench/member_grid.py lasso_svr C=10,20,50,100 gamma=0.0001,0.0002,0.0003,0.0005 \
        epsilon=0.008,0.03 [--fold-seeds 400 401 402]

The other members of `ensemble.members` are trained once per fold seed as their DVC stages train
them; each setting of the named family replaces that family's params.yaml settings, and the blend
of all members is scored by nested CV, as `bench/blend_quality.py` scores it. Choose on fold seeds
no confirmation run uses (the default 400-402), then confirm on the 9 shuffles with
`bench/blend_quality.py --params FILE`. Prints a table sorted by the blend's CV, outliers not scored.
"""

from __future__ import annotations

import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split

import argparse
import dataclasses
import itertools

import numpy as np
from blend_quality import member_oofs
from common import load_data, markdown_table

from pipeline.engine.device import make_deterministic, resolve_device
from pipeline.members import family, model_settings, settings_of
from pipeline.scoring.blending import nested_oof
from pipeline.scoring.folds import cv_metrics
from pipeline.scoring.predictions import cross_fit, member_plan


def parse_axis(text: str, settings: dict) -> tuple[str, list]:
    """'C=10,20' -> ('C', [10.0, 20.0]), typed as the family's SETTINGS say (not range-checked:
    a bad value is the library's error)."""
    key, _, values = text.partition("=")
    if key not in settings:
        raise SystemExit(f"error: {key!r} is not a setting of this family "
                         f"(known: {', '.join(settings)})")
    return key, [settings[key](v) for v in values.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family")
    parser.add_argument("axes", nargs="+", help="KEY=V1,V2,... for settings of the family")
    parser.add_argument("--fold-seeds", type=int, nargs="+", default=[400, 401, 402])
    args = parser.parse_args()
    params, data = load_data()
    axes = dict(parse_axis(a, settings_of(args.family)) for a in args.axes)
    x, y, outlier = data.x_train.astype(np.float64), data.y_train, data.outlier
    make_deterministic(resolve_device("auto"))
    names = list(params.ensemble.members)
    if args.family not in names:  # scored inside the blend even where the default leaves it out
        names.append(args.family)
    base = {seed: member_oofs(params, data, seed, resolve_device("auto"),
                              [n for n in names if n != args.family])
            for seed in args.fold_seeds}
    rows = []
    for values in itertools.product(*axes.values()):
        settings = {**getattr(params.members, args.family), **dict(zip(axes, values, strict=True))}
        alone, blended = [], []
        for seed, (oofs, plan) in base.items():
            p = dataclasses.replace(params, train=dataclasses.replace(params.train,
                                                                      fold_seed=seed))
            model = family(args.family).make_model(model_settings(settings), params.train)
            oof, _ = cross_fit(model, x, y, x[:1], member_plan(len(y), outlier, p,
                                                               settings["exclude_outliers"]))
            alone.append(cv_metrics(oof, y, outlier, plan.fold_of_row)["cv_rmse_no_outliers"])
            preds = np.stack([oof if n == args.family else oofs[n] for n in names], axis=1)
            blend, _ = nested_oof(preds, y, ~outlier, plan.fold_of_row, params.ensemble.blend,
                                  params.ensemble.ridge_alpha)
            blended.append(cv_metrics(blend, y, outlier, plan.fold_of_row)["cv_rmse_no_outliers"])
        rows.append([*values, f"{np.mean(alone):.5f}", f"{np.mean(blended):.5f}"])
        print(" ".join(map(str, rows[-1])), flush=True)
    rows.sort(key=lambda r: float(r[-1]))
    print(f"\n# {args.family} settings, fold seeds {' '.join(map(str, args.fold_seeds))}; "
          f"blend of {' + '.join(names)}; CV log-RMSE, outliers not scored\n")
    print(markdown_table([*axes, f"{args.family} alone", "blend"], rows))


if __name__ == "__main__":
    main()
