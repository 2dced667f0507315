"""Nested cross-validation of the whole recipe: each choice the project makes by search is made
again inside every outer training part, and the outer folds score what was chosen.

    python bench/nested_cv.py run --out DIR [--fold-seeds 1000 ... 1004] [--mlp-configs 24]
                                  [--parts mlp lgbm lasso_svr krr enet gboost catboost
                                           lasso svr]
                                  [--workers 8] [--quick]
    python bench/nested_cv.py report DIR [--stacked DIR]

`run`: outer K-fold (the train stage's own KFold, on fold seeds no search has used) over the
1,460 houses. Each outer training part plays train.csv and its outer fold plays test.csv, as
`dvc repro` treats them: preprocessing fitted on the training part, the default fold plan inside
it, and for every candidate (the MLP's regularisation grid, each family's grid, each family's
default with the two outlier rows kept in training) the out-of-fold predictions on the training
part (what a search sees) and the mean of the fold models on the outer fold (what the submission
would hold). One file per outer fold and part, DIR/s{seed}_f{fold}_{part}.npz: the MLP's part
trains every config as one batched model (on the GPU when there is one); the families' parts run
in a process pool. Nothing of an outer fold reaches any inner choice: the outer fold's rows are
not in the training part that preprocessing, the inner folds and every fit see.

`report`: the selection and blending rules applied to those predictions, outer scores with paired
standard errors over the outer folds (every recipe is scored on the same outer folds), the
optimism of each search (its inner score minus its outer score), and the decision rule of
docs/model-search.md: a change beats the default only if its outer gain on all rows exceeds two
paired standard errors and it does not lose without the outlier rows. --stacked reads
`bench/stacked_regressions.py --save DIR` for the same fold seeds (the same outer folds).
"""

from __future__ import annotations

import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split

import argparse
import dataclasses
import itertools
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from common import ROOT, markdown_table
from sklearn.base import BaseEstimator, RegressorMixin

from pipeline.config.params import load_params
from pipeline.dataset.matrices import outlier_mask, preprocess
from pipeline.members import families, family, model_settings
from pipeline.scoring import compare
from pipeline.scoring.blending import Blender
from pipeline.scoring.ensemble import combine_log_predictions, rmse
from pipeline.scoring.folds import cv_metrics, plan_folds

FRESH_SEEDS = [1000, 1001, 1002, 1003, 1004]  # no search of this project has used these
# Each family's grid around its default (stated sizes, reported with the results).
# (The Lasso and plain SVR members' grids ran at tags lasso-member-2026-11, svr-member-2026-11.)
GRIDS = {
    "lgbm": {"num_leaves": [4, 8, 16], "min_child_samples": [3, 10]},
    "lasso_svr": {"gamma": [0.0003, 0.0005, 0.001], "power": [1.0, 2.0, 3.0]},
}
QUICK_GRIDS = {"lgbm": {"num_leaves": [16]}, "lasso_svr": {"power": [1.0]}}
WITH_OUTLIERS = "+outliers"  # suffix of a candidate trained with the outlier rows kept
# The "Stacked Regressions" recipe's own families, as candidate members on that recipe's
# preprocessing (bench/stacked_regressions.py) with its published settings.
RECIPE_FAMILIES = ("krr", "enet", "gboost")
# Candidate members on the raw columns with their library's published defaults (the `catboost`
# extra): CatBoost's ordered target statistics on the categorical columns instead of one-hot.
RAW_FAMILIES = ("catboost",)
# The previous default's two members that were removed since (tags lasso-member-2026-11,
# svr-member-2026-11), with the settings they had there, so the previous default (these two
# beside mlp, lgbm and lasso_svr, fitted weights) is a row of the same tables.
PREVIOUS_FAMILIES = ("lasso", "svr")
# New information for the normal houses (bench/candidates.py): comparable sales by nearest
# neighbours (its k and power searched inside each outer part; k = 5 is scikit-learn's default)
# and LightGBM with the neighbourhood's in-fold target statistic (published defaults).
CANDIDATE_FAMILIES = ("knn", "lgbm_te")
KNN_GRID = {"n_neighbors": [5, 10, 20], "power": [1.0, 2.0]}


def previous_member(name: str, train):
    """The removed Lasso member (train.lasso_*, the settings it had) or the plain RBF SVR."""
    from sklearn.linear_model import Lasso
    from sklearn.svm import SVR

    if name == "lasso":
        return Lasso(alpha=train.lasso_alpha, max_iter=train.lasso_max_iter, tol=train.lasso_tol)
    return SVR(kernel="rbf", C=50.0, epsilon=0.008, gamma=0.0002)


# --- run -----------------------------------------------------------------------------------------

@cache
def competition_frames() -> tuple[pd.DataFrame, np.ndarray]:
    train = pd.read_csv(ROOT / "data/bundled/kaggle_house_pred_train.csv")
    return train, outlier_mask(train, load_params(ROOT / "params.yaml").preprocess)


def outer_folds(fold_seed: int) -> np.ndarray:
    """The outer fold of each house: the train stage's KFold for this fold seed."""
    params = load_params(ROOT / "params.yaml")
    train, outlier = competition_frames()
    plan = plan_folds(len(train), outlier, dataclasses.replace(params.train, fold_seed=fold_seed,
                                                               n_seeds=1))
    return plan.fold_of_row


@cache
def outer_data(fold_seed: int, fold: int) -> dict:
    """The recipe's inputs with the outer training part as train.csv and the outer fold as
    test.csv (its prices removed): nothing fitted here sees an outer-fold row's price."""
    params = load_params(ROOT / "params.yaml")
    train, _ = competition_frames()
    held = outer_folds(fold_seed) == fold
    data = vars(preprocess(train[~held].reset_index(drop=True),
                           train[held].drop(columns=["SalePrice"]).reset_index(drop=True),
                           params.preprocess)).copy()  # its fields, with the outer fold's beside
    data["outer_rows"] = np.flatnonzero(held)
    data["y_outer"] = np.log(train["SalePrice"].to_numpy(dtype=np.float64)[held])
    return data


