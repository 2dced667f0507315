"""The device a run trains on, and the settings that make it deterministic there."""

from __future__ import annotations

import os

import torch

from pipeline.common.errors import PipelineError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when torch sees a GPU, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError("train.device is cuda but torch sees no GPU; set train.device=auto or cpu")
    return torch.device(name)


def make_deterministic(device: torch.device) -> None:
    """On CUDA, ask torch for deterministic kernels (cuBLAS needs a fixed workspace for that,
    set before its first call, so call this before training). The CPU kernels used here are
    deterministic already, and the switch would cost a second of imports there."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
