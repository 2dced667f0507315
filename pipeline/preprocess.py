"""Stage 2: turn the raw CSVs into model-ready matrices, saving the fitted transform with them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from pipeline.atomic import atomic_path, write_text
from pipeline.cli_support import add_params_option, run_cli, stage_parser
from pipeline.features import build_transform
from pipeline.inputs import read_csv
from pipeline.params import PreprocessParams, load_params
from pipeline.schema import FEATURES, ID, TARGET, check_columns, check_target, pin_kinds
from pipeline.views import Views


def read_raw(path: str | os.PathLike) -> pd.DataFrame:
    return read_csv(path, "run the download stage first (dvc repro)")


def outlier_mask(train: pd.DataFrame, params: PreprocessParams) -> np.ndarray:
    """The two huge, cheap partial sales De Cock warns about: left out of training folds."""
    return ((train["GrLivArea"] > params.outlier_min_gr_liv_area)
            & (train[TARGET] < params.outlier_max_sale_price)).to_numpy()


def encode(features_train: pd.DataFrame, features_test: pd.DataFrame, fit_frame: pd.DataFrame,
           params: PreprocessParams) -> tuple[np.ndarray, np.ndarray, list[str], object]:
    """(train matrix, test matrix, feature names, fitted transform) of one encoding."""
    transform = build_transform(params).fit(fit_frame)
    return (transform.transform(features_train).astype(np.float32),
            transform.transform(features_test).astype(np.float32),
            [str(n) for n in transform[-1].get_feature_names_out()], transform)


def preprocess(train: pd.DataFrame, test: pd.DataFrame, params: PreprocessParams) -> dict:
    """Fit the transform (on train, or train+test features) and return arrays and metadata.

    With `mlp_views`, every further encoding is fitted the same way. The MLP's inputs are
    `mlp_train` / `mlp_test` (Views: every encoding, or just the first) with `view_names`;
    `x_train` and `x_test` are the first encoding, which the other model families see.
    """
    check_columns(train, "train.csv", with_target=True)
    check_columns(test, "test.csv", with_target=False)
    check_target(train, "train.csv")
    train = pin_kinds(train, "train.csv")
    test = pin_kinds(test, "test.csv")
    features_train = train.loc[:, list(FEATURES)]
    features_test = test.loc[:, list(FEATURES)]
    fit_frame = (features_train if params.fit_on == "train"
                 else pd.concat([features_train, features_test], ignore_index=True))
    encoded = [encode(features_train, features_test, fit_frame, p) for p in params.encodings()]
    x_train, x_test, names, _ = encoded[0]
    result = {
        "x_train": x_train,
        "y_train": np.log(train[TARGET].to_numpy(dtype=np.float64)),
        "id_train": train[ID].to_numpy(dtype=np.int64),
        "outlier": outlier_mask(train, params),
        "x_test": x_test,
        "id_test": test[ID].to_numpy(dtype=np.int64),
        "feature_names": names,
        "transform": encoded[0][3],
        "transforms": [e[3] for e in encoded],
        "mlp_train": Views.of([e[0] for e in encoded]),
        "mlp_test": Views.of([e[1] for e in encoded]),
        "view_names": [e[2] for e in encoded],
    }
    return result


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


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("preprocess", __doc__)
    add_params_option(parser)
    parser.add_argument("--raw", default="data/raw", help="directory with train.csv and test.csv")
    parser.add_argument("--out", default="data/processed",
                        help="directory for the matrices and the fitted transform")
    args = parser.parse_args(argv)

    def stage() -> None:
        params = load_params(args.params)
        raw = Path(args.raw)
        result = preprocess(read_raw(raw / "train.csv"), read_raw(raw / "test.csv"),
                            params.preprocess)
        save(result, args.out)
        print(f"preprocess: {result['x_train'].shape[0]} train rows, {result['x_test'].shape[0]} "
              f"test rows, {result['x_train'].shape[1]} features, "
              f"{int(result['outlier'].sum())} outlier rows flagged")

    run_cli(stage, params_path=args.params)


if __name__ == "__main__":
    main()