def grid(settings: dict, axes: dict) -> dict[str, dict]:
    """name -> settings for every combination of `axes` (the default's own values included)."""
    out = {"default": dict(settings)}
    for values in itertools.product(*axes.values()):
        changed = dict(zip(axes, values, strict=True))
        name = ",".join(f"{k}={v:g}" for k, v in changed.items())
        if any(settings[k] != v for k, v in changed.items()):
            out[name] = {**settings, **changed}
    return out


def mlp_grid(train, n_random: int, seed: int = 29) -> dict[str, object]:
    """The MLP's default and `n_random` configs around it, every searched knob drawn at once
    (the ranges of the GPU screening that set today's default)."""
    rng = np.random.default_rng(seed)
    configs = {"default": train}
    for i in range(n_random):
        configs[f"r{i:02d}"] = dataclasses.replace(
            train, lr=float(train.lr * np.exp(rng.uniform(np.log(0.5), np.log(2)))),
            weight_decay=float(train.weight_decay * np.exp(rng.uniform(np.log(0.25), np.log(2)))),
            dropout=float(rng.uniform(0.1, 0.5)), l1=float(rng.uniform(0, 0.0003)),
            l1_skip=float(train.l1_skip * np.exp(rng.uniform(np.log(0.5), np.log(2)))),
            huber_delta=float(rng.choice([0.0, rng.uniform(0.05, 0.25)], p=[0.2, 0.8])),
            lasso_input_power=float(rng.choice([0.0, rng.uniform(0.5, 2.5)], p=[0.2, 0.8])))
    return configs


def save_part(out: Path, seed: int, fold: int, part: str, preds: dict, data: dict, plan) -> None:
    arrays = {f"inner__{k}": v[0] for k, v in preds.items()}
    arrays |= {f"outer__{k}": v[1] for k, v in preds.items()}
    tmp = out / f".s{seed}_f{fold}_{part}.tmp.npz"
    np.savez(tmp, outer_rows=data["outer_rows"], y_outer=data["y_outer"], y_inner=data["y_train"],
             outlier_inner=data["outlier"], fold_inner=plan.fold_of_row, **arrays)
    os.replace(tmp, out / f"s{seed}_f{fold}_{part}.npz")


def run_recipe_family(name: str, seed: int, fold: int, out: str) -> str:
    """One of the stacked recipe's families on one outer fold, fitted on the member plan (the
    outlier rows out, as the recipe drops them) on the recipe's features of the outer training
    part and fold (fitted on both parts' features, as the recipe does; no outer price)."""
    from stacked_regressions import base_models, recipe_features

    from pipeline.scoring.predictions import cross_fit, member_plan

    params = load_params(ROOT / "params.yaml")
    train, _ = competition_frames()
    data = outer_data(seed, fold)
    held = np.zeros(len(train), dtype=bool)
    held[data["outer_rows"]] = True
    x, x_outer = recipe_features(train[~held].reset_index(drop=True),
                                 train[held].drop(columns=["SalePrice"]).reset_index(drop=True))
    plan = member_plan(len(data["y_train"]), data["outlier"], params, True)
    model = base_models(seed)[name]
    preds = {"default": cross_fit(model, x, data["y_train"], x_outer, plan)}
    save_part(Path(out), seed, fold, name, preds, data, plan)
    return f"s{seed}_f{fold}_{name}"


class CatBoostOnColumns(RegressorMixin, BaseEstimator):
    """CatBoost with its published defaults on the raw columns, the text ones as categorical
    (ordered target statistics); one thread, as the pool's workers share the cores."""

    def __init__(self, seed: int):
        self.seed = seed

    def fit(self, x: pd.DataFrame, y: np.ndarray):
        from catboost import CatBoostRegressor

        categorical = list(x.columns[[not pd.api.types.is_numeric_dtype(t) for t in x.dtypes]])
        self.model = CatBoostRegressor(random_seed=self.seed, thread_count=1, verbose=False,
                                       allow_writing_files=False, cat_features=categorical)
        self.model.fit(x, y)
        return self

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        return self.model.predict(x)


def raw_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The competition's columns as CatBoost takes them: text with "NA" for missing."""
    frame = frame.drop(columns=[c for c in ("Id", "SalePrice") if c in frame])
    text = frame.columns[[not pd.api.types.is_numeric_dtype(t) for t in frame.dtypes]]
    return frame.astype({c: object for c in text}).fillna({c: "NA" for c in text})


def run_raw_family(name: str, seed: int, fold: int, out: str) -> str:
    """A raw-column family on one outer fold, with the outlier rows out (as the members train)
    and kept (the middle way of learning the partial sales), on the member plan's folds."""
    from pipeline.scoring.predictions import cross_fit, member_plan

    params = load_params(ROOT / "params.yaml")
    train, _ = competition_frames()
    data = outer_data(seed, fold)
    held = np.zeros(len(train), dtype=bool)
    held[data["outer_rows"]] = True
    x, x_outer = raw_columns(train[~held].reset_index(drop=True)), raw_columns(train[held])
    preds = {}
    for label, exclude in (("default", True), ("default" + WITH_OUTLIERS, False)):
        p = dataclasses.replace(params, train=dataclasses.replace(params.train,
                                                                  exclude_outliers=exclude))
        plan = member_plan(len(data["y_train"]), data["outlier"], p, exclude)
        preds[label] = cross_fit(CatBoostOnColumns(seed), x, data["y_train"],
                                 x_outer.reset_index(drop=True), plan)
    save_part(Path(out), seed, fold, name, preds, data,
              member_plan(len(data["y_train"]), data["outlier"], params, True))
    return f"s{seed}_f{fold}_{name}"


