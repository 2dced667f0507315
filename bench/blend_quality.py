"""Cross-validated quality of every blend member and of their blends, on the same fold shuffles.

    python bench/blend_quality.py [--fold-seeds 0 1 2 ...] [--members mlp lgbm ...]
                                  [--stacked DIR] [--params FILE]

Each member is trained exactly as its DVC stage trains it (params.yaml's settings, the train
stage's fold plan for each fold seed); each blend is scored by nested CV (weights fitted on the
other folds' out-of-fold rows, scored on the held-out fold). --stacked reads the out-of-fold
predictions `bench/stacked_regressions.py --save DIR` wrote for the same fold seeds, to put the
classic recipe in the same table. --members trains only those (default: the MLP and every family)
and scores every blend of two or more of them. Prints the mean over fold seeds, outliers not
scored and all rows.
"""

from __future__ import annotations

import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split

import argparse
import dataclasses
import datetime
import itertools
from pathlib import Path

import numpy as np
from common import ROOT, load_data, markdown_table

from pipeline.engine.device import make_deterministic, resolve_device
from pipeline.members import families, family, model_settings
from pipeline.members.mlp.fit import fit_mlp_configs
from pipeline.members.mlp.predict import oof_predictions
from pipeline.scoring.blending import nested_oof
from pipeline.scoring.folds import cv_metrics, plan_folds
from pipeline.scoring.predictions import cross_fit, excludes_outliers, member_plan


def member_oofs(params, data, fold_seed: int, device, names: list[str]) -> tuple[dict, object]:
    """name -> out-of-fold log prices of each member in `names`, and the fold plan."""
    x, y, outlier = data.x_train, data.y_train, data.outlier
    params = dataclasses.replace(params, train=dataclasses.replace(params.train,
                                                                    fold_seed=fold_seed))
    plan = plan_folds(len(y), outlier, params.train, len(data.mlp_train))
    oofs = {}
    if "mlp" in names:
        result = fit_mlp_configs(data.mlp_train, y, plan, [params.train], device,
                                 label=f"fold seed {fold_seed}")[0]
        oofs["mlp"] = oof_predictions(result.models, data.mlp_train, plan,
                                      params.ensemble.average)
    x64 = x.astype(np.float64)
    for name in (n for n in names if n != "mlp"):
        one = member_plan(len(y), outlier, params, excludes_outliers(name, params))
        settings = model_settings(getattr(params.members, name))
        oofs[name], _ = cross_fit(family(name).make_model(settings, params.train), x64, y,
                                  x64[:1], one)
    return oofs, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fold-seeds", type=int, nargs="+",
                        default=[0, 1, 2, 200, 201, 202, 300, 301, 302])
    parser.add_argument("--members", nargs="+", choices=["mlp", *families()],
                        default=["mlp", *families()], help="the members to train and blend")
    parser.add_argument("--stacked", help="directory of stacked_oof_fs{seed}.npy files")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"),
                        help="the params file whose settings the members are trained with")
    args = parser.parse_args()
    params, data = load_data(Path(args.params))
    y, outlier = data.y_train, data.outlier
    device = resolve_device(args.device)
    make_deterministic(device)
    names = list(dict.fromkeys(args.members))
    rows: dict[str, list] = {}
    weights: dict[str, list] = {}
    for seed in args.fold_seeds:
        oofs, plan = member_oofs(params, data, seed, device, names)
        if args.stacked:
            oofs["stacked recipe"] = np.load(Path(args.stacked) / f"stacked_oof_fs{seed}.npy")
        for name, oof in oofs.items():
            rows.setdefault(name, []).append(cv_metrics(oof, y, outlier, plan.fold_of_row))
        for size in range(2, len(names) + 1):
            for combo in itertools.combinations(names, size):
                preds = np.stack([oofs[n] for n in combo], axis=1)
                for method in ("weights", "ridge"):
                    label = f"blend ({method}): {' + '.join(combo)}"
                    oof, fold_w = nested_oof(preds, y, ~outlier, plan.fold_of_row, method,
                                             params.ensemble.ridge_alpha)
                    rows.setdefault(label, []).append(cv_metrics(oof, y, outlier, plan.fold_of_row))
                    weights.setdefault(label, []).append(np.mean(fold_w, axis=0))
        clean = {k: v[-1]["cv_rmse_no_outliers"] for k, v in rows.items()}
        print(f"fold seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in clean.items()
                                                  if not k.startswith("blend (ridge)")), flush=True)
    table = []
    for name, scores in rows.items():
        clean = np.array([s["cv_rmse_no_outliers"] for s in scores])
        every = np.array([s["cv_rmse"] for s in scores])
        w = weights.get(name)
        shown = (" / ".join(f"{v:.2f}" for v in np.mean(w, axis=0)) if w is not None
                 and name.startswith("blend (weights)") else "")
        table.append([name, f"{clean.mean():.4f}", f"{clean.std():.4f}", f"{every.mean():.4f}",
                      shown])
    table.sort(key=lambda r: float(r[1]))
    print(f"\n# Members and blends, 5-fold CV on {len(args.fold_seeds)} fold shuffles "
          f"({' '.join(map(str, args.fold_seeds))}), {datetime.date.today()}\n")
    print(markdown_table(["model", "CV log-RMSE, outliers not scored (mean)", "std over shuffles",
                          "CV log-RMSE, all rows", "mean weights"], table))


if __name__ == "__main__":
    main()
