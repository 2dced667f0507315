"""`house-prices houses`: the training houses the blend prices worst, out of fold, beside the
features that matter most for a price and each member's price, to see what the blend misses.

Reads metrics/houses.csv (the blend stage's: every house's out-of-fold prices) and the raw
train.csv for the features; prints a table of at most 120 columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.common import paths
from pipeline.common.cli_support import run_cli, stage_parser
from pipeline.common.errors import PipelineError
from pipeline.common.inputs import read_csv

FEATURES = ("Neighborhood", "OverallQual", "GrLivArea", "YearBuilt", "SaleCondition")


def worst_houses(houses: pd.DataFrame, raw: pd.DataFrame, n: int) -> pd.DataFrame:
    """The n houses with the largest absolute out-of-fold log error, with their features."""
    worst = houses.reindex(houses["log_error"].abs().sort_values(ascending=False).index[:n])
    merged = worst.merge(raw.loc[:, ["Id", *FEATURES]], on="Id", how="left")
    members = [c.removesuffix("_price") for c in houses if c.endswith("_price")
               and c not in ("blend_price",)]
    table = pd.DataFrame({
        "Id": merged["Id"], "price": merged["price"].map("{:,.0f}".format),
        "blend": merged["blend_price"].map("{:,.0f}".format),
        "log_err": merged["log_error"].map("{:+.3f}".format),
        **{m: merged[f"{m}_price"].map("{:,.0f}".format) for m in members},
        "nbhd": merged["Neighborhood"], "qual": merged["OverallQual"],
        "area": merged["GrLivArea"], "built": merged["YearBuilt"],
        "sale": merged["SaleCondition"],
        "note": np.where(merged["rare_sale_region"].astype(bool), "region",
                         np.where(merged["outlier_rule"].astype(bool), "outlier", "")),
    })
    return table


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("houses", __doc__)
    parser.add_argument("-n", type=int, default=15, help="how many houses (default 15)")
    parser.add_argument("--houses", default=paths.HOUSES,
                        help="the blend stage's per-house out-of-fold prices")
    parser.add_argument("--raw", default=f"{paths.RAW}/train.csv", help="the training houses")
    args = parser.parse_args(argv)

    def run() -> None:
        if args.n < 1:
            raise PipelineError(f"houses: -n must be at least 1, got {args.n}")
        houses = read_csv(Path(args.houses), "run dvc repro (the blend stage writes it)")
        needed = {"Id", "price", "blend_price", "log_error", "rare_sale_region", "outlier_rule"}
        if not needed <= set(houses):
            raise PipelineError(f"{args.houses}: lacks {sorted(needed - set(houses))}; run dvc "
                                "repro")
        raw = read_csv(Path(args.raw), "run dvc repro (the download stage writes it)")
        table = worst_houses(houses, raw, args.n)
        rmse = float(np.sqrt((houses["log_error"] ** 2).mean()))
        print(f"The {len(table)} training houses the blend prices worst out of fold (all "
              f"{len(houses)}: log-RMSE {rmse:.4f}); prices in $, log_err = log(blend / price):")
        print(table.to_string(index=False))

    run_cli(run)


if __name__ == "__main__":
    main()