def run_candidate(name: str, seed: int, fold: int, out: str) -> str:
    """A candidate of bench/candidates.py on one outer fold, on the member plan's folds (the
    outlier rows out, as the members train): knn's grid (its default first), or lgbm_te."""
    from candidates import LassoScaledKNN, NeighbourhoodTargetLGBM

    from pipeline.members._lasso import lasso_settings
    from pipeline.scoring.predictions import cross_fit, member_plan

    params = load_params(ROOT / "params.yaml")
    data = outer_data(seed, fold)
    x, y = data["x_train"].astype(np.float64), data["y_train"]
    x_outer = data["x_test"].astype(np.float64)
    plan = member_plan(len(y), data["outlier"], params, True)
    preds = {}
    if name == "knn":
        lasso = lasso_settings(params.train)
        for k, power in itertools.product(*KNN_GRID.values()):
            label = "default" if (k, power) == (5, 2.0) else f"n_neighbors={k},power={power:g}"
            preds[label] = cross_fit(LassoScaledKNN(k, power, lasso.alpha, lasso.max_iter,
                                                    lasso.tol), x, y, x_outer, plan)
    else:
        train, _ = competition_frames()
        held = np.zeros(len(train), dtype=bool)
        held[data["outer_rows"]] = True
        levels = {n: i for i, n in enumerate(sorted(train["Neighborhood"].unique()))}
        code = train["Neighborhood"].map(levels).to_numpy(dtype=np.float64)[:, None]
        lgbm = family("lgbm").make_model(model_settings(params.members.lgbm), params.train)
        preds["default"] = cross_fit(NeighbourhoodTargetLGBM(lgbm), np.hstack([x, code[~held]]),
                                     y, np.hstack([x_outer, code[held]]), plan)
    save_part(Path(out), seed, fold, name, preds, data, plan)
    return f"s{seed}_f{fold}_{name}"


def run_family(name: str, seed: int, fold: int, out: str, quick: bool, defaults_only: bool = False
               ) -> str:
    """Every candidate of one family on one outer fold: (inner out-of-fold, outer) predictions."""
    from pipeline.scoring.predictions import cross_fit, member_plan

    if name in RECIPE_FAMILIES:
        return run_recipe_family(name, seed, fold, out)
    if name in RAW_FAMILIES:
        return run_raw_family(name, seed, fold, out)
    if name in CANDIDATE_FAMILIES:
        return run_candidate(name, seed, fold, out)
    params = load_params(ROOT / "params.yaml")
    data = outer_data(seed, fold)
    x, y = data["x_train"].astype(np.float64), data["y_train"]
    x_outer = data["x_test"].astype(np.float64)
    if name in PREVIOUS_FAMILIES:
        plan = member_plan(len(y), data["outlier"], params, True)
        preds = {"default": cross_fit(previous_member(name, params.train), x, y, x_outer, plan)}
        save_part(Path(out), seed, fold, name, preds, data, plan)
        return f"s{seed}_f{fold}_{name}"
    # "default" leaves the outlier rows out and "default+outliers" keeps them, whatever
    # params.yaml chose for the family (members.NAME.exclude_outliers): report has both
    settings = model_settings(getattr(params.members, name))
    candidates = {k: (v, True) for k, v in grid(settings, (QUICK_GRIDS if quick else GRIDS)[name]
                                                  ).items()}
    candidates["default" + WITH_OUTLIERS] = (settings, False)
    if defaults_only:
        candidates = {"default": (settings, True)}
    preds = {}
    for label, (chosen, exclude) in candidates.items():
        p = dataclasses.replace(params, train=dataclasses.replace(params.train,
                                                                  exclude_outliers=exclude))
        plan = member_plan(len(y), data["outlier"], p, p.train.exclude_outliers)
        preds[label] = cross_fit(family(name).make_model(chosen, params.train), x, y,
                                 x_outer, plan)
    save_part(Path(out), seed, fold, name, preds, data,
              member_plan(len(y), data["outlier"], params, True))
    return f"s{seed}_f{fold}_{name}"


def run_mlp(seed: int, fold: int, out: Path, configs: dict, device, defaults_only: bool = False
            ) -> None:
    """The MLP's candidates on one outer fold, each config's 15 fold x view models in one batch;
    plus the default on one encoding and the default with the outlier rows trained on."""
    from pipeline.dataset.views import Views
    from pipeline.members.mlp.fit import fit_mlp_configs
    from pipeline.members.mlp.predict import clip_to_range, oof_predictions

    params = load_params(ROOT / "params.yaml")
    data = outer_data(seed, fold)
    y, outlier = data["y_train"], data["outlier"]
    views, views_outer = data["mlp_train"], data["mlp_test"]
    single, single_outer = Views.coerce(data["x_train"]), Views.coerce(data["x_test"])
    batches = [(views, views_outer, params.train, dict(configs)),
               (single, single_outer, params.train, {"default,one_view": params.train})]
    with_outliers = dataclasses.replace(params.train, exclude_outliers=False)
    batches.append((views, views_outer, with_outliers, {"default" + WITH_OUTLIERS: with_outliers}))
    if defaults_only:
        batches = [(views, views_outer, params.train, {"default": params.train})]
    preds = {}
    for x, x_outer, plan_params, batch in batches:
        plan = plan_folds(len(y), outlier, plan_params, len(x))
        results = fit_mlp_configs(x, y, plan, list(batch.values()), device,
                                  label=f"s{seed} f{fold}")
        clipped = Views(clip_to_range(x_outer.x, x.x)[0], x_outer.widths)
        for label, result in zip(batch, results, strict=True):
            log_pred = result.models.predict_log_price(clipped.model_input()).numpy()
            preds[label] = (oof_predictions(result.models, x, plan, params.ensemble.average),
                            combine_log_predictions(log_pred, params.ensemble.average))
    save_part(out, seed, fold, "mlp", preds, data, plan_folds(len(y), outlier, params.train))


