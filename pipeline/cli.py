"""`house-prices COMMAND ...`: one console script for every stage and tool."""

from __future__ import annotations

import difflib
import importlib
import sys

from pipeline.members import families

# name -> (module, one line of help); the DVC stages first, in dvc.yaml's order, then the tools
COMMANDS = {
    "check-params": ("pipeline.stages.check_params",
                     "validate params.yaml (DVC runs this before any stage)"),
    "download": ("pipeline.stages.download", "fetch train.csv/test.csv and check their SHA-1"),
    "preprocess": ("pipeline.stages.preprocess", "fit the feature transform, write the matrices"),
    "train": ("pipeline.stages.train", "the MLP's K-fold cross-validation: fold models, CV metrics"),
    "member": ("pipeline.stages.member", f"train one blend member ({', '.join(families())}) on the "
               "MLP's folds (beside train: the same folds)"),
    "blend": ("pipeline.stages.blend", "blend the members' out-of-fold predictions: submission.csv"),
    "predict": ("pipeline.stages.predict", "the saved fold models on the test set: the MLP alone"),
    "sweep": ("pipeline.search.sweep", "score a search space by the train stage's CV; rank, apply, "
              "queue"),
    "experiments": ("pipeline.search.experiments", "DVC experiments ranked by CV, judged by the tie "
                    "rule, with public scores"),
    "houses": ("pipeline.search.houses", "the training houses the blend prices worst, with their "
               "features"),
    "submit": ("pipeline.kaggle.submit", "validate and send submission.csv to Kaggle, log the score"),
}
HELP = ("-h", "--help", "help")


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: house-prices COMMAND [options]   (house-prices COMMAND --help for its options)",
             "", "The stages run in order with `dvc repro`; each can also run on its own.", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in HELP:
        print(usage(), file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    name = argv[0]
    if name not in COMMANDS:
        near = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        print(f"house-prices: unknown command '{name}'{hint} (house-prices --help lists them)",
              file=sys.stderr)
        sys.exit(2)
    importlib.import_module(COMMANDS[name][0]).main(argv[1:])


if __name__ == "__main__":
    main()
