"""A sweep's space file: its keys, samplers, ranges and choices checked before any trial runs,
and a trial's train.* overrides made into TrainParams."""

from __future__ import annotations

import dataclasses
import math
import os

from pipeline.common.errors import PipelineError
from pipeline.common.inputs import read_yaml
from pipeline.config.train import TrainParams
from pipeline.search.samplers import SAMPLERS

# The fold plan is shared by every config of a sweep, so these cannot vary within one.
FIXED_KEYS = ("folds", "fold_seed", "seed", "n_seeds", "exclude_outliers", "device",
              "lasso_alpha", "lasso_max_iter", "lasso_tol")
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform")
RANKABLE = ("blend_cv_rmse", "blend_cv_rmse_no_outliers", "cv_rmse", "cv_rmse_no_outliers",
            "oof_rmse", "oof_rmse_no_outliers")
# Stated maxima: a batch is trained as one model (batch x folds x views models in memory at once),
# and a study of more trials than this would run for months on one machine.
MAXIMA = {"trials": 100_000, "batch": 256, "heartbeat_s": 3600}
# A grid queues every combination when its study is created (~20 ms each in SQLite on 2 cores):
# 2,000 take ~40 s, already ~14 hours of trials at ~25 s each.
MAX_GRID = 2_000


def load_space(path: str | os.PathLike) -> dict:
    spec = read_yaml(path, "give the path of a sweep space file (see sweeps/example.yaml)")
    if not isinstance(spec, dict) or not isinstance(spec.get("space"), dict) or not spec["space"]:
        raise PipelineError(f"{path}: needs a non-empty 'space' mapping of train.* keys")
    return check_space(spec, path)


def check_space(spec: dict, path="sweep space") -> dict:
    """The space with its defaults filled in; one clear line for anything it cannot use."""
    unknown = set(spec) - {"sampler", "trials", "batch", "seed", "rank_by", "heartbeat_s", "space"}
    if unknown:
        raise PipelineError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    known = {f.name for f in dataclasses.fields(TrainParams)}
    for key in spec["space"]:
        if key not in known:
            raise PipelineError(f"{path}: space key '{key}' is not a train parameter")
        if key in FIXED_KEYS:
            raise PipelineError(f"{path}: '{key}' cannot vary within a sweep (it fixes the folds "
                                "or each model's Lasso); set it in params.yaml")
        _check_choice(path, key, spec["space"][key])
    spec = {**spec, "sampler": spec.get("sampler", "tpe")}
    if spec["sampler"] not in SAMPLERS:
        raise PipelineError(f"{path}: sampler must be one of {', '.join(SAMPLERS)}, got "
                            f"{spec['sampler']!r}")
    every_combination = None
    if spec["sampler"] == "grid":
        for key, choice in spec["space"].items():
            if not isinstance(choice, list):
                raise PipelineError(f"{path}: the grid sampler needs a list of choices for {key}")
        every_combination = math.prod(len(c) for c in spec["space"].values())
        if every_combination > MAX_GRID:
            raise PipelineError(
                f"{path}: the grid has {every_combination:,} combinations, more than the "
                f"{MAX_GRID:,} a grid may queue (each is a storage write before any trial runs); "
                f"use sampler: random (or tpe) with trials: N to draw N of them")
    spec["trials"] = spec.get("trials", every_combination)
    if spec["trials"] is None:
        raise PipelineError(f"{path}: trials is missing: say how many completed trials the study "
                            "aims at, e.g. trials: 24 (only the grid sampler counts its own)")
    for key, default in (("batch", 8), ("heartbeat_s", 30), ("seed", 0)):
        spec[key] = spec.get(key, default)
    for key, most in MAXIMA.items():
        if isinstance(spec[key], bool) or not isinstance(spec[key], int) or spec[key] < 1:
            raise PipelineError(f"{path}: {key} must be a positive integer, got {spec[key]!r}")
        if spec[key] > most:
            raise PipelineError(f"{path}: {key} must be at most {most:,}, got {spec[key]!r}"
                                + (" (the grid's every combination)" if key == "trials"
                                   and every_combination == spec[key] else ""))
    spec["rank_by"] = spec.get("rank_by", "blend_cv_rmse")
    if spec["rank_by"] not in RANKABLE:
        raise PipelineError(f"{path}: rank_by must be one of {', '.join(RANKABLE)}, got "
                            f"{spec['rank_by']!r}")
    return spec


def _check_choice(path, key: str, choice) -> None:
    """A list of choices, or {distribution: [low, high]} with numbers the distribution takes."""
    if isinstance(choice, list):
        if not choice:
            raise PipelineError(f"{path}: space key '{key}' has an empty list of choices")
        return
    if not (isinstance(choice, dict) and len(choice) == 1 and next(iter(choice)) in DISTRIBUTIONS):
        raise PipelineError(f"{path}: space key '{key}' must be a list of choices or one of "
                            f"{', '.join(DISTRIBUTIONS)}: [low, high]")
    kind, bounds = next(iter(choice.items()))
    integer = kind == "int_uniform"
    numbers = isinstance(bounds, list) and len(bounds) == 2 and all(
        isinstance(b, int) if integer else isinstance(b, int | float) and math.isfinite(b)
        for b in bounds) and not any(isinstance(b, bool) for b in bounds)
    if not numbers:
        raise PipelineError(f"{path}: space key '{key}': {kind} needs [low, high], two "
                            f"{'integers' if integer else 'numbers'}, got {bounds!r}")
    low, high = bounds
    if low > high:
        raise PipelineError(f"{path}: space key '{key}': {kind} low {low} is above high {high}")
    if kind == "log_uniform" and low <= 0:
        raise PipelineError(f"{path}: space key '{key}': log_uniform needs low > 0, got {low} "
                            "(use uniform for a range that includes 0)")


def as_train_params(base: TrainParams, overrides: dict) -> TrainParams:
    values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()}
    return dataclasses.replace(base, **values)