def run_mlp_job(seed: int, fold: int, out: str, n_configs: int, device_name: str,
                defaults_only: bool = False) -> str:
    """One outer fold's MLP part in a worker process (several share one GPU)."""
    from pipeline.engine.device import make_deterministic, resolve_device

    device = resolve_device(device_name)
    make_deterministic(device)
    params = load_params(ROOT / "params.yaml")
    run_mlp(seed, fold, Path(out), mlp_grid(params.train, n_configs), device,
            defaults_only)
    return f"s{seed}_f{fold}_mlp"


def command_run(args) -> None:
    import multiprocessing

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params = load_params(ROOT / "params.yaml")
    jobs = [(s, f) for s in args.fold_seeds for f in range(params.train.folds)]
    if args.limit:
        jobs = jobs[:args.limit]
    todo = [(p, s, f) for s, f in jobs for p in args.parts
            if not (out / f"s{s}_f{f}_{p}.npz").exists()]  # a rerun resumes
    started = time.perf_counter()
    spawn = multiprocessing.get_context("spawn")
    # One BLAS thread per worker process: the pools fill the cores, not each fit.
    os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with ProcessPoolExecutor(max(1, args.workers), mp_context=spawn) as pool, \
            ProcessPoolExecutor(max(1, args.mlp_workers), mp_context=spawn) as mlp_pool:
        futures = [mlp_pool.submit(run_mlp_job, s, f, str(out), args.mlp_configs, args.device,
                                   args.defaults_only) for p, s, f in todo if p == "mlp"]
        futures += [pool.submit(run_family, p, s, f, str(out), args.quick, args.defaults_only)
                    for p, s, f in todo if p != "mlp"]
        for future in as_completed(futures):
            print(f"{time.perf_counter() - started:6.0f} s  {future.result()}", flush=True)
    print(f"nested run: {len(todo)} part(s) in {time.perf_counter() - started:.0f} s -> {out}")


# --- report --------------------------------------------------------------------------------------

def load_results(directory: Path) -> list[dict]:
    """One dict per outer fold holding every part that exists for it."""
    folds: dict = {}
    for path in sorted(directory.glob("s*_f*_*.npz")):
        seed, fold, part = path.stem.split("_", 2)
        entry = folds.setdefault((int(seed[1:]), int(fold[1:])), {"parts": {}})
        with np.load(path) as data:
            for key in ("outer_rows", "y_outer", "y_inner", "outlier_inner", "fold_inner"):
                entry[key] = data[key]
            entry["parts"][part] = {k.split("__", 1)[1]: (data[k], data["outer__" + k.split("__")[1]])
                                    for k in data.files if k.startswith("inner__")}
    return [{"seed": s, "fold": f, **v} for (s, f), v in sorted(folds.items())]


def inner_score(oof, entry, metric: str) -> float:
    return cv_metrics(oof, entry["y_inner"], entry["outlier_inner"], entry["fold_inner"])[metric]


def select(entry: dict, part: str, rule: str, metric: str) -> str:
    """The candidate a rule takes: `default` (params.yaml), or `search` (the best inner CV of
    the candidates trained as the default trains, outliers left out), or `search+outliers`."""
    candidates = entry["parts"][part]
    if rule == "default":
        return "default"
    names = [n for n in candidates if not n.endswith(WITH_OUTLIERS) and "one_view" not in n]
    if rule == "search+outliers":
        names = list(candidates)
    return min(names, key=lambda n: (inner_score(candidates[n][0], entry, metric), n))


def blend_outer(entry: dict, chosen: dict[str, str], method: str) -> np.ndarray:
    """Outer log prices of a blend of the chosen candidates, its weights (if any) fitted on the
    inner out-of-fold rows as the blend stage fits them (`shrunk`: halfway between the fitted
    weights and equal ones)."""
    inner = np.stack([entry["parts"][p][c][0] for p, c in chosen.items()], axis=1)
    outer = np.stack([entry["parts"][p][c][1] for p, c in chosen.items()], axis=1)
    y, fit_rows = entry["y_inner"], ~entry["outlier_inner"]
    fitted = Blender("weights" if method == "shrunk" else method, 1.0).fit(inner[fit_rows],
                                                                            y[fit_rows])
    if method == "shrunk":
        return 0.5 * fitted.predict(outer) + 0.5 * outer.mean(axis=1)
    return fitted.predict(outer)


def score_recipe(results: list[dict], members: list[str], rule: str, method: str,
                 metric: str = "cv_rmse_no_outliers", force: str | None = None,
                 force_member: tuple[str, str] | None = None) -> dict:
    """Outer RMSE per outer fold, on all rows and with the outlier rows not scored; and each
    house's outer log price per fold seed ("pred", [seeds, houses], for the house-level rule)."""
    all_rows, clean = [], []
    train, outlier = competition_frames()
    seeds = sorted({e["seed"] for e in results})
    house_pred = np.full((len(seeds), len(train)), np.nan)
    for entry in results:
        if not all(p in entry["parts"] for p in members):
            raise SystemExit(f"s{entry['seed']} f{entry['fold']}: missing parts "
                             f"{[p for p in members if p not in entry['parts']]}; run them first")
        chosen = {p: (force if force in entry["parts"][p] else select(entry, p, rule, metric))
                  for p in members}
        if force_member is not None:
            chosen[force_member[0]] = force_member[1]
        pred = blend_outer(entry, chosen, method)
        y, rows = entry["y_outer"], entry["outer_rows"]
        keep = ~outlier[rows]
        all_rows.append(rmse(pred, y))
        clean.append(rmse(pred[keep], y[keep]))
        house_pred[seeds.index(entry["seed"]), rows] = pred
    return {"all": np.array(all_rows), "clean": np.array(clean), "pred": house_pred,
            "honest": rule != "default"}


