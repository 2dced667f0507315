"""Scoring a batch of sweep configs the way `dvc repro` scores params.yaml: the train stage's
folds and seeds, blended with the other members' predictions from the last `dvc repro`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from pipeline.common import paths
from pipeline.common.errors import PipelineError
from pipeline.config.params import Params
from pipeline.dataset.processed import mlp_inputs
from pipeline.scoring import compare
from pipeline.search.space import as_train_params

REGION_KEY = "rare_sale_region"  # beside the members' prices: ensemble.rare_sales' houses


def other_members(params: Params, members_dir: str | os.PathLike, data: dict,
                  raw_train: str | os.PathLike = f"{paths.RAW}/train.csv"
                  ) -> dict[str, np.ndarray] | None:
    """The out-of-fold log prices of the blend's other members (from the last `dvc repro`),
    by name, and where ensemble.rare_sales prices a region, its training houses (REGION_KEY);
    None where a member is missing or the blend has no MLP to vary."""
    from pipeline.scoring.predictions import check_same_plan, load_member

    names = list(params.ensemble.members)
    if "mlp" not in names or len(names) == 1:
        return None
    found = {}
    for name in (n for n in names if n != "mlp"):
        if not (Path(members_dir) / name / "predictions.npz").is_file():
            return None
        found[name] = load_member(name, Path(members_dir), Path(members_dir) / "mlp/predictions.npz")
    try:
        check_same_plan(found, params)
        if not np.array_equal(next(iter(found.values()))["id_train"], data["id"]):
            raise PipelineError("its training rows differ from data/processed's")
    except PipelineError as exc:
        print(f"sweep: note: no trial is blended: the other members are not on params.yaml's "
              f"fold plan and houses ({exc}); run dvc repro", file=sys.stderr)
        return None
    others = {name: member["oof"] for name, member in found.items()}
    if params.ensemble.rare_sales == "comparable":  # the region's training houses, as blend reads
        from pipeline.scoring.rare_sales import region_of

        others[REGION_KEY] = region_of(data["id"], Path(raw_train), params.ensemble)
    return others


def inputs_digest(params: Params, data: dict, others: dict | None) -> str:
    """What a trial's score depends on besides its train.* config: the houses as preprocess
    left them (data/processed), the other members' out-of-fold predictions and how the blend
    combines them. Part of the study's signature, so a study resumed after `dvc repro` changed
    any of them is refused instead of ranking old trials beside new ones."""
    import hashlib

    digest = hashlib.sha1()
    for name, values in [*sorted(data.items()), *sorted((others or {}).items())]:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(values).tobytes())
    ensemble = params.ensemble
    digest.update(repr((list(ensemble.members), ensemble.blend, ensemble.ridge_alpha)).encode())
    return digest.hexdigest()


def blend_oof(params: Params, mlp_oof: np.ndarray, others: dict, y, outlier, fold_of_row
              ) -> np.ndarray:
    """The blend stage's nested out-of-fold blend, this MLP beside the other members (stacked
    in ensemble.members' order, as the blend stage stacks them: the same number, bit for bit)."""
    from pipeline.scoring.blending import fit_rows, member_matrix, nested_oof
    from pipeline.scoring.predictions import excludes_outliers

    ens = params.ensemble
    preds = member_matrix(ens, {**others, "mlp": mlp_oof})
    excluded = any(excludes_outliers(m, params) for m in params.ensemble.members)
    oof = nested_oof(preds, y, fit_rows(outlier, excluded), fold_of_row, ens.blend,
                     ens.ridge_alpha)[0]
    if REGION_KEY in others:  # ensemble.rare_sales, as the blend stage prices the region
        from pipeline.scoring.rare_sales import price_held_out

        oof = price_held_out(oof, y, others[REGION_KEY], fold_of_row)
    return oof


def _scored(oof: np.ndarray, y, outlier, fold_of_row, prefix: str = "") -> tuple[dict, dict]:
    """(CV metrics, per-fold scores and per-house errors) of out-of-fold log prices, their keys
    prefixed (`blend_`)."""
    from pipeline.scoring.folds import cv_metrics, split_per_fold

    metrics, folds = split_per_fold(cv_metrics(oof, y, outlier, fold_of_row))
    per_fold = {"cv_rmse": list(folds["fold_rmse"].values()),
                "cv_rmse_no_outliers": list(folds["fold_rmse_no_outliers"].values()),
                "house_squared_error": compare.stored(compare.house_errors(oof, y))}
    return ({prefix + k: v for k, v in metrics.items()},
            {prefix + k: v for k, v in per_fold.items()})


def score_configs(params: Params, overrides: list[dict], data: dict, device,
                  others: dict | None = None) -> list[tuple]:
    """(CV metrics, per-fold scores and per-house errors) of each config, trained in batches per
    architecture; with `others` (other_members), also the blend's."""
    from pipeline.members.mlp.configs import architecture_of
    from pipeline.members.mlp.fit import fit_mlp_configs
    from pipeline.members.mlp.predict import oof_predictions
    from pipeline.scoring.folds import plan_folds

    configs = [as_train_params(params.train, o) for o in overrides]
    x, y, outlier = mlp_inputs(data), data["y"], data["outlier"].astype(bool)
    plan = plan_folds(len(y), outlier, params.train, len(x))
    groups: dict = {}
    for index, config in enumerate(configs):
        groups.setdefault(architecture_of(config), []).append(index)
    results: list = [None] * len(configs)
    for number, indices in enumerate(groups.values(), start=1):
        trained = fit_mlp_configs(x, y, plan, [configs[i] for i in indices], device,
                                  label=f"sweep batch, architecture {number}/{len(groups)}")
        for index, result in zip(indices, trained, strict=True):
            oof = oof_predictions(result.models, x, plan, params.ensemble.average)
            metrics, per_fold = _scored(oof, y, outlier, plan.fold_of_row)
            if others is not None:
                blended = blend_oof(params, oof, others, y, outlier, plan.fold_of_row)
                scores, folds = _scored(blended, y, outlier, plan.fold_of_row, "blend_")
                metrics = {k: scores[k] for k in ("blend_cv_rmse", "blend_cv_rmse_no_outliers")
                           } | metrics
                per_fold |= folds
            metrics["best_epoch_mean"] = float(result.best_epoch.double().mean() + 1)
            results[index] = (metrics, per_fold)
    return results
