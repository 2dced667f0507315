"""Stage 3, beside train (one per family: dvc.yaml's member_NAME stages): a blend member on
the MLP's fold plan.

Each fold's model is fitted on the MLP's training folds (the same KFold shuffle; the outlier
rows left out where members.NAME.exclude_outliers says so), predicts the fold it held out and
the test set; the member's test prediction is the mean of its fold models in log space.
Writes members/NAME/predictions.npz (what the blend stage reads) and members/NAME/cv.json.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from pipeline.common import paths
from pipeline.common.atomic import write_json
from pipeline.common.cli_support import add_params_option, run_cli, stage_parser
from pipeline.common.errors import PipelineError
from pipeline.config.params import Params, load_params
from pipeline.dataset.processed import load_test, load_train
from pipeline.members import check_settings, families, family, model_settings
from pipeline.scoring.folds import cv_metrics, split_per_fold
from pipeline.scoring.predictions import cross_fit, excludes_outliers, member_plan, save_predictions


def run_member(name: str, params: Params, *, data_dir=paths.PROCESSED, out_dir=paths.MEMBERS
               ) -> dict:
    if name not in families():
        raise PipelineError(f"member: unknown family {name!r} (known: {', '.join(families())})")
    check_settings(params.members, (name,))
    train, test = load_train(data_dir), load_test(data_dir)
    x, y, outlier = train["x"].astype(np.float64), train["y"], train["outlier"].astype(bool)
    exclude = excludes_outliers(name, params)
    plan = member_plan(len(y), outlier, params, exclude)
    settings = model_settings(getattr(params.members, name))
    if settings.get("threads", 1) > (os.cpu_count() or 1):  # more would only oversubscribe
        settings["threads"] = os.cpu_count() or 1
    started = time.perf_counter()
    estimator = family(name).make_model(settings, params.train)
    try:
        oof, test_pred = cross_fit(estimator, x, y, test["x"].astype(np.float64), plan,
                                   settings.get("threads", 1))
    except ValueError as exc:  # a family refuses data it cannot fit (scikit-learn's contract)
        raise PipelineError(f"member {name}: {exc}") from exc
    seconds = time.perf_counter() - started
    if not (np.isfinite(oof).all() and np.isfinite(test_pred).all()):
        raise PipelineError(f"member {name}: non-finite predictions; check members.{name}")
    metrics, _ = split_per_fold(cv_metrics(oof, y, outlier, plan.fold_of_row))
    out = Path(out_dir) / name
    save_predictions(out / "predictions.npz", oof, test_pred, train["id"], test["id"],
                     plan.fold_of_row, params.train, exclude)
    write_json(out / "cv.json", metrics)
    print(f"member {name}: {len(plan.train_mask)} fold models in {seconds:.1f} s; CV log-RMSE "
          f"{metrics['cv_rmse']:.4f} +- {metrics['cv_rmse_std']:.4f} (without outlier rows "
          f"{metrics['cv_rmse_no_outliers']:.4f})")
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("member", __doc__)
    parser.add_argument("name", help=f"the model family ({', '.join(families())})")
    add_params_option(parser)
    parser.add_argument("--data", default=paths.PROCESSED, help="the preprocess stage's output")
    parser.add_argument("--out", default=paths.MEMBERS, help="members/NAME/ gets its predictions")
    args = parser.parse_args(argv)
    run_cli(lambda: run_member(args.name, load_params(args.params), data_dir=args.data,
                               out_dir=args.out),
            params_path=args.params)


if __name__ == "__main__":
    main()
