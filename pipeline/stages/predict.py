"""Predict the test set with the saved fold models: a submission of the MLP alone.

Not a DVC stage (the train stage writes the MLP's member predictions itself): the tool that
shows the saved models are all you need. It loads the models models/models.json lists, clamps
the test features to the training range (train.clip_to_train_range) and writes the mean of the
models' log prices (ensemble.average) as a validated submission file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.common import paths
from pipeline.common.atomic import check_outputs
from pipeline.common.cli_support import add_params_option, run_cli, stage_parser
from pipeline.config.params import EnsembleParams, load_params
from pipeline.config.train import TrainParams
from pipeline.dataset.processed import load_test, load_train, mlp_inputs
from pipeline.kaggle.submission import write_submission
from pipeline.members.mlp.checkpoint import listed_model_paths, load_models
from pipeline.members.mlp.predict import test_log_prices


def predict(params: TrainParams, ensemble: EnsembleParams, data_dir=paths.PROCESSED,
            models_dir=paths.MODELS, out: str | os.PathLike = "mlp_submission.csv") -> Path:
    """The saved fold models' mean test prediction, written as a submission file to `out`."""
    check_outputs(out)
    test, train = load_test(data_dir), load_train(data_dir)
    train_x = mlp_inputs(train)
    paths = listed_model_paths(models_dir)
    test_log, n_clipped = test_log_prices(load_models(paths), train_x,
                                          mlp_inputs(test, train_x.widths),
                                          params.clip_to_train_range, ensemble.average)
    if params.clip_to_train_range:
        print(f"predict: {n_clipped} test houses had features outside the training range "
              "(clamped)")
    with np.errstate(over="ignore"):
        prices = np.exp(test_log)
    path = write_submission(out, test["id"], prices)
    print(f"predict: {len(paths)} models averaged ({ensemble.average}); wrote {path} with "
          f"{len(prices)} rows, median price {np.median(prices):,.0f}")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("predict", __doc__)
    add_params_option(parser)
    parser.add_argument("--data", default=paths.PROCESSED, help="the preprocess stage's output")
    parser.add_argument("--models", default=paths.MODELS, help="the train stage's model files")
    parser.add_argument("--out", default="mlp_submission.csv", help="the submission file to write")
    args = parser.parse_args(argv)

    def stage() -> None:
        params = load_params(args.params)
        predict(params.train, params.ensemble, args.data, args.models, args.out)

    run_cli(stage, params_path=args.params)


if __name__ == "__main__":
    main()
