"""Stage 1: fetch the competition files from the first source that yields the right SHA-1.

Sources are tried in the order params.yaml lists them: `kaggle` (the competition's archive
through the Kaggle API, skipped without credentials), `http(s)://` prefixes (the public mirror)
and local directories (the copy this repository ships). Every byte goes to a temporary file that
is renamed into place only after its hash matches, so a half-written or unverified file never
reaches `data/raw/`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pipeline.common import paths
from pipeline.common.atomic import atomic_path
from pipeline.common.cli_support import add_params_option, run_cli, stage_parser
from pipeline.config.params import DownloadParams, KaggleParams, load_params
from pipeline.kaggle.sources import ROLES, fetch_verified, make_fetcher


def download(params: DownloadParams, *, out_dir: str | os.PathLike = paths.RAW,
             kaggle: KaggleParams | None = None) -> dict[str, Path]:
    """Place verified `train.csv` and `test.csv` in `out_dir`; both or neither."""
    out_dir = Path(out_dir)
    targets = {role: out_dir / f"{role}.csv" for role in ROLES}
    with contextlib.ExitStack() as stack:
        sources = [(source, make_fetcher(source, params, kaggle, stack))
                   for source in params.sources]
        unusable: dict[str, str] = {}
        with atomic_path(targets["train"]) as train_tmp, atomic_path(targets["test"]) as test_tmp:
            for role, tmp in (("train", train_tmp), ("test", test_tmp)):
                fetch_verified(role, params.files[role], sources, tmp, unusable)
            # Both verified: the context managers now rename them into place.
    return targets


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("download", __doc__)
    add_params_option(parser)
    parser.add_argument("--out", default=paths.RAW, help="directory for train.csv and test.csv")
    args = parser.parse_args(argv)

    def stage() -> None:
        # A failure leaves the previous files in place: both are renamed only once both verify,
        # so what is there is always a verified pair.
        params = load_params(args.params)
        download(params.download, out_dir=args.out, kaggle=params.kaggle)

    run_cli(stage, params_path=args.params)


if __name__ == "__main__":
    main()
