"""One epoch's training steps run eagerly, or on CUDA captured once as a CUDA graph and replayed."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch


class EpochRunner:
    """Runs one epoch's training steps: eagerly, or on CUDA as a replayed CUDA graph.

    The first epoch runs eagerly on a side stream (the warm-up CUDA graphs need: cuBLAS handles,
    autograd's streams, allocator pools), then the steps are captured and every later epoch is one
    `replay()`. Capture records the same kernels the eager run launches, so results are unchanged.
    """

    def __init__(self, run_epoch: Callable[[], None], device: torch.device, use_graph: bool):
        self.run_epoch, self.device = run_epoch, device
        self.use_graph = use_graph and device.type == "cuda"
        self.graph: torch.cuda.CUDAGraph | None = None
        self.mode = "cuda graph" if self.use_graph else "eager"

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            return
        if not self.use_graph:
            self.run_epoch()
            return
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self.run_epoch()
        torch.cuda.current_stream(self.device).wait_stream(side)
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.run_epoch()
            self.graph = graph
        except RuntimeError as exc:  # capture is an optimisation: fall back to eager epochs
            warnings.warn(f"CUDA graph capture failed, training eagerly: {exc}", stacklevel=2)
            self.use_graph, self.mode = False, "eager (graph capture failed)"
