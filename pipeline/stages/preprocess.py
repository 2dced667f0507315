"""Stage 2: turn the raw CSVs into model-ready matrices, saving the fitted transform with them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from pipeline.common.atomic import atomic_path, write_text
from pipeline.common.cli_support import add_params_option, run_cli, stage_parser
from pipeline.common.inputs import read_csv
from pipeline.config.params import load_params
from pipeline.config.preprocess import PreprocessParams
from pipeline.dataset.matrices import preprocess


def read_raw(path: str | os.PathLike) -> pd.DataFrame:
    return read_csv(path, "run the download stage first (dvc repro)")


def save(result: dict, out_dir: str | os.PathLike) -> None:
    """train.npz / test.npz (with `views`, `view_widths` and `view_names` when the MLP has
    several encodings), the fitted transforms (one per encoding) and the feature names."""
    out_dir = Path(out_dir)
    views_train, views_test = {}, {}
    if len(result["mlp_train"]) > 1:
        width = result["mlp_train"].x.shape[2]
        names = np.array([n + [""] * (width - len(n)) for n in result["view_names"]], dtype=str)
        views_train = {"views": result["mlp_train"].x,
                       "view_widths": np.array(result["mlp_train"].widths, dtype=np.int64),
                       "view_names": names}
        views_test = {"views": result["mlp_test"].x}
    with atomic_path(out_dir / "train.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, x=result["x_train"], y=result["y_train"], id=result["id_train"],
                 outlier=result["outlier"], **views_train)
    with atomic_path(out_dir / "test.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, x=result["x_test"], id=result["id_test"], **views_test)
    with atomic_path(out_dir / "transform.joblib") as tmp:
        joblib.dump(result["transforms"], tmp)
    write_text(out_dir / "features.json", json.dumps(result["feature_names"], indent=1) + "\n")


def run_preprocess(params: PreprocessParams, *, raw_dir="data/raw", out_dir="data/processed"
                   ) -> dict:
    """The stage: raw_dir/{train,test}.csv -> out_dir (pipeline.dataset.matrices.preprocess, saved)."""
    raw = Path(raw_dir)
    result = preprocess(read_raw(raw / "train.csv"), read_raw(raw / "test.csv"), params)
    save(result, out_dir)
    print(f"preprocess: {result['x_train'].shape[0]} train rows, {result['x_test'].shape[0]} "
          f"test rows, {result['x_train'].shape[1]} features, "
          f"{int(result['outlier'].sum())} outlier rows flagged")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("preprocess", __doc__)
    add_params_option(parser)
    parser.add_argument("--raw", default="data/raw", help="directory with train.csv and test.csv")
    parser.add_argument("--out", default="data/processed",
                        help="directory for the matrices and the fitted transform")
    args = parser.parse_args(argv)
    run_cli(lambda: run_preprocess(load_params(args.params).preprocess, raw_dir=args.raw,
                                   out_dir=args.out), params_path=args.params)


if __name__ == "__main__":
    main()
