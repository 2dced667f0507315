"""Stage 0: the parameter check. DVC runs it before every other stage, so a bad value stops
`dvc repro` (or `dvc exp run -S ...`) before DVC removes any other stage's outputs."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from pipeline.common.errors import PipelineError
from pipeline.config.params import Params, load_params
from pipeline.members import check_settings

# What the MLP's cost is estimated with before any data is read: input columns per encoding
# (the default's three encodings pad to ~400) and bytes per weight (float32 weights, their
# gradients and Adam's two moments).
INPUT_COLUMNS = 400
BYTES_PER_WEIGHT = 16
MEMORY_SHARE = 0.5  # of this machine's memory (or the GPU's) the models' state may take


def check_columns(params: Params) -> None:
    """Every column a param names is a numeric column of the competition's files (a typo would
    otherwise crash preprocess after DVC removed its outputs)."""
    from pipeline.dataset.schema import NUMERIC

    for i, view in enumerate(params.preprocess.encodings()):
        name = f"preprocess.mlp_views[{i - 1}]" if i else "preprocess"
        unknown = [c for c in view.numeric_as_category if c not in NUMERIC]
        if unknown:
            raise PipelineError(
                f"params.yaml: {name}.numeric_as_category names {', '.join(map(repr, unknown))}, "
                f"not a numeric column of train.csv (e.g. MSSubClass, MoSold, YrSold); fix the "
                "name in params.yaml")


def check_features(params: Params, bundled: Path) -> None:
    """The user's features (preprocess.features) read only columns that exist, and give every
    house of the competition's files a finite value in every encoding, computed as preprocess
    computes them (its own recoding: fills, engineered columns, then the features), on the copy
    the repository ships, the files the download stage verifies against the same SHA-1."""
    pre = params.preprocess
    if not pre.features:
        return
    import pandas as pd

    from pipeline.dataset.expressions import parse
    from pipeline.dataset.matrices import encode
    from pipeline.dataset.schema import ENGINEERED, FEATURES, NUMERIC, pin_kinds

    paths = [bundled / params.download.files[role].name for role in ("train", "test")]
    frames = [pin_kinds(pd.read_csv(p), p.name).loc[:, list(FEATURES)] for p in paths
              if p.is_file()]
    for encoding in pre.encodings():
        parse(pre.features, {*NUMERIC, *(ENGINEERED if encoding.engineered_features else ())})
        if frames:  # evaluated, imputed and scaled as preprocess does: finite where models look
            fit = frames[0] if pre.fit_on == "train" else pd.concat(frames, ignore_index=True)
            encode(frames[0], frames[-1], fit, encoding)
    print(f"check-params: preprocess.features ({', '.join(n for n, _ in pre.features)}) finite "
          f"on every house of {len(frames)} file(s) of data/bundled, as the models see them")


def mlp_state_bytes(params: Params) -> tuple[int, int]:
    """(models, bytes of weights and optimiser state) of the train stage, estimated."""
    train = params.train
    widths = [INPUT_COLUMNS, *train.hidden, 1]
    weights = sum(a * b + b for a, b in itertools.pairwise(widths))
    weights += INPUT_COLUMNS if train.linear_skip and train.hidden else 0
    models = train.folds * train.n_seeds * (1 + len(params.preprocess.mlp_views))
    return models, models * weights * BYTES_PER_WEIGHT


def machine_memory(device: str) -> tuple[int, str]:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_properties(0).total_memory, "the GPU's memory"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's memory"


def check_machine(params: Params) -> None:
    """What only this machine can tell, checked here so a stage does not find it out after DVC
    has removed its outputs: the GPU asked for, the memory the models' state needs, the cores."""
    device = params.train.device  # auto is bounded by the machine's memory: no torch import here
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise PipelineError("params.yaml: train.device is cuda but torch sees no GPU on this "
                                "machine; use auto or cpu, e.g. -S train.device=auto")
    models, need = mlp_state_bytes(params)
    have, where = machine_memory(device)
    if need > MEMORY_SHARE * have:
        train = params.train
        raise PipelineError(
            f"params.yaml: train.hidden {list(train.hidden)} x train.n_seeds {train.n_seeds} x "
            f"train.folds {train.folds} x {1 + len(params.preprocess.mlp_views)} encodings = "
            f"{models:,} models, whose weights and optimiser state need ~{need / 1e9:,.1f} GB; "
            f"{where} is {have / 1e9:,.1f} GB; make the layers narrower or train fewer models")
    cores = os.cpu_count() or 1
    for name in params.members.names:  # every family whose fits take a `threads` setting
        threads = getattr(params.members, name).get("threads", 1)
        if threads > cores:
            print(f"check-params: note: members.{name}.threads {threads} is more than this "
                  f"machine's {cores} cores; each fit uses {cores} (the results are the same)")


def main(argv: list[str] | None = None) -> None:
    """`house-prices check-params`: the first DVC stage, so a bad value stops `dvc repro` before
    DVC removes any other stage's outputs."""
    from pipeline.common.atomic import write_text
    from pipeline.common.cli_support import add_params_option, run_cli, stage_parser

    parser = stage_parser("check-params", __doc__)
    add_params_option(parser)
    parser.add_argument("--stamp", help="file to write once valid (the stage's output; its "
                                        "content never changes, so no later stage re-runs for it)")
    args = parser.parse_args(argv)

    def stage() -> None:
        from pipeline.common.atomic import remove_stale_under

        params = load_params(args.params)
        check_settings(params.members)
        check_columns(params)
        check_features(params, Path(args.params).parent / "data" / "bundled")
        check_machine(params)
        for path in remove_stale_under(Path(args.params).parent):
            print(f"check-params: removed {path}, left by a run that was killed")
        if args.stamp:
            write_text(args.stamp, "params.yaml is valid\n")
        print(f"check-params: {args.params} is valid")

    run_cli(stage, params_path=args.params)


if __name__ == "__main__":
    main()
