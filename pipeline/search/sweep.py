"""Hyperparameter sweep on an Optuna study, every trial scored by the train stage's own K-fold CV.

Optuna's sampler (TPE by default, seeded) proposes trials; a worker asks for a batch of them,
trains the trials that share an architecture together (trials x folds x seeds models in one
batched run) and tells each trial its CV score. The folds, seeds and averaging are the train
stage's, so a trial's number is the number `dvc repro` would report for its params, bit for bit
on the CPU. The study is kept in a database (default sweeps/results/NAME.db, SQLite), so a rerun
of the same command resumes it, and workers on many machines can share one (--storage URL).

Space file (YAML):

    sampler: tpe            # tpe | random | grid (every combination) | cmaes
    trials: 40              # completed trials the study aims at, all workers together
    batch: 8                # trials a worker asks for and trains at once
    seed: 0                 # the sampler's seed
    rank_by: blend_cv_rmse  # blend_cv_rmse(_no_outliers): the blend dvc repro would submit (the
                            # other members' predictions from the last dvc repro); or cv_rmse,
                            # cv_rmse_no_outliers: the MLP alone; lower is better
    heartbeat_s: 30         # a worker silent for 2x this long is presumed dead; its trials re-run
    space:                  # train.* keys; a list is a set of choices
      lr: [0.0003, 0.001]
      hidden: [[64], [256, 128]]
      weight_decay: {log_uniform: [0.01, 1.0]}   # also uniform, int_uniform

A value drawn from a range is rounded to 4 significant digits before it is trained, so the
table, `--apply` and the score all hold the same short number. The current params (params.yaml)
are scored too, as the baseline row, and every trial gets the house-level verdict against it
(pipeline/scoring/compare.py), so a tie is visible before `--apply` writes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.common.atomic import atomic_path, write_text
from pipeline.common.cli_support import add_params_option, run_cli, stage_parser
from pipeline.common.errors import PipelineError
from pipeline.common.inputs import read_yaml
from pipeline.config.params import Params, TrainParams, load_params
from pipeline.dataset.processed import load_train, mlp_inputs
from pipeline.engine.trainer import make_deterministic, resolve_device
from pipeline.scoring import compare
from pipeline.search import storage as study_storage
from pipeline.search import study as studies

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


def _load_space(path: str | os.PathLike) -> dict:
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
    if spec["sampler"] not in studies.SAMPLERS:
        raise PipelineError(f"{path}: sampler must be one of {', '.join(studies.SAMPLERS)}, got "
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


def _as_train_params(base: TrainParams, overrides: dict) -> TrainParams:
    values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()}
    return dataclasses.replace(base, **values)


REGION_KEY = "rare_sale_region"  # beside the members' prices: ensemble.rare_sales' houses


def other_members(params: Params, members_dir: str | os.PathLike, data: dict,
                  raw_train: str | os.PathLike = "data/raw/train.csv"
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
    from pipeline.members.mlp.fit import architecture_of, fit_mlp_configs, oof_predictions
    from pipeline.scoring.folds import plan_folds

    configs = [_as_train_params(params.train, o) for o in overrides]
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


def run_sweep(params: Params, spec: dict, data_dir: str | os.PathLike = "data/processed",
              storage: str | None = None, study_name: str = "sweep",
              plots_dir: str | os.PathLike | None = None, space_path="sweep space",
              members_dir: str | os.PathLike = "members",
              raw_train: str | os.PathLike | None = None) -> pd.DataFrame:
    """Run (or resume, or join) the study until it holds its trials; return the ranked table,
    each trial's verdict against the baseline (params.yaml's config) in `vs_baseline` and the
    baseline's row in `table.attrs["baseline"]`.

    Without `storage` the study is kept in memory (nothing to resume). `raw_train` (default:
    data_dir's sibling raw/train.csv) names the houses ensemble.rare_sales prices."""
    import optuna

    spec = check_space(spec, space_path)
    for override in studies.decode_all(spec):
        # A bad value fails here, before any training, naming the space file, not params.yaml.
        try:
            _as_train_params(params.train, override)
        except PipelineError as exc:
            (key, value), = override.items()
            reason = str(exc).removeprefix("params.yaml: ").partition("; fix it")[0]
            raise PipelineError(f"{space_path}: space key '{key}' value {value!r} is not "
                                f"valid ({reason}); fix it in the space file") from exc
    data = load_train(data_dir)
    raw_train = raw_train or Path(data_dir).parent / "raw" / "train.csv"  # data/raw beside it
    others = other_members(params, members_dir, data, raw_train)
    if others is None and spec["rank_by"].startswith("blend_"):
        raise PipelineError(f"{space_path}: rank_by {spec['rank_by']} scores each trial in the "
                            f"blend, which needs the other members' predictions ({members_dir}/"
                            "NAME/predictions.npz): run dvc repro first, or set rank_by: cv_rmse "
                            "to rank the MLP alone")
    device = resolve_device(params.train.device)
    make_deterministic(device)
    store = (study_storage.open_storage(storage) if storage
             else optuna.storages.InMemoryStorage())
    fixed = {k: v for k, v in dataclasses.asdict(params.train).items() if k not in spec["space"]}
    fixed["average"] = params.ensemble.average
    fixed["inputs"] = inputs_digest(params, data, others)
    with study_storage.lost_storage_is_one_line(storage or "in memory"):
        study = studies.open_study(store, study_name, spec, fixed)
        studies.run_worker(study, store, spec,
                           lambda overrides: score_configs(params, overrides, data, device, others))
        baseline = studies.cached_baseline(
            study, {**dataclasses.asdict(params.train), "average": params.ensemble.average},
            lambda: score_configs(params, [{}], data, device, others)[0])
        rows, folds = studies.completed_rows(study, spec)
        if plots_dir is not None:
            for path in studies.write_plots(study, plots_dir, study_name):
                print(f"sweep: wrote {path}")
    if not rows:
        raise PipelineError(f"sweep: study '{study_name}' has no completed trial")
    table = ranked_table(rows, folds, spec, baseline, data["outlier"].astype(bool))
    table.attrs["baseline"] = {"config": "params.yaml", **{k: _show(getattr(params.train, k))
                                                           for k in spec["space"]},
                               **baseline[0]}
    return table


def ranked_table(rows: list[dict], folds: list[dict], spec: dict, baseline: tuple,
                 outlier: np.ndarray) -> pd.DataFrame:
    """The trials ranked by rank_by, with the fold-paired ties with the best and each one's
    house-level verdict against the baseline (the blend's errors when ranked by the blend)."""
    rank_by = spec["rank_by"]
    shown = [{k: (_show(v) if k in spec["space"] else v) for k, v in row.items()} for row in rows]
    table = pd.DataFrame(shown)
    order = table.sort_values([rank_by, "config"], kind="stable").index
    table = table.loc[order].reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    if rank_by in folds[0]:
        mark_ties(table, [folds[i][rank_by] for i in order])
    errors = "blend_house_squared_error" if rank_by.startswith("blend_") else "house_squared_error"
    base_errors = np.array(baseline[1].get(errors, []))
    table["vs_baseline"] = [
        compare.decide(compare.houses(np.array(folds[i][errors]), base_errors, outlier))
        if errors in folds[i] and len(base_errors) else "" for i in order]
    return table


def mark_ties(table: pd.DataFrame, folds: list[list[float]]) -> None:
    """Add how far each config is behind the best, and whether that is a tie by the project's
    rule (pipeline/scoring/compare.py): paired over the folds (every config is scored on the same
    folds), a difference under two standard errors of the per-fold differences is a tie."""
    best = folds[0]
    behind, ties = [], []
    for row in folds:
        mean, se = compare.paired(row, best)
        behind.append(mean)
        ties.append(mean <= compare.SE_MULTIPLE * se)
    table["behind_best"] = behind
    table["tie_with_best"] = np.where(ties, "tie", "no")
    table.loc[0, "tie_with_best"] = "best"


def _show(value):
    """Table cell for a parameter value (lists as YAML flow, e.g. [256, 128])."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return value


def _cell(value, column: str = "") -> str:
    """A table cell: numbers to 4 significant digits (lr 0.0006975 stays 0.0006975); a gap
    behind the best in plain decimals (+0.00012, never 1.2e-04)."""
    if column == "behind_best" and isinstance(value, float | np.floating):
        return f"{value:+.5f}"
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return str(value)


def terminal_table(shown: pd.DataFrame, spec: dict, width: int = 120) -> str:
    """The ranked table for the terminal, within `width` columns: rank, score, the gap and tie
    with the best, the verdict against the baseline; under each row, the config's values
    (every column is in the .csv and .md files)."""
    import textwrap

    rank_by = spec["rank_by"]
    fixed = [c for c in ("rank", rank_by, "behind_best", "tie_with_best", "vs_baseline")
             if c in shown]
    cells = [[_cell(row[c], c) for c in fixed] for _, row in shown.iterrows()]
    header = ["tie" if c == "tie_with_best" else c for c in fixed]
    sizes = [max(len(r[i]) for r in [header, *cells]) for i in range(len(fixed))]
    lines = ["  ".join(h.ljust(n) for h, n in zip(header, sizes, strict=True)).rstrip()]
    for (_, row), row_cells in zip(shown.iterrows(), cells, strict=True):
        lines.append("  ".join(c.ljust(n) for c, n in zip(row_cells, sizes, strict=True))
                     .rstrip()[:width])
        values = ", ".join(f"{k}={_cell(row[k])}" for k in spec["space"] if k in shown)
        rerun = row.get("rerun_of")
        if isinstance(rerun, int | float) and not pd.isna(rerun):
            values += f" (trial {row['config']} re-runs trial {int(rerun)}, whose worker stopped)"
        lines += textwrap.wrap(values, width, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(lines)


def with_baseline(table: pd.DataFrame) -> pd.DataFrame:
    """The ranked table with the baseline's row (params.yaml's config) first, rank 0."""
    baseline = table.attrs.get("baseline")
    if not baseline:
        return table
    row = {c: baseline.get(c, "") for c in table.columns}
    row |= {"rank": 0, "vs_baseline": "(baseline)"}
    return pd.concat([pd.DataFrame([row]), table], ignore_index=True)


def write_tables(table: pd.DataFrame, out_dir: str | os.PathLike, name: str, rank_by: str
                 ) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    shown = with_baseline(table)
    with atomic_path(csv_path) as tmp:
        shown.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")
    header = "| " + " | ".join(shown.columns) + " |"
    lines = [f"# Sweep {name}", "", f"{len(table)} configs, ranked by {rank_by} (lower is "
             "better); rank 0 is the baseline, params.yaml's config, and vs_baseline each "
             "config's verdict against it on houses (pipeline/scoring/compare.py).", "", header,
             "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(_cell(v, c) for c, v in zip(shown.columns, row, strict=True))
              + " |" for row in shown.itertuples(index=False)]
    write_text(md_path, "\n".join(lines) + "\n")
    return csv_path, md_path


def best_overrides(table: pd.DataFrame, spec: dict, rank: int = 1) -> dict:
    """The space keys of the config at `rank`, as params.yaml values."""
    row = table.loc[table["rank"] == rank].iloc[0]
    overrides = {}
    for key in spec["space"]:
        value = row[key]
        if isinstance(value, str):
            value = yaml.safe_load(value)  # lists are shown as YAML flow: [256, 128]
        overrides[key] = value.item() if hasattr(value, "item") else value
    return overrides


@contextlib.contextmanager
def dvc_lock(params_path: str | os.PathLike):
    """Hold DVC's repository lock (what `dvc repro` holds while it runs) for the block, so
    params.yaml never changes under a running stage; one line if a DVC command holds it."""
    import zc.lockfile

    lock_dir = Path(params_path).resolve().parent / ".dvc" / "tmp"
    if not lock_dir.is_dir():  # not a DVC repository: nothing to wait for
        yield
        return
    from pipeline.common.cli_support import stage_running

    busy = (f"sweep: a DVC command (dvc repro?) is running in {lock_dir.parent.parent}%s; "
            "--apply changed nothing: apply again when it has finished")
    try:
        lock = zc.lockfile.LockFile(str(lock_dir / "lock"))
    except zc.lockfile.LockError:
        raise PipelineError(busy % " and holds its lock") from None
    if stage_running(params_path):  # DVC lets its lock go while a stage's command runs
        lock.close()
        raise PipelineError(busy % " and one of its stages is running")
    try:
        yield
    finally:
        lock.close()


def apply_to_params(params_path: str | os.PathLike, overrides: dict) -> None:
    """Write `overrides` into params.yaml's train section, keeping its comments and order
    (never while a `dvc repro` holds the repository)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq

    yaml_rt = YAML()
    yaml_rt.preserve_quotes = True
    yaml_rt.indent(mapping=2, sequence=4, offset=2)  # params.yaml's own layout
    yaml_rt.width = 4096  # never re-wrap long lines
    params_path = Path(params_path)
    text = params_path.read_text(encoding="utf-8")
    newline = "\r\n" if "\r\n" in params_path.read_bytes().decode("utf-8") else "\n"
    doc = yaml_rt.load(text)
    for key, value in overrides.items():
        if isinstance(value, list):
            seq = CommentedSeq(value)
            seq.fa.set_flow_style()
            value = seq
        doc["train"][key] = value
    with dvc_lock(params_path), atomic_path(params_path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline=newline) as fh:  # CRLF kept as CRLF
            yaml_rt.dump(doc, fh)
        load_params(tmp)  # the result must still be valid, else params.yaml stays as it was