def edge_rows(entry: dict) -> np.ndarray:
    """Outer-fold houses at the edge of what the training part holds: larger, newer or of
    better quality than 97.5% of its houses (where extrapolating members stray)."""
    train, _ = competition_frames()
    held = np.zeros(len(train), dtype=bool)
    held[entry["outer_rows"]] = True
    edge = np.zeros(len(entry["outer_rows"]), dtype=bool)
    for column in ("GrLivArea", "YearBuilt", "OverallQual"):
        values = train[column].to_numpy(dtype=float)
        edge |= values[held] > np.quantile(values[~held], 0.975)
    return edge


HONEST = "searched inside each outer part"
PUBLISHED = "published defaults"
OPTIMISTIC = "chosen on these houses (optimistic)"


def recipe_table(results: list[dict], recipes: dict[str, dict], baseline: str) -> str:
    """One row per recipe, scored house by house (each house's squared error averaged over the
    fold seeds; RMSE over the houses), compared with the baseline by the house-level rule of
    pipeline/scoring/compare.py (a paired bootstrap over houses, on all rows and on the normal houses).
    Only honest rows decide: settings searched again inside each outer part, or published."""
    train, outlier = competition_frames()
    y = np.log(train["SalePrice"].to_numpy(dtype=np.float64))
    errors = {label: compare.house_errors(r["pred"], y) for label, r in recipes.items()}
    base = errors[baseline]
    rows = []
    for label, r in recipes.items():
        err = errors[label]
        diffs = compare.houses(err, base, outlier)
        kind = r.get("kind") or (HONEST if r["honest"] else OPTIMISTIC)
        rule = compare.decide(diffs)
        if label == baseline:
            rule = "(baseline)"
        elif kind == OPTIMISTIC:
            rule = f"decides nothing ({rule})"
        rows.append([label, kind, f"{np.sqrt(err.mean()):.4f}", f"{np.sqrt(err[~outlier].mean()):.4f}",
                     *(f"{d:+.4f} ± {se:.4f}" for d, se in diffs.values()), rule])
    return markdown_table(["recipe", "settings", "all rows", "normal houses",
                           "vs baseline, all rows", "vs baseline, normal houses", "rule"], rows)


def fold_table(recipes: dict[str, dict], baseline: str) -> str:
    """The outer scores per fold (mean over the outer folds, paired SE over the folds): the
    old instrument, kept beside the house-level one to show what its SE claimed."""
    default = recipes[baseline]
    rows = []
    for label, r in recipes.items():
        if "all" not in r:
            continue
        d_all = compare.paired(r["all"], default["all"])
        d_clean = compare.paired(r["clean"], default["clean"])
        rows.append([label, f"{r['all'].mean():.4f}", f"{r['clean'].mean():.4f}",
                     f"{d_all[0]:+.4f} ± {d_all[1]:.4f}", f"{d_clean[0]:+.4f} ± {d_clean[1]:.4f}"])
    return markdown_table(["recipe", "mean over folds, all rows", "outliers not scored",
                           "vs baseline, all rows (fold SE)", "no outliers (fold SE)"], rows)


def optimism_table(results: list[dict], members: list[str]) -> str:
    """Each family's search inside the outer training parts: the gain over its default that the
    inner CV promised, the gain the outer folds gave, and the optimism (promised minus given)."""
    rows = []
    for member in members:
        promised, given = [], []
        _, outlier = competition_frames()
        for entry in results:
            chosen = select(entry, member, "search", "cv_rmse_no_outliers")
            inner = {c: inner_score(entry["parts"][member][c][0], entry, "cv_rmse_no_outliers")
                     for c in (chosen, "default")}
            keep = ~outlier[entry["outer_rows"]]
            outer = {c: rmse(entry["parts"][member][c][1][keep], entry["y_outer"][keep])
                     for c in (chosen, "default")}
            promised.append(inner["default"] - inner[chosen])
            given.append(outer["default"] - outer[chosen])
        promised, given = np.array(promised), np.array(given)
        d = promised - given
        searched = [n for n in results[0]["parts"][member]
                    if not n.endswith(WITH_OUTLIERS) and "one_view" not in n]
        rows.append([member, len(searched) - 1, f"{promised.mean():+.4f}",
                     f"{given.mean():+.4f} ± {given.std(ddof=1) / np.sqrt(len(given)):.4f}",
                     f"{d.mean():+.4f} ± {d.std(ddof=1) / np.sqrt(len(d)):.4f}"])
    return markdown_table(["family", "candidates besides the default", "gain the inner CV promised",
                           "gain on the outer folds", "optimism (promised - given)"], rows)


def edge_table(results: list[dict], members: list[str], blend_label: str, blend_preds) -> str:
    """Each member's (default settings) outer error on the edge houses and on the rest."""
    _, outlier = competition_frames()
    errors: dict[str, list] = {}
    for i, entry in enumerate(results):
        edge = edge_rows(entry)
        keep = ~outlier[entry["outer_rows"]]
        for name in [*members, blend_label]:
            pred = blend_preds[i] if name == blend_label else entry["parts"][name]["default"][1]
            errors.setdefault(name, []).append((pred - entry["y_outer"], edge, keep))
    rows = []
    for name, parts in errors.items():
        residual = np.concatenate([p[0] for p in parts])
        edge = np.concatenate([p[1] for p in parts])
        keep = np.concatenate([p[2] for p in parts])
        rows.append([name, int((edge & keep).sum()), f"{rmse(residual[edge & keep], 0):.4f}",
                     f"{residual[edge & keep].mean():+.4f}", f"{rmse(residual[~edge & keep], 0):.4f}"])
    return markdown_table(["model", "edge houses (all shuffles)", "RMSE on them", "mean residual",
                           "RMSE on the rest"], rows)


