"""Stage 0: the parameter check. DVC runs it before every other stage, so a bad value stops
`dvc repro` (or `dvc exp run -S ...`) before DVC removes any other stage's outputs."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.params import Params, load_params


def check_machine(params: Params) -> None:
    """What only this machine can tell, checked here so a stage does not find it out after DVC
    has removed its outputs."""
    if params.train.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise PipelineError("params.yaml: train.device is cuda but torch sees no GPU on this "
                                "machine; use auto or cpu, e.g. -S train.device=auto")


def main(argv: list[str] | None = None) -> None:
    """`house-prices check-params`: the first DVC stage, so a bad value stops `dvc repro` before
    DVC removes any other stage's outputs."""
    from pipeline.atomic import write_text
    from pipeline.cli_support import add_params_option, run_cli, stage_parser

    parser = stage_parser("check-params", __doc__)
    add_params_option(parser)
    parser.add_argument("--stamp", help="file to write once valid (the stage's output; its "
                                        "content never changes, so no later stage re-runs for it)")
    args = parser.parse_args(argv)

    def stage() -> None:
        from pipeline.atomic import remove_stale_under

        check_machine(load_params(args.params))
        for path in remove_stale_under(Path(args.params).parent):
            print(f"check-params: removed {path}, left by a run that was killed")
        if args.stamp:
            write_text(args.stamp, "params.yaml is valid\n")
        print(f"check-params: {args.params} is valid")

    run_cli(stage, params_path=args.params)


if __name__ == "__main__":
    main()
