"""Stage 2: turn the raw CSVs into model-ready matrices, saving the fitted transform with them."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from pipeline.common import paths
from pipeline.common.cli_support import add_params_option, run_cli, stage_parser
from pipeline.common.inputs import read_csv
from pipeline.config.params import load_params
from pipeline.config.preprocess import PreprocessParams
from pipeline.dataset.matrices import preprocess
from pipeline.dataset.processed import Processed


def read_raw(path: str | os.PathLike) -> pd.DataFrame:
    return read_csv(path, "run the download stage first (dvc repro)")


def run_preprocess(params: PreprocessParams, *, raw_dir=paths.RAW, out_dir=paths.PROCESSED
                   ) -> Processed:
    """The stage: raw_dir/{train,test}.csv -> out_dir (pipeline.dataset.matrices.preprocess, saved)."""
    raw = Path(raw_dir)
    result = preprocess(read_raw(raw / "train.csv"), read_raw(raw / "test.csv"), params)
    result.save(out_dir)
    print(f"preprocess: {result.x_train.shape[0]} train rows, {result.x_test.shape[0]} "
          f"test rows, {result.x_train.shape[1]} features, "
          f"{int(result.outlier.sum())} outlier rows flagged")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("preprocess", __doc__)
    add_params_option(parser)
    parser.add_argument("--raw", default=paths.RAW, help="directory with train.csv and test.csv")
    parser.add_argument("--out", default=paths.PROCESSED,
                        help="directory for the matrices and the fitted transform")
    args = parser.parse_args(argv)
    run_cli(lambda: run_preprocess(load_params(args.params).preprocess, raw_dir=args.raw,
                                   out_dir=args.out), params_path=args.params)


if __name__ == "__main__":
    main()