def command_report(args) -> None:
    results = load_results(Path(args.dir))
    if not results:
        raise SystemExit(f"{args.dir}: no results; run `bench/nested_cv.py run` first")
    params = load_params(ROOT / "params.yaml")
    have = set.intersection(*(set(e["parts"]) for e in results))
    members = [m for m in params.ensemble.members if m in have]
    if members != list(params.ensemble.members):
        raise SystemExit(f"{args.dir}: has no {set(params.ensemble.members) - have} parts")
    others = sorted(have - set(members) - set(PREVIOUS_FAMILIES) - {"lgbm_te"})
    method = params.ensemble.blend
    recipes: dict[str, dict] = {}

    def add(label, names=members, rule="default", how=method, **kw):
        recipes[label] = score_recipe(results, list(names), rule, how, **kw)

    def everywhere(candidate: str) -> bool:
        return all(candidate in e["parts"][m] for e in results for m in members)

    def everywhere_in(part: str, candidate: str) -> bool:
        return all(candidate in e["parts"][part] for e in results)

    fixed = f"default: {' + '.join(members)}, blend {method}, params.yaml's settings"
    searched = everywhere("default" + WITH_OUTLIERS)  # not a --defaults-only run
    baseline = "default recipe, every setting searched inside" if searched else fixed
    if searched:
        add(baseline, rule="search")
        add("the same, searched by the all-rows CV", rule="search", metric="cv_rmse")
        add("the same, outliers in/out searched too", rule="search+outliers")
    for label, directory in [("the Stacked Regressions recipe", args.stacked),
                             *((f"AutoGluon best_quality ({name})", d) for name, d in
                               (p.split("=", 1) for p in args.peer))]:
        if directory:
            prefix = "stacked" if label.startswith("the Stacked") else "autogluon"
            recipes[label] = peer_scores(results, Path(directory), prefix)
    add(fixed)
    previous = ["mlp", "lasso", "lgbm", "svr", "lasso_svr"]
    if set(previous) <= have:
        add("previous default: " + " + ".join(previous) + ", fitted weights", previous,
            how="weights")
    for how in ("equal", "weights", "ridge", "shrunk"):
        if how != method:
            add(f"default members, blend {how}", how=how)
    for member in members:
        if len(members) > 1:
            add(f"without {member}", [m for m in members if m != member])
    for other in others:  # a candidate member with its published settings, beside the default
        rule = "search" if searched else "default"  # the default's own settings as in its row
        add(f"with {other}", [*members, other], rule=rule)
        if everywhere_in(other, "default" + WITH_OUTLIERS):
            recipes[f"with {other} trained on every row"] = score_recipe(
                results, [*members, other], rule, method,
                force_member=(other, "default" + WITH_OUTLIERS))
    if "lgbm_te" in have and "lgbm" in members:  # a replacement, not a fourth member
        rule = "search" if searched else "default"
        add("lgbm given the neighbourhood's in-fold target statistic (lgbm_te)",
            [("lgbm_te" if m == "lgbm" else m) for m in members], rule=rule)
        if searched:  # its control: lgbm at the same (params.yaml's) settings, no statistic
            add("lgbm at params.yaml's settings, the others searched inside (lgbm_te's control)",
                rule="search", force_member=("lgbm", "default"))
    if searched:
        add("every member trained with the outlier rows", force="default" + WITH_OUTLIERS)
        recipes.update(gated_rows(results, members, method, recipes[baseline]))
        recipes.update(region_rows(results, baseline, recipes[baseline]))
        # leaving the outlier rows out of a member is an option that must win: each member
        # learning from every row (its default settings, the others searched inside), and all
        # three, each with the rare sales priced as the default prices them
        for label, force in [*((f"{m} learns from every row", (m, "default" + WITH_OUTLIERS))
                               for m in members),
                             *((f"{m} at params.yaml's settings (the control)", (m, "default"))
                               for m in members),
                             ("every member learns from every row", None)]:
            if force is None:
                base = score_recipe(results, members, "search", method,
                                    force="default" + WITH_OUTLIERS)
            else:
                base = score_recipe(results, members, "search", method, force_member=force)
            recipes[f"{label}, + rare sales by comparable sales"] = next(iter(
                region_rows(results, label, base).values()))
        for member in members:
            recipes[f"{member} trained with the outlier rows"] = score_recipe(
                results, members, "default", method, force_member=(member, "default" + WITH_OUTLIERS))
    if "mlp" in members and all("default,one_view" in e["parts"]["mlp"] for e in results):
        add("the MLP on one encoding (preprocess.mlp_views: [])", force="default,one_view")
    for member in members:
        add(f"{member} alone", [member])
    if args.bag:
        recipes.update(bagged_rows(results, members, method, fixed, [Path(d) for d in args.bag]))
    for swap in args.member_from:
        name, directory = swap.split("=", 1)
        recipes.update(swapped_rows(results, members, method, fixed, name, Path(directory)))
    seeds = sorted({e["seed"] for e in results})
    print(f"# Nested CV: {len(results)} outer folds (fold seeds {' '.join(map(str, seeds))})\n")
    print("Outer log-RMSE over the houses (each house's squared error averaged over the fold "
          "seeds); differences from the baseline ± one standard error of a paired bootstrap over "
          f"houses ({compare.BOOTSTRAP_SAMPLES} draws), on all rows and on the normal houses (the "
          "two partial sales left out); rule: pipeline/scoring/compare.py. Only honest rows decide.\n")
    print(recipe_table(results, recipes, baseline))
    for against in args.against:
        if against not in recipes:
            raise SystemExit(f"--against {against!r}: no such row (rows: {', '.join(recipes)})")
        print(f"\n## The same rows against {against}\n")
        print(recipe_table(results, recipes, against))
    print("\n## Paired decisions: each change against its own control\n")
    print(paired_table(recipes, members))
    print("\n## The houses above the region's living area: held-out log price by recipe\n")
    print(region_table(recipes))
    print("\n## The same rows by outer fold (the paired SE over folds the old rule used)\n")
    print(fold_table(recipes, baseline))
    searched_parts = [m for m in ("mlp", *sorted(have - {"mlp"}))
                      if all(len(e["parts"][m]) > 2 for e in results)]
    if searched_parts:
        print("\n## The searches, re-run inside each outer training part (outliers not scored)\n")
        print(optimism_table(results, searched_parts))
    blend_preds = [blend_outer(e, {m: "default" for m in members}, method) for e in results]
    print("\n## Edge houses: larger, newer or better than 97.5% of the training part "
          "(outliers not scored)\n")
    print(edge_table(results, [*members, *others], "default blend", blend_preds))


