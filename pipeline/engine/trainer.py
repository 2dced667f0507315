"""Train M independent MLPs side by side as one batched model, data resident on the device.

Each model has its own training and validation rows (a fold), seed (init, shuffles, dropout
masks), and scalar hyperparameters (lr, weight decay, L1, dropout, max epochs, patience) held as
[M] tensors. A model's result never depends on which other models share the batch: its
randomness is counter-based (pipeline/engine/counter_rng.py), a step only ever touches its own slice,
and on CUDA the products and sums whose kernels depend on the batch's size take a fixed order
(pipeline/engine/fixed_order.py).
Early stopping is per model and watches its own stopping rows (by default its validation rows):
it keeps its best-epoch weights and stops changing once its patience runs out. The hot loop has
no DataLoader and no host sync; one small sync per epoch checks whether every model has stopped.
On CUDA the training steps of an epoch are captured once as a CUDA graph and replayed each epoch
(the epoch number lives in a device tensor), which removes the launch overhead of the hundreds of
small kernels per step; if capture fails the epoch runs eagerly, with the same kernels.

To read what one model does, start with tests/reference_trainer.py: the same model for one
model at a time in plain torch (nn.Linear, torch.optim, a Python loop), which the tests hold this
batched version to, weight for weight. Here: `train_batched` runs the epochs; models.py's
`BatchedModels` holds the parameters, the optimiser and every per-model tensor (`PerModelState`,
which compaction indexes as a whole); batched_optim.py's `BatchedOptimizer` is torch.optim's SGD /
Adam / AdamW with an [M] axis; specs.py says what goes in and comes out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from pipeline.common.errors import PipelineError
from pipeline.engine.epoch_runner import EpochRunner
from pipeline.engine.models import BatchedModels
from pipeline.engine.specs import Architecture, PerModel, TrainResult
from pipeline.engine.stacked_mlp import StackedModels

# Drop stopped models from the batch once this fraction of it has stopped. Results are the same
# either way (a model never depends on its batch companions); a compaction costs one copy of the
# remaining models' state and, on CUDA, a new graph capture, so it is not done for every model.
COMPACT_WHEN_STOPPED = 0.5
# CPU batched products of one matrix round differently from those of two or more (a batch of
# one takes a matrix-vector kernel), so a batch never shrinks below two models.
MIN_BATCH = 2


def train_batched(x: torch.Tensor, y: torch.Tensor, train_mask: torch.Tensor,
                  val_mask: torch.Tensor, arch: Architecture, per_model: PerModel, *,
                  names: Sequence[str] | None = None,
                  on_epoch: Callable[[int, int, float], None] | None = None,
                  stop_mask: torch.Tensor | None = None,
                  cuda_graph: bool = True, compile_kernels: bool = False,
                  skip_start: tuple[torch.Tensor, torch.Tensor] | None = None,
                  compact: bool = True, view_widths: Sequence[int] | None = None,
                  feature_scale: torch.Tensor | None = None) -> TrainResult:
    """Train len(per_model) models on x [V, N, W] / y [N] (log price), all on x's device.

    x holds every encoding of the rows (V zero-padded views, pipeline/dataset/views.py; V = 1 without
    views): `per_model.view` says which one each model reads (default: view 0) and
    `view_widths` [V] how many of its columns are real (default: all): a model starts as a
    model of that width.

    train_mask / val_mask [M, N] (bool) give each model its rows; val_rmse is recorded on the
    validation rows. Early stopping picks the best epoch on stop_mask's rows (default: the
    validation rows); rows held out of training for it keep the validation score unbiased.
    Targets are standardised per model with its own training rows' mean and std, so lr means the
    same across folds. `on_epoch(epoch, n_active, best_mean)` reports progress once per epoch.
    `cuda_graph=False` runs every epoch eagerly on CUDA too (for comparison and debugging).
    `compile_kernels` (CUDA only) fuses the optimiser and dropout-mask elementwise work with
    torch.compile: the same arithmetic up to float rounding, for a one-off compile per process.
    `skip_start` (with `arch.linear_skip`): (weights [M, d], intercepts [M]) of a linear fit in
    log price (each model's own Lasso); the linear path starts there, in the standardised
    target units the model trains in (`target_scaling`, computed once, here), instead of at
    zero, and the intercept joins the output bias. Zero rows leave a model's init as it is.
    `feature_scale` [M, d]: a fixed (untrained) scale of each input of the hidden layers, per
    model (`train.lasso_input_power` derives it from the model's own Lasso); the linear
    path sees the inputs as they are. A row of ones leaves a model as it is without it.
    `compact`: once early stopping has stopped at least COMPACT_WHEN_STOPPED of the models still
    in the batch, drop them from it, so the rest stop paying for them (see BatchedModels.compact).
    """
    device = x.device
    n_models = train_mask.shape[0]
    stop_on_val = stop_mask is None
    stop_mask = val_mask if stop_on_val else stop_mask
    _check_shapes(x, y, train_mask, val_mask, stop_mask, arch, per_model, skip_start,
                  view_widths, feature_scale)
    models = BatchedModels(x, y, train_mask.to(device), val_mask.to(device), stop_mask.to(device),
                           arch=arch, per_model=per_model,
                           fused=compile_kernels and device.type == "cuda", skip_start=skip_start,
                           view_widths=view_widths, feature_scale=feature_scale)
    if bool((models.m.n_train == 0).any()):
        raise PipelineError("a model has no training rows; use fewer folds or more data")

    y_mean, y_std = models.m.y_mean, models.m.y_std  # every model's (compaction drops rows)
    hist, out, runners = _run_epochs(models, n_models, arch.batch_size, stop_on_val=stop_on_val,
                                     on_epoch=on_epoch, compact=compact, cuda_graph=cuda_graph)
    stacked = StackedModels(
        weights=[w.cpu() for w in out.weights], biases=[b.cpu() for b in out.biases],
        activation=arch.activation, y_mean=y_mean.cpu(), y_std=y_std.cpu(),
        names=list(names) if names is not None else [f"m{i}" for i in range(n_models)],
        linear_skip=arch.linear_skip, view=models.view.cpu(),
        feature_scale=(None if feature_scale is None
                       else feature_scale.to(device="cpu", dtype=out.weights[0].dtype)))
    modes = [r.mode for r in runners]
    mode = next((m for m in modes if "failed" in m), modes[0])
    return TrainResult(stacked, hist[0].cpu(), hist[1].cpu(), out.best_epoch.cpu(),
                       out.epochs_run.cpu(), mode + (" + torch.compile" if models.fused else ""),
                       hist[2].cpu())


def _check_shapes(x, y, train_mask, val_mask, stop_mask, arch, per_model, skip_start,
                  view_widths, feature_scale) -> None:
    n_models, n_rows = train_mask.shape
    if (len(per_model) != n_models or val_mask.shape != train_mask.shape
            or stop_mask.shape != train_mask.shape or y.shape != (n_rows,)):
        raise ValueError("masks, targets and per-model settings disagree in shape")
    if skip_start is not None and not arch.linear_skip:
        raise ValueError("skip_start needs an architecture with a linear skip path")
    if x.dim() != 3:
        raise ValueError("x must be [views, rows, features] (pipeline/dataset/views.py, model_input)")
    if view_widths is not None and len(view_widths) != x.shape[0]:
        raise ValueError("view_widths must give each view's width")
    if feature_scale is not None and feature_scale.shape != (n_models, x.shape[-1]):
        raise ValueError("feature_scale must be [models, inputs]")


class _Finished:
    """Every model's kept weights and early-stopping record, in the caller's order, filled in
    as models leave the batch (at a compaction) or the run ends."""

    def __init__(self, models: BatchedModels, n_models: int):
        device = models.x.device
        self.weights = [torch.empty_like(w) for w in models.best_w]
        self.biases = [torch.empty_like(b) for b in models.best_b]
        self.best_epoch = torch.zeros(n_models, dtype=torch.int64, device=device)
        self.epochs_run = torch.zeros(n_models, dtype=torch.int64, device=device)
        self.best_stop = torch.full((n_models,), float("inf"), device=device)

    def take(self, models: BatchedModels, rows: torch.Tensor) -> None:
        """Copy the results of the batch positions `rows` out to their models' places."""
        m = models.m
        ids = m.ids[rows]
        for src, dst in zip([*models.best_w, *models.best_b], [*self.weights, *self.biases],
                            strict=True):
            dst[ids] = src[rows]
        self.best_epoch[ids] = m.best_epoch[rows]
        self.epochs_run[ids] = m.epochs_run[rows]
        self.best_stop[ids] = m.best_stop[rows]


def _run_epochs(models: BatchedModels, n_models: int, batch: int, *, stop_on_val: bool, on_epoch,
                compact: bool, cuda_graph: bool) -> tuple[torch.Tensor, _Finished, list]:
    """Train until every model has stopped: ([3, epochs, M] scores, the finished models, the
    epoch runners used). Once COMPACT_WHEN_STOPPED of the batch has stopped, the stopped models
    leave it (`BatchedModels.compact`) and a new runner (a new CUDA graph) takes over."""
    device = models.x.device
    total_epochs = int(models.m.max_epochs.max())
    hist = torch.full((3, total_epochs, n_models), float("nan"), device=device)
    out = _Finished(models, n_models)
    n_steps = -(-int(models.m.n_train.max()) // batch)
    epoch_now = torch.zeros((), dtype=torch.int64, device=device)
    runners: list[EpochRunner] = []  # one per compaction (a CUDA graph is for one batch)

    def runner() -> EpochRunner:
        runners.append(EpochRunner(lambda: models.run_epoch(epoch_now, n_steps, batch), device,
                                    cuda_graph))
        return runners[-1]

    train_epoch = runner()
    for epoch in range(total_epochs):
        epoch_now.fill_(epoch)
        train_epoch()
        m = models.m
        with torch.no_grad():
            ran = m.active.clone()
            rmse = models.score_epoch(epoch, stop_on_val)
            hist[:, epoch, m.ids] = torch.where(ran, rmse, hist[:, epoch, m.ids])
        n_active = int(m.active.sum())  # the one host sync per epoch
        if on_epoch is not None:
            best = out.best_stop.index_put((m.ids,), m.best_stop)
            finite = best[torch.isfinite(best)]
            on_epoch(epoch, n_active, float(finite.mean()) if finite.numel() else float("nan"))
        if n_active == 0:
            hist = hist[:, :epoch + 1]
            break
        if (compact and len(m.ids) > MIN_BATCH
                and n_active <= (1 - COMPACT_WHEN_STOPPED) * len(m.ids)):
            # Stopped models ride along to fill the batch up to MIN_BATCH; they take no steps.
            order = torch.argsort((~m.active).to(torch.int8), stable=True)
            keep, drop = order[:max(n_active, MIN_BATCH)], order[max(n_active, MIN_BATCH):]
            out.take(models, drop)
            models.compact(keep.sort().values)
            train_epoch = runner()
    out.take(models, torch.arange(len(models.m.ids), device=device))
    return hist, out, runners