def set_args(overrides: dict) -> list[str]:
    """`-S train.key=value` arguments for dvc exp run."""
    args = []
    for key, value in overrides.items():
        text = _show(value).replace(" ", "") if isinstance(value, list) else str(value)
        args += ["-S", f"train.{key}={text}"]
    return args


def queue_experiments(table: pd.DataFrame, spec: dict, top: int, cwd: str | os.PathLike = ".",
                      name: str = "sweep") -> list[list[str]]:
    """Queue the best `top` configs as DVC experiments named NAME-rank1, NAME-rank2, ... (the
    README's `dvc exp run --run-all` runs them)."""
    commands = []
    for rank in range(1, min(top, len(table)) + 1):
        cmd = ["dvc", "exp", "run", "--queue", "-n", f"{name}-rank{rank}",
               *set_args(best_overrides(table, spec, rank))]
        proc = subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, cwd=cwd)
        if proc.returncode != 0:
            raise PipelineError(f"sweep: '{shlex.join(cmd)}' failed: {proc.stderr.strip()}")
        commands.append(cmd)
        print(f"sweep: queued {shlex.join(cmd)}")
    return commands


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("sweep", __doc__)
    parser.add_argument("space", help="YAML file with the search space (e.g. sweeps/example.yaml)")
    parser.add_argument("--name", help="table name (default: the space file's stem)")
    add_params_option(parser)
    parser.add_argument("--data", default="data/processed", help="the preprocess stage's output")
    parser.add_argument("--members", default="members",
                        help="the other blend members' predictions (members/NAME/predictions.npz, "
                             "from dvc repro), which each trial is blended with")
    parser.add_argument("--out", default="sweeps/results",
                        help="directory for the ranked tables and the default study database")
    parser.add_argument("--storage",
                        help="Optuna storage URL shared by workers (default: sqlite:///OUT/NAME.db)")
    parser.add_argument("--study", help="study name to create, resume or join (default: NAME)")
    parser.add_argument("--apply", action="store_true", help="write the best config to params.yaml")
    parser.add_argument("--queue", type=int, default=0, metavar="N",
                        help="queue the best N configs as DVC experiments")
    args = parser.parse_args(argv)

    def stage() -> None:
        params = load_params(args.params)
        spec = _load_space(args.space)
        name = args.name or Path(args.space).stem
        storage = args.storage
        if storage is None:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            storage = f"sqlite:///{Path(args.out) / name}.db"
        table = run_sweep(params, spec, args.data, storage, args.study or name, args.out,
                          args.space, members_dir=args.members)
        rank_by = spec["rank_by"]
        csv_path, md_path = write_tables(table, args.out, name, rank_by)
        import textwrap

        print(textwrap.fill(f"Sweep {name}: {len(table)} configs ranked by {rank_by} (lower is "
                            "better); rank 0 is params.yaml's config, vs_baseline each one's "
                            "verdict against it on houses", 120))
        print(terminal_table(with_baseline(table), spec))
        print(f"sweep: wrote {csv_path} and {md_path} (every column)")
        if "tie_with_best" in table and (table["tie_with_best"] == "tie").any():
            tied = table.loc[table["tie_with_best"] == "tie", "rank"].tolist()
            print(f"sweep: note: rank(s) {', '.join(map(str, tied))} tie with rank 1 (within "
                  "noise); re-score them on other fold seeds before trusting the order")
        if args.apply:
            best = best_overrides(table, spec)
            apply_to_params(args.params, best)
            print(f"sweep: wrote the best config into {args.params}: {best}; run dvc repro")
            verdict = str(table.loc[table["rank"] == 1, "vs_baseline"].iloc[0])
            if not verdict.startswith("better"):
                print(f"sweep: note: it is no win over the baseline ({args.params}'s config "
                      f"before --apply) by the house-level rule: {verdict}; a tie keeps the "
                      f"simpler option: undo it with git checkout -- "
                      f"{shlex.quote(str(args.params))}")
        if args.queue:
            queue_experiments(table, spec, args.queue, name=name)
            print("sweep: next: 'dvc exp run --run-all' runs them; 'house-prices experiments' "
                  "judges them against HEAD by the tie rule")

    run_cli(stage)


if __name__ == "__main__":
    sys.exit(main())