def bagged_rows(results: list[dict], members: list[str], method: str, fixed: str,
                bags: list[Path]) -> dict[str, dict]:
    """The fixed default with each member's outer prediction averaged over the fold models of
    several inner fold shuffles (`run --defaults-only` with other train.fold_seed values, one
    DIR each), beside the same settings on one shuffle: what bagging over shuffles adds."""
    extra = [{(e["seed"], e["fold"]): e for e in load_results(d)} for d in bags]
    bagged = []
    for entry in results:
        parts = dict(entry["parts"])
        for m in members:
            outers = [entry["parts"][m]["default"][1]]
            outers += [b[(entry["seed"], entry["fold"])]["parts"][m]["default"][1] for b in extra]
            parts[m] = {**parts[m], "default": (entry["parts"][m]["default"][0],
                                                np.mean(outers, axis=0))}
        bagged.append({**entry, "parts": parts})
    label = f"{fixed}, each member bagged over {len(bags) + 1} inner fold shuffles"
    return {label: score_recipe(bagged, members, "default", method)}


def swapped_rows(results: list[dict], members: list[str], method: str, fixed: str, name: str,
                 directory: Path) -> dict[str, dict]:
    """The fixed default with member `name`'s predictions from another `run --defaults-only`
    (DIR: e.g. run with other preprocess.* settings in params.yaml, the member on another
    encoding of the houses), beside the default's own."""
    other = {(e["seed"], e["fold"]): e for e in load_results(directory)}
    swapped = [{**e, "parts": {**e["parts"], name: other[(e["seed"], e["fold"])]["parts"][name]}}
               for e in results]
    return {f"{fixed}, {name} from {directory.name}": score_recipe(swapped, members, "default",
                                                                    method)}


def outer_scores(results: list[dict], pred: np.ndarray) -> dict:
    """Per outer fold RMSE, on all rows and on the normal houses, of house predictions
    `pred` [seeds, houses] (what recipe_table and fold_table read)."""
    train, outlier = competition_frames()
    y = np.log(train["SalePrice"].to_numpy(dtype=np.float64))
    seeds = sorted({e["seed"] for e in results})
    out = {"all": [], "clean": []}
    for entry in results:
        rows = entry["outer_rows"]
        p = pred[seeds.index(entry["seed"]), rows]
        keep = ~outlier[rows]
        out["all"].append(rmse(p, y[rows]))
        out["clean"].append(rmse(p[keep], y[rows][keep]))
    return {"all": np.array(out["all"]), "clean": np.array(out["clean"]), "pred": pred}


def peer_scores(results: list[dict], directory: Path, prefix: str) -> dict:
    """A peer's outer predictions on the same outer folds (DIR/{prefix}_oof_fs{seed}.npy): the
    stacked recipe's (`stacked_regressions.py --save`) or AutoGluon's (`autogluon_peer.py`)."""
    train, _ = competition_frames()
    seeds = sorted({e["seed"] for e in results})
    pred = np.full((len(seeds), len(train)), np.nan)
    for i, seed in enumerate(seeds):
        path = directory / f"{prefix}_oof_fs{seed}.npy"
        if not path.is_file():
            raise SystemExit(f"{path}: missing; run the peer on fold seed {seed} first")
        pred[i] = np.load(path)
    return {**outer_scores(results, pred), "honest": True, "kind": PUBLISHED}


def gated_rows(results: list[dict], members: list[str], method: str, base: dict) -> dict:
    """The middle way for the partial sales: the houses above the outlier rule's living area
    (preprocess.outlier_min_gr_liv_area: De Cock's published 4,000 sq ft) priced by models
    trained on every row, the partial sales kept (LightGBM alone, or every member), the rest by
    the baseline `base`. Fixed settings chosen on these houses, so the rows decide nothing."""
    train, _ = competition_frames()
    limit = load_params(ROOT / "params.yaml").preprocess.outlier_min_gr_liv_area
    big = train["GrLivArea"].to_numpy(dtype=float) > limit
    kept = "default" + WITH_OUTLIERS
    sources = {"LightGBM": score_recipe(results, ["lgbm"], "default", method, force=kept),
               "every member": score_recipe(results, members, "default", method, force=kept)}
    rows = {}
    for name, source in sources.items():
        pred = base["pred"].copy()
        pred[:, big] = source["pred"][:, big]
        label = f"a gate: houses above {limit:g} sq ft priced by {name} trained on every row"
        rows[label] = {**outer_scores(results, pred), "honest": False}
    return rows


