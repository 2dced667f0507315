"""Shared CLI behaviour: a PipelineError becomes one line on stderr and exit status 1."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run_cli(stage: Callable[[], object]) -> None:
    """Run a stage; report a user-fixable failure as one line instead of a traceback."""
    from pipeline.errors import PipelineError

    try:
        stage()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
