"""Rare sales: a region of houses defined on their features alone, priced by comparable sales.

The competition's data hold a handful of huge new houses sold as partial sales far below what
their size says (De Cock 2011: sales "that likely don't represent actual market values"); two are
in train.csv (Ids 524 and 1299), one in test.csv (2550). No member prices one well from the
ordinary houses (the MLP and the SVR leave them out of training; LightGBM, which keeps them,
still averages them with big normal houses). The region is
fixed on features (GrLivArea above ensemble.rare_sale_min_gr_liv_area, SaleCondition one of
ensemble.rare_sale_conditions), never on price, so it can be applied to test.csv. With
`ensemble.rare_sales: comparable` a house in it is priced at the mean log price of the training
houses in it (a held-out one: of those in the other folds), as an appraiser prices from
comparable sales; a house outside it keeps the blend's price, bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.common.errors import PipelineError
from pipeline.config.params import EnsembleParams

COLUMNS = ("Id", "GrLivArea", "SaleCondition")


def in_region(frame: pd.DataFrame, ens: EnsembleParams) -> np.ndarray:
    """Whether each house is in the region (a missing GrLivArea is not above the threshold)."""
    area = pd.to_numeric(frame["GrLivArea"], errors="coerce").to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        big = area > ens.rare_sale_min_gr_liv_area
    return big & frame["SaleCondition"].isin(ens.rare_sale_conditions).to_numpy()


def region_of(ids: np.ndarray, csv: Path, ens: EnsembleParams) -> np.ndarray:
    """The region flag of each house `ids` names, read from the raw CSV it came from."""
    frame = pd.read_csv(csv, usecols=lambda c: c in COLUMNS)
    missing = [c for c in COLUMNS if c not in frame]
    if missing:
        raise PipelineError(f"{csv}: no column {', '.join(missing)}; re-run the download stage "
                            "(dvc repro)")
    flags = pd.Series(in_region(frame, ens), index=frame["Id"].to_numpy())
    absent = np.setdiff1d(ids, flags.index.to_numpy())
    if absent.size:
        raise PipelineError(f"{csv}: lacks the houses {absent[:5].tolist()} the members predicted; "
                            "re-run the pipeline (dvc repro)")
    return flags.loc[ids].to_numpy(dtype=bool)


def price_held_out(oof: np.ndarray, target: np.ndarray, region_train: np.ndarray,
                   fold_of_row: np.ndarray) -> np.ndarray:
    """Out-of-fold log prices with each region house priced by the region houses of the other
    folds (as its fold's models were trained); where there is none, the blend's price stays."""
    oof = oof.copy()
    for i in np.flatnonzero(region_train):
        comparable = region_train & (fold_of_row != fold_of_row[i])
        if comparable.any():
            oof[i] = target[comparable].mean()
    return oof


def price_test(test_log: np.ndarray, target: np.ndarray, region_train: np.ndarray,
               region_test: np.ndarray) -> np.ndarray:
    """Test log prices with each region house priced by every training house in the region."""
    test_log = test_log.copy()
    if region_train.any():
        test_log[region_test] = target[region_train].mean()
    return test_log


def rare_sales_line(rare: dict) -> str:
    """What ensemble.rare_sales did to the submission, in one line."""
    priced = ", ".join(f"{i} ${p:,.0f}" for i, p in zip(rare["test_ids"], rare["test_prices"],
                                                      strict=True)) or "none"
    return (f"rare sales (ensemble.rare_sales): test houses {priced}, priced from the training "
            f"houses {', '.join(map(str, rare['train_ids'])) or '(none)'}")


def apply_rare_sales(ens: EnsembleParams, first: dict, raw_dir: Path, oof: np.ndarray,
                     test_log: np.ndarray, target: np.ndarray) -> tuple:
    """ensemble.rare_sales: the region's houses priced from the training houses in it (held out:
    those of the other folds); (oof, test_log, what the metrics say of it, [train, test] masks)."""
    region = [np.zeros(len(target), dtype=bool)]
    if ens.rare_sales != "comparable":
        return oof, test_log, None, region
    region = [region_of(first[f"id_{part}"], raw_dir / f"{part}.csv", ens)
              for part in ("train", "test")]
    oof = price_held_out(oof, target, region[0], first["fold_of_row"])
    test_log = price_test(test_log, target, *region)
    rare = {"train_ids": first["id_train"][region[0]].tolist(),
            "test_ids": first["id_test"][region[1]].tolist(),
            "test_prices": np.round(np.exp(test_log[region[1]]), 2).tolist()}
    return oof, test_log, rare, region
