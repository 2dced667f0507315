"""Stage 4: blend the members' predictions and write submission.csv.

`ensemble.blend: equal` (the default) takes the members' mean log price: nothing is fitted, and
by nested CV on shuffles no search had seen it generalises better than fitted weights
(docs/model-search.md). `weights` fits non-negative weights that sum to one (least squares on
the out-of-fold log prices; the outlier rows, which no model trains on, are left out of the
fit); `ridge` fits a ridge meta-model with an intercept. Fitted or not, the blend's CV is
nested: for each fold, the weights are fitted on the other folds' out-of-fold rows only and
scored on that fold, so no weight ever sees the rows it is scored on. The submission uses
weights fitted on all rows. With one member the blend is that member, byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.common import paths
from pipeline.common.atomic import atomic_path, check_outputs, write_json
from pipeline.common.cli_support import add_params_option, run_cli, stage_parser
from pipeline.common.errors import PipelineError
from pipeline.common.inputs import read_npz
from pipeline.config.params import EnsembleParams, Params, load_params
from pipeline.kaggle.submission import write_submission
from pipeline.scoring import compare
from pipeline.scoring.blending import Blender, fit_rows, member_matrix, nested_oof
from pipeline.scoring.ensemble import rmse
from pipeline.scoring.folds import cv_metrics, split_per_fold
from pipeline.scoring.predictions import check_price_range, check_same_plan, excludes_outliers, load_member
from pipeline.scoring.rare_sales import apply_rare_sales, rare_sales_line

# The charts a competitor decides a blend by (metrics/, `dvc plots show`): errors by price band
# (quintiles of the actual price) and each pair of members' out-of-fold residuals side by side.
PRICE_BANDS = 5


def write_diagnostics(bands_path: Path, residuals_path: Path, oofs: dict[str, np.ndarray],
                      target: np.ndarray, outlier: np.ndarray) -> None:
    """blend_bands.csv: each model's out-of-fold log-RMSE per price band; member_residuals.csv:
    every pair of members' residuals on the same houses (outlier rows left out of both)."""
    import itertools

    keep = ~outlier
    price = pd.Series(np.exp(target[keep]))
    bands = pd.qcut(price, PRICE_BANDS)
    labels = {b: f"{i + 1}: ${b.left / 1000:,.0f}k-{b.right / 1000:,.0f}k"
              for i, b in enumerate(bands.cat.categories)}
    rows = [{"price_band": labels[band], "model": name,
             "log_rmse": rmse(oof[keep][mask], target[keep][mask])}
            for name, oof in oofs.items()
            for band in bands.cat.categories for mask in [(bands == band).to_numpy()]]
    with atomic_path(bands_path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.6f", lineterminator="\n")
    members = [n for n in oofs if n != "blend"]
    pairs = [pd.DataFrame({"pair": f"{a} vs {b}", "residual_first": oofs[a][keep] - target[keep],
                           "residual_second": oofs[b][keep] - target[keep]})
             for a, b in itertools.combinations(members, 2)]
    with atomic_path(residuals_path) as tmp:
        (pd.concat(pairs) if pairs else pd.DataFrame(columns=["pair", "residual_first",
                                                              "residual_second"])
         ).to_csv(tmp, index=False, float_format="%.5f", lineterminator="\n")


def write_houses(path: Path, ids: np.ndarray, fold_of_row: np.ndarray, target: np.ndarray,
                 oof: np.ndarray, member_oofs: dict[str, np.ndarray], region: np.ndarray,
                 outlier: np.ndarray) -> None:
    """houses.csv: every training house's out-of-fold price by the blend and by each member,
    with its Id, fold and error, for `house-prices houses` (the houses the blend gets wrong)."""
    frame = pd.DataFrame({"Id": ids, "fold": fold_of_row, "price": np.exp(target),
                          "blend_price": np.exp(oof), "log_error": oof - target,
                          **{f"{n}_price": np.exp(p) for n, p in member_oofs.items()},
                          "rare_sale_region": region, "outlier_rule": outlier})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")


def members_cv(members: dict, target, outlier, fold_of_row, metrics: dict) -> tuple[dict, list]:
    """Each member's CV for blend.json, and the members' table with the blend's row last."""
    scores = {name: cv_metrics(m["oof"], target, outlier, fold_of_row)
              for name, m in members.items()}
    keys = ("cv_rmse", "cv_rmse_no_outliers")
    rows = [{"model": name, **{k: s[k] for k in keys}} for name, s in scores.items()]
    rows.append({"model": "blend (nested CV)", **{k: metrics[k] for k in keys}})
    return {name: {k: s[k] for k in keys} for name, s in scores.items()}, rows


def blend(params: Params, *, members_dir=paths.MEMBERS, mlp_predictions=paths.MLP_PREDICTIONS,
          data_dir=paths.PROCESSED, raw_dir=paths.RAW, out=paths.SUBMISSION,
          metrics_path=paths.BLEND,
          table_path=paths.BLEND_MEMBERS, folds_path=None, bands_path=None,
          residuals_path=None, houses_path=None) -> dict:
    """Fit the blend, score it by nested CV, write the submission and the blend's metrics (the
    per-fold scores, which `house-prices experiments` pairs by the tie rule, to folds_path:
    by default blend_folds.json beside metrics_path)."""
    folds_path = folds_path or Path(metrics_path).with_name("blend_folds.json")
    bands_path = bands_path or Path(table_path).with_name("blend_bands.csv")
    residuals_path = residuals_path or Path(table_path).with_name("member_residuals.csv")
    houses_path = houses_path or Path(table_path).with_name("houses.csv")
    check_outputs(out, metrics_path, table_path, folds_path, bands_path, residuals_path,
                  houses_path)
    ens: EnsembleParams = params.ensemble
    members = {name: load_member(name, Path(members_dir), Path(mlp_predictions))
               for name in ens.members}
    check_same_plan(members, params)
    y = read_npz(Path(data_dir) / "train.npz", "run the preprocess stage (dvc repro)")
    first = next(iter(members.values()))
    outlier = y["outlier"].astype(bool)
    if not np.array_equal(y["id"], first["id_train"]):
        raise PipelineError("members were trained on other training rows than data/processed; "
                            "re-run the pipeline (dvc repro)")
    target, fold_of_row = y["y"], first["fold_of_row"]
    check_price_range(members, target)
    preds = member_matrix(ens, {name: m["oof"] for name, m in members.items()})
    rows = fit_rows(outlier, any(excludes_outliers(m, params) for m in ens.members))
    oof, fold_weights = nested_oof(preds, target, rows, fold_of_row, ens.blend, ens.ridge_alpha)
    blender = Blender(ens.blend, ens.ridge_alpha).fit(preds[rows], target[rows])
    test_log = blender.predict(member_matrix(ens, {name: m["test"] for name, m in members.items()}))
    oof, test_log, rare, region = apply_rare_sales(ens, first, Path(raw_dir), oof, test_log, target)

    metrics, per_fold = split_per_fold(cv_metrics(oof, target, outlier, fold_of_row))
    metrics["weights"] = {name: round(float(w), 6)
                          for name, w in zip(members, blender.weights_, strict=True)}
    metrics["weights_spread"] = round(float(np.ptp(np.stack(fold_weights), axis=0).max()), 6)
    if rare is not None:  # the region's houses (ensemble.rare_sales) and the test ones' prices
        metrics["rare_sales"] = rare
    metrics["members"], rows = members_cv(members, target, outlier, fold_of_row, metrics)
    with np.errstate(over="ignore"):
        prices = np.exp(test_log)
    path = write_submission(out, first["id_test"], prices)
    with atomic_path(table_path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.6f", lineterminator="\n")
    write_diagnostics(bands_path, residuals_path, {**{n: m["oof"] for n, m in members.items()},
                                               "blend": oof}, target, outlier)
    write_houses(houses_path, first["id_train"], fold_of_row, target, oof,
                 {n: m["oof"] for n, m in members.items()}, region[0], outlier)
    # each house's squared error and the abnormal ones, for the house-level rule of
    # `house-prices experiments` (pipeline/scoring/compare.py: a paired bootstrap over houses)
    per_fold["house_squared_error"] = compare.stored(compare.house_errors(oof, target))
    per_fold["outlier_rows"] = np.flatnonzero(outlier).tolist()
    write_json(folds_path, per_fold)
    write_json(metrics_path, metrics)
    weights = ", ".join(f"{n} {w:.3f}" for n, w in metrics["weights"].items())
    print(f"blend: {len(members)} member(s) ({weights}); nested CV log-RMSE "
          f"{metrics['cv_rmse']:.4f} +- {metrics['cv_rmse_std']:.4f} (without outlier rows "
          f"{metrics['cv_rmse_no_outliers']:.4f}); wrote {path}")
    if rare is not None and (rare["train_ids"] or rare["test_ids"]):
        print(rare_sales_line(rare))
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("blend", __doc__)
    add_params_option(parser)
    parser.add_argument("--members", default=paths.MEMBERS, help="members/NAME/predictions.npz")
    parser.add_argument("--mlp", default=paths.MLP_PREDICTIONS,
                        help="the MLP's predictions (written by the train stage)")
    parser.add_argument("--data", default=paths.PROCESSED, help="the preprocess stage's output")
    parser.add_argument("--raw", default=paths.RAW,
                        help="the raw CSVs (ensemble.rare_sales reads GrLivArea, SaleCondition)")
    parser.add_argument("--out", default=paths.SUBMISSION, help="the submission file to write")
    parser.add_argument("--metrics", default=paths.BLEND, help="the blend's CV (JSON)")
    parser.add_argument("--table", default=paths.BLEND_MEMBERS,
                        help="members' and blend's CV side by side (CSV, plotted)")
    parser.add_argument("--folds", default=paths.BLEND_FOLDS,
                        help="the blend's CV per fold and per-house errors (JSON)")
    parser.add_argument("--bands", default=paths.BLEND_BANDS,
                        help="each model's CV by price band (CSV, plotted)")
    parser.add_argument("--residuals", default=paths.MEMBER_RESIDUALS,
                        help="each pair of members' residuals (CSV, plotted)")
    parser.add_argument("--houses", default=paths.HOUSES,
                        help="each training house's out-of-fold prices and error (CSV)")
    args = parser.parse_args(argv)
    run_cli(lambda: blend(load_params(args.params), members_dir=args.members,
                          mlp_predictions=args.mlp, data_dir=args.data, raw_dir=args.raw,
                          out=args.out,
                          metrics_path=args.metrics, table_path=args.table,
                          folds_path=args.folds, bands_path=args.bands,
                          residuals_path=args.residuals, houses_path=args.houses),
            params_path=args.params)


if __name__ == "__main__":
    main()
