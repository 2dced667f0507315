"""`house-prices STAGE ...`: one console script for every stage and tool."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "download": "pipeline.download",
    "preprocess": "pipeline.preprocess",
    "train": "pipeline.train",
    "predict": "pipeline.predict",
    "sweep": "pipeline.sweep",
    "submit": "pipeline.submit",
    "leaderboard": "pipeline.leaderboard",
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: house-prices {{{','.join(COMMANDS)}}} [options]  (--help on each)",
              file=sys.stderr)
        sys.exit(2)
    importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