def region_rows(results: list[dict], base_label: str, base: dict) -> dict:
    """The region-limited change (ensemble.rare_sales): the houses of the region fixed on
    features alone (GrLivArea above ensemble.rare_sale_min_gr_liv_area, SaleCondition one of
    ensemble.rare_sale_conditions) priced from the outer training part's houses in it -- by their
    mean log price (comparable sales, the default), or by LightGBM trained on every row -- and
    every other house by `base`, unchanged (checked). No setting is fitted on these houses."""
    from pipeline.scoring.rare_sales import in_region

    params = load_params(ROOT / "params.yaml")
    train, _ = competition_frames()
    region = in_region(train, params.ensemble)
    y = np.log(train["SalePrice"].to_numpy(dtype=np.float64))
    seeds = sorted({e["seed"] for e in results})
    comparable = base["pred"].copy()
    lgbm_all = base["pred"].copy()
    kept = "default" + WITH_OUTLIERS
    for entry in results:
        s, rows = seeds.index(entry["seed"]), entry["outer_rows"]
        training = np.ones(len(train), dtype=bool)
        training[rows] = False
        here = rows[region[rows]]
        if (region & training).any():
            comparable[s, here] = y[region & training].mean()
        if kept in entry["parts"].get("lgbm", {}):
            lgbm_all[s, here] = entry["parts"]["lgbm"][kept][1][region[rows]]
    out = {}
    for label, pred in ((f"{base_label} + rare sales priced by comparable sales", comparable),
                        (f"{base_label} + rare sales priced by LightGBM trained on every row",
                         lgbm_all)):
        outside = ~region[None, :] & ~np.isnan(base["pred"])
        assert np.array_equal(pred[outside], base["pred"][outside]), "a house outside moved"
        out[label] = {**outer_scores(results, pred), "honest": base["honest"],
                      "kind": base.get("kind")}
    return out


def paired_table(recipes: dict[str, dict], members: list[str]) -> str:
    """Each change beside the row that differs from it in that change alone (the same members'
    settings, the same region rule), by the house-level rule: what decides it."""
    train, outlier = competition_frames()
    y = np.log(train["SalePrice"].to_numpy(dtype=np.float64))
    region = ", + rare sales by comparable sales"
    pairs = [(f"{m} learns from every row{region}",
              f"{m} at params.yaml's settings (the control){region}") for m in members]
    pairs += [("lgbm given the neighbourhood's in-fold target statistic (lgbm_te)",
               "lgbm at params.yaml's settings, the others searched inside (lgbm_te's control)"),
              ("default recipe, every setting searched inside + rare sales priced by comparable "
               "sales", "default recipe, every setting searched inside"),
              ("with knn", "default recipe, every setting searched inside")]
    rows = []
    for change, control in pairs:
        if change in recipes and control in recipes:
            diffs = compare.houses(compare.house_errors(recipes[change]["pred"], y),
                                   compare.house_errors(recipes[control]["pred"], y), outlier)
            rows.append([change, control, *(f"{d:+.4f} ± {se:.4f}" for d, se in diffs.values()),
                         compare.decide(diffs)])
    return markdown_table(["change", "against", "all rows", "normal houses", "rule"], rows)


def region_table(recipes: dict[str, dict]) -> str:
    """Each house of the region and the two normal houses above the same living area: its
    true log price and the outer log price each recipe gave it (mean over the fold seeds)."""
    params = load_params(ROOT / "params.yaml")
    train, _ = competition_frames()
    big = train["GrLivArea"].to_numpy(dtype=float) > params.ensemble.rare_sale_min_gr_liv_area
    y = np.log(train["SalePrice"].to_numpy(dtype=np.float64))
    idx = np.flatnonzero(big)
    header = ["recipe", *(f"Id {train['Id'][i]} ({train['SaleCondition'][i]}, true "
                          f"{y[i]:.2f})" for i in idx)]
    rows = [[label, *(f"{np.nanmean(r['pred'][:, i]):.2f} (err {abs(np.nanmean(r['pred'][:, i]) - y[i]):.2f})"
                      for i in idx)] for label, r in recipes.items()]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train every candidate on every outer fold")
    run.add_argument("--out", required=True)
    run.add_argument("--fold-seeds", type=int, nargs="+", default=FRESH_SEEDS)
    run.add_argument("--parts", nargs="+", default=["mlp", *families()],
                     choices=["mlp", *families(), *RECIPE_FAMILIES, *RAW_FAMILIES,
                              *PREVIOUS_FAMILIES, *CANDIDATE_FAMILIES])
    run.add_argument("--mlp-configs", type=int, default=24,
                     help="random configs around the MLP's default (plus the default)")
    run.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    run.add_argument("--device", default="auto")
    run.add_argument("--mlp-workers", type=int, default=1,
                     help="processes training the MLP parts (they can share one GPU)")
    run.add_argument("--limit", type=int, help="only the first N outer folds (a smoke run)")
    run.add_argument("--quick", action="store_true", help="one-point family grids (a smoke run)")
    run.add_argument("--defaults-only", action="store_true",
                     help="only params.yaml's settings (confirming a fixed recipe on new shuffles)")
    report = sub.add_parser("report", help="score recipes from a run's predictions")
    report.add_argument("dir")
    report.add_argument("--stacked", help="directory of stacked_oof_fs{seed}.npy")
    report.add_argument("--bag", action="append", default=[], metavar="DIR",
                        help="a --defaults-only run with another train.fold_seed (repeatable): "
                             "adds the default bagged over those inner shuffles")
    report.add_argument("--member-from", action="append", default=[], metavar="NAME=DIR",
                        help="the default with member NAME's predictions from another "
                             "--defaults-only run (other preprocessing, say); repeatable")
    report.add_argument("--against", action="append", default=[], metavar="LABEL",
                        help="also print the table with this row as the baseline (a peer's: "
                             "'AutoGluon best_quality (NAME)')")
    report.add_argument("--peer", action="append", default=[], metavar="NAME=DIR",
                        help="AutoGluon's outer predictions (autogluon_peer.py --out DIR), "
                             "named NAME (e.g. its time limit) in the table; repeatable")
    args = parser.parse_args()
    command_run(args) if args.command == "run" else command_report(args)


if __name__ == "__main__":
    main()
