"""Stage 4: the MLP's test prediction, the mean of its fold models, saved with its out-of-fold
predictions as the blend's `mlp` member (--member); --out also writes it alone as a validated
submission file (the blend stage writes submission.csv)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.cli_support import add_params_option, run_cli, stage_parser
from pipeline.data import load_test, load_train, mlp_inputs
from pipeline.ensemble import combine_log_predictions
from pipeline.errors import PipelineError
from pipeline.inputs import read_csv
from pipeline.params import EnsembleParams, PredictParams, TrainParams, load_params
from pipeline.predictions import save_predictions
from pipeline.stacked_mlp import listed_model_paths, load_models
from pipeline.submission import write_submission
from pipeline.views import Views


def clip_to_range(x_test: np.ndarray, x_train: np.ndarray) -> tuple[np.ndarray, int]:
    """Clamp each feature to the range seen in training: an out-of-range house (a lot ten times
    any in training) cannot push an MLP into extrapolation that blows up the price.
    [N, d] matrices, or [V, N, W] views (each view clamped to its own range); returns the
    clamped features and how many houses had a feature clamped."""
    low, high = x_train.min(axis=-2, keepdims=True), x_train.max(axis=-2, keepdims=True)
    clipped = np.clip(x_test, low, high)
    changed = (clipped != x_test).any(axis=-1)
    return clipped, int(changed.reshape(-1, changed.shape[-1]).any(axis=0).sum())


def predict(params: PredictParams, ensemble: EnsembleParams, data_dir="data/processed",
            models_dir="models", out: str | os.PathLike | None = "submission.csv",
            member_out: str | os.PathLike | None = None, oof_csv="metrics/oof.csv",
            train_params: TrainParams | None = None) -> Path:
    """The fold models' mean test prediction: as a submission (`out`), and/or as the MLP's
    blend-member predictions (`member_out`, with the train stage's out-of-fold predictions)."""
    test, train = load_test(data_dir), load_train(data_dir)
    train_x = mlp_inputs(train)
    x = mlp_inputs(test, train_x.widths)
    if params.clip_to_train_range:
        clipped, n_clipped = clip_to_range(x.x, train_x.x)
        x = Views(clipped, x.widths)
        print(f"predict: {n_clipped} test rows had features outside the training range (clamped)")
    paths = listed_model_paths(models_dir)
    models = load_models(paths)
    if models.n_inputs != x.x.shape[2]:
        raise PipelineError(f"models expect {models.n_inputs} features, test data has "
                            f"{x.x.shape[2]}; re-run preprocess and train (dvc repro)")
    log_pred = models.predict_log_price(x.model_input()).numpy()
    with np.errstate(over="ignore", invalid="ignore"):
        test_log = combine_log_predictions(log_pred, ensemble.average)
        prices = np.exp(test_log)
    if member_out is not None:
        if train_params is None:
            raise ValueError("member_out needs train_params (the fold plan it is checked against)")
        if not (np.isfinite(prices).all() and (prices > 0).all()):
            raise PipelineError("predict: the MLP's test predictions are not finite; re-run train")
        oof = read_csv(oof_csv, "run the train stage first (dvc repro)")
        if not np.array_equal(oof["Id"].to_numpy(), train["id"]):
            raise PipelineError(f"{oof_csv}: its Ids are not the training rows'; re-run train")
        save_predictions(member_out, oof["predicted_log_price"].to_numpy(dtype=np.float64),
                         test_log, train["id"], test["id"], oof["fold"].to_numpy(), train_params)
    path = Path(member_out) if out is None else write_submission(out, test["id"], prices)
    print(f"predict: {len(paths)} models averaged ({ensemble.average}); wrote {path} with "
          f"{len(prices)} rows, median price {np.median(prices):,.0f}")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("predict", __doc__)
    add_params_option(parser)
    parser.add_argument("--data", default="data/processed", help="the preprocess stage's output")
    parser.add_argument("--models", default="models", help="the train stage's model files")
    parser.add_argument("--out", help="write a submission file of the MLP alone here")
    parser.add_argument("--member", help="write the MLP's blend-member predictions here")
    parser.add_argument("--oof", default="metrics/oof.csv",
                        help="the train stage's out-of-fold predictions (for --member)")
    args = parser.parse_args(argv)

    def stage() -> None:
        params = load_params(args.params)
        if args.out is None and args.member is None:
            raise PipelineError("predict: give --out (a submission) and/or --member")
        predict(params.predict, params.ensemble, args.data, args.models, args.out, args.member,
                args.oof, params.train)

    run_cli(stage)


if __name__ == "__main__":
    main()
