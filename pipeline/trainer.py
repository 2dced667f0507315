"""Train M independent MLPs side by side as one batched model, data resident on the device.

Each model has its own training and validation rows (a fold), seed (init, shuffles, dropout
masks), and scalar hyperparameters (lr, weight decay, L1, dropout, max epochs, patience) held as
[M] tensors. A model's result never depends on which other models share the batch: its
randomness is counter-based (pipeline/counter_rng.py) and a step only ever touches its own slice.
Early stopping is per model and watches its own stopping rows (by default its validation rows):
it keeps its best-epoch weights and stops changing once its patience runs out. The hot loop has
no DataLoader and no host sync; one small sync per epoch checks whether every model has stopped.
On CUDA the training steps of an epoch are captured once as a CUDA graph and replayed each epoch
(the epoch number lives in a device tensor), which removes the launch overhead of the hundreds of
small kernels per step; if capture fails the epoch runs eagerly, with the same kernels.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from pipeline.counter_rng import dropout_keep, keep_mask, shuffle_order
from pipeline.errors import PipelineError
from pipeline.stacked_mlp import StackedModels, forward, init_weights, layer_sizes, predict_rows

# torch.optim's Adam/AdamW defaults, so the batched optimiser matches the library one.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class Architecture:
    """What all models trained together share."""

    hidden: tuple[int, ...]
    activation: str
    optimizer: str
    batch_size: int
    linear_skip: bool = False


@dataclass(frozen=True)
class PerModel:
    """Per-model settings, one entry per model."""

    seeds: Sequence[int]
    lr: Sequence[float]
    weight_decay: Sequence[float]
    l1: Sequence[float]  # on the MLP's weights
    dropout: Sequence[float]
    max_epochs: Sequence[int]
    patience: Sequence[int]  # 0: no early stopping, keep the last epoch
    l1_skip: Sequence[float] | None = None  # on the linear skip path; None: the same as l1

    def __len__(self) -> int:
        return len(self.seeds)

    @staticmethod
    def repeat(seeds: Sequence[int], **scalars) -> PerModel:
        return PerModel(seeds=list(seeds), **{k: [v] * len(seeds) for k, v in scalars.items()})


@dataclass
class TrainResult:
    models: StackedModels  # best-epoch weights, on the CPU
    train_rmse: torch.Tensor  # [epochs, M] log-RMSE on the model's training rows; NaN once stopped
    val_rmse: torch.Tensor  # [epochs, M] log-RMSE on its validation rows; NaN once stopped/no rows
    best_epoch: torch.Tensor  # [M], 0-based
    epochs_run: torch.Tensor  # [M]
    epoch_mode: str = "eager"  # how the training steps ran: eager, or replayed as a CUDA graph
    stop_rmse: torch.Tensor | None = None  # [epochs, M] on the rows that pick the best epoch

    def select(self, models: slice) -> TrainResult:
        """The results of a contiguous range of models (e.g. one config of a sweep)."""
        return TrainResult(self.models.select(models), self.train_rmse[:, models],
                           self.val_rmse[:, models], self.best_epoch[models],
                           self.epochs_run[models], self.epoch_mode,
                           None if self.stop_rmse is None else self.stop_rmse[:, models])


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when torch sees a GPU, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError("train.device is cuda but torch sees no GPU; set train.device=auto or cpu")
    return torch.device(name)


def make_deterministic() -> None:
    """Ask torch for deterministic kernels; cuBLAS needs a fixed workspace for that on CUDA.

    The variable must be set before the first cuBLAS call, so call this before training.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)


def target_scaling(y: torch.Tensor, train_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each model's mean and std of y over its own training rows, [M] float64 each.

    Targets are standardised with these, so lr means the same across folds.
    """
    y64 = y.to(device=train_mask.device, dtype=torch.float64)
    tm = train_mask.to(torch.float64)
    n_train = tm.sum(1).clamp(min=1)
    y_mean = (tm * y64).sum(1) / n_train
    y_std = torch.sqrt((tm * (y64[None] - y_mean[:, None]) ** 2).sum(1) / n_train)
    return y_mean, torch.where(y_std > 0, y_std, torch.ones_like(y_std))


def _masked_rmse(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    count = mask.sum(1)
    sq = torch.where(mask, (pred - y[None, :]) ** 2, torch.zeros((), dtype=pred.dtype,
                                                                 device=pred.device))
    rmse = torch.sqrt(sq.sum(1) / count.clamp(min=1))
    return torch.where(count > 0, rmse, torch.full_like(rmse, float("nan")))


def update_parameter(p, g, m, v, lr, keep, step_size, bias2_sqrt, wd, l1, kind: str,
                     decay: bool) -> None:
    """One optimiser step for one stacked parameter, in place (torch.optim's formulas).

    A plain function so torch.compile can fuse its dozen elementwise passes into one kernel.
    """
    if l1 is not None:
        g = torch.addcmul(g, l1, p.sign())
    if decay and kind in ("sgd", "adam"):
        g = torch.addcmul(g, wd, p)
    if kind == "sgd":
        p.addcmul_(lr, g, value=-1)
        return
    if decay and kind == "adamw":
        p.mul_(1 - lr * wd)
    m.lerp_(g, (1 - ADAM_BETAS[0]) * keep)
    v.lerp_(g * g, (1 - ADAM_BETAS[1]) * keep)
    denom = v.sqrt().div_(bias2_sqrt).add_(ADAM_EPS)
    p.addcdiv_(m * step_size, denom, value=-1)


@functools.cache
def compiled_kernels() -> tuple[Callable, Callable]:
    """torch.compile'd (update_parameter, keep_mask), made once per process and shared by runs.

    Shapes are dynamic so one compilation serves every model count and layer width.
    """
    return (torch.compile(update_parameter, dynamic=True),
            torch.compile(keep_mask, dynamic=True, fullgraph=True))


class _BatchedOptimizer:
    """SGD / Adam / AdamW over stacked parameters, with per-model lr, weight decay and L1.

    Mirrors torch.optim's single-tensor formulas; weight decay and L1 apply to weights, not
    biases (L1 adds l1 * sign(w) to the gradient, the subgradient of l1 * |w|). `mask` [M] says
    which models take this step: the others (stopped, or with no rows in this step) get a zero
    step size and zero moment updates, so they stay exactly as they are. Updates are in place.
    `l1` gives each parameter its [M] penalty (None: none, as for biases).
    """

    def __init__(self, kind: str, params: list[torch.Tensor], is_weight: list[bool],
                 lr: torch.Tensor, weight_decay: torch.Tensor,
                 l1: list[torch.Tensor | None], update: Callable = update_parameter):
        self.kind, self.params, self.is_weight, self.update = kind, params, is_weight, update
        self.lr = lr.view(-1, 1, 1)
        self.wd = weight_decay.view(-1, 1, 1)
        self.l1 = [p.view(-1, 1, 1) if p is not None and bool((p > 0).any()) else None
                   for p in l1]
        self.use_wd = bool((weight_decay > 0).any())
        # beta1**t and beta2**t per model as running products (float64), not pow(): a pow over
        # the [M] step counts is vectorised for some models and scalar for the rest, depending
        # on M, and the two paths round differently, so a model's steps would depend on how many
        # models share the batch. Products, divisions and square roots round the same either way.
        self.beta_powers = torch.ones(2, lr.shape[0], dtype=torch.float64, device=lr.device)
        self.betas = torch.tensor(ADAM_BETAS, dtype=torch.float64, device=lr.device)[:, None]
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], mask: torch.Tensor) -> None:
        keep = mask.to(self.lr.dtype).view(-1, 1, 1)
        self.beta_powers.copy_(torch.where(mask[None], self.beta_powers * self.betas,
                                           self.beta_powers))
        # A model that has not stepped yet (power 1) takes no step: use t = 1 to stay finite.
        powers = torch.where(self.beta_powers == 1, self.betas, self.beta_powers)
        corrections = (1 - powers).to(self.lr.dtype)
        lr = self.lr * keep
        step_size = lr / corrections[0].view(-1, 1, 1)
        bias2_sqrt = corrections[1].sqrt().view(-1, 1, 1)
        for i, (p, g, is_w) in enumerate(zip(self.params, grads, self.is_weight, strict=True)):
            self.update(p, g, self.exp_avg[i], self.exp_avg_sq[i], lr, keep, step_size,
                        bias2_sqrt, self.wd, self.l1[i], self.kind, is_w and self.use_wd)


class _EpochRunner:
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


def train_batched(x: torch.Tensor, y: torch.Tensor, train_mask: torch.Tensor,
                  val_mask: torch.Tensor, arch: Architecture, per_model: PerModel,
                  names: Sequence[str] | None = None,
                  on_epoch: Callable[[int, int, float], None] | None = None,
                  stop_mask: torch.Tensor | None = None,
                  cuda_graph: bool = True, compile_kernels: bool = False,
                  skip_start: tuple[torch.Tensor, torch.Tensor] | None = None) -> TrainResult:
    """Train len(per_model) models on x [N, d] / y [N] (log price), all on x's device.

    train_mask / val_mask [M, N] (bool) give each model its rows; val_rmse is recorded on the
    validation rows. Early stopping picks the best epoch on stop_mask's rows (default: the
    validation rows); rows held out of training for it keep the validation score unbiased.
    Targets are standardised per model with its own training rows' mean and std, so lr means the
    same across folds. `on_epoch(epoch, n_active, best_mean)` reports progress once per epoch.
    `cuda_graph=False` runs every epoch eagerly on CUDA too (for comparison and debugging).
    `compile_kernels` (CUDA only) fuses the optimiser and dropout-mask elementwise work with
    torch.compile: the same arithmetic up to float rounding, for a one-off compile per process.
    `skip_start` (with `arch.linear_skip`): (weights [M, d], intercepts [M]) of a linear fit in
    standardised target units (see `target_scaling`); the linear path starts there instead of at
    zero, and the intercept is added to the output bias. Zero rows leave a model's init as it is.
    """
    device, dtype = x.device, x.dtype
    n_models, n_rows = train_mask.shape
    stop_on_val = stop_mask is None
    stop_mask = val_mask if stop_on_val else stop_mask
    if (len(per_model) != n_models or val_mask.shape != train_mask.shape
            or stop_mask.shape != train_mask.shape or y.shape != (n_rows,)):
        raise ValueError("masks, targets and per-model settings disagree in shape")
    train_mask = train_mask.to(device)
    val_mask = val_mask.to(device)
    stop_mask = stop_mask.to(device)
    n_train = train_mask.sum(1)
    if bool((n_train == 0).any()):
        raise PipelineError("a model has no training rows; use fewer folds or more data")

    def vec(values, kind=torch.float32):
        return torch.tensor(list(values), dtype=kind, device=device)

    seeds = vec(per_model.seeds, torch.int64)
    lr, wd, l1 = vec(per_model.lr), vec(per_model.weight_decay), vec(per_model.l1)
    l1_skip = l1 if per_model.l1_skip is None else vec(per_model.l1_skip)
    rate = vec(per_model.dropout)
    max_epochs = vec(per_model.max_epochs, torch.int64)
    patience = vec(per_model.patience, torch.int64)
    use_dropout = bool((rate > 0).any())

    # Per-model target scaling from its own training rows (float64 for exact sums).
    y64 = y.to(device=device, dtype=torch.float64)
    y_mean, y_std = target_scaling(y64, train_mask)
    target = ((y64[None] - y_mean[:, None]) / y_std[:, None]).to(dtype)  # [M, N]

    weights, biases = init_weights(per_model.seeds, layer_sizes(x.shape[1], arch.hidden),
                                   arch.linear_skip)
    if skip_start is not None:
        if not arch.linear_skip:
            raise ValueError("skip_start needs an architecture with a linear skip path")
        start_w, start_b = (t.to(torch.float32).cpu() for t in skip_start)
        weights[-1] += start_w[:, :, None]
        biases[-1] += start_b[:, None, None]
    weights = [w.to(device=device, dtype=dtype).requires_grad_() for w in weights]
    biases = [b.to(device=device, dtype=dtype).requires_grad_() for b in biases]
    params = [*weights, *biases]
    fused = compile_kernels and device.type == "cuda"
    update, mask_fn = compiled_kernels() if fused else (update_parameter, keep_mask)
    l1_per_weight = [l1] * (len(weights) - arch.linear_skip) + [l1_skip] * arch.linear_skip
    opt = _BatchedOptimizer(arch.optimizer, params, [True] * len(weights) + [False] * len(biases),
                            lr, wd, [*l1_per_weight, *[None] * len(biases)], update)
    best_w = [w.detach().clone() for w in weights]
    best_b = [b.detach().clone() for b in biases]

    total_epochs = int(max_epochs.max())
    hist_train = torch.full((total_epochs, n_models), float("nan"), device=device)
    hist_val = torch.full((total_epochs, n_models), float("nan"), device=device)
    hist_stop = torch.full((total_epochs, n_models), float("nan"), device=device)
    has_stop = stop_mask.any(1)
    best_stop = torch.full((n_models,), float("inf"), device=device)
    best_epoch = torch.zeros(n_models, dtype=torch.int64, device=device)
    since_best = torch.zeros(n_models, dtype=torch.int64, device=device)
    active = torch.ones(n_models, dtype=torch.bool, device=device)
    epochs_run = torch.zeros(n_models, dtype=torch.int64, device=device)
    batch = arch.batch_size
    n_steps = -(-int(n_train.max()) // batch)
    model_index = torch.arange(n_models, device=device)[:, None]
    # Everything the steps read lives in tensors updated in place, so a captured graph sees it.
    epoch_now = torch.zeros((), dtype=torch.int64, device=device)

    def run_epoch() -> None:
        order = shuffle_order(seeds, train_mask, epoch_now)
        for step in range(n_steps):
            idx = order[:, step * batch:(step + 1) * batch]  # [M, B]
            width = idx.shape[1]
            pos = torch.arange(step * batch, step * batch + width, device=device)
            valid = pos[None, :] < n_train[:, None]  # [M, B]
            n_valid = valid.sum(1)
            drop = None
            if use_dropout:
                def drop(layer, h, step=step, width=width):
                    return dropout_keep(seeds, layer, epoch_now, step, width, h.shape[2], rate,
                                        mask_fn)
            out = forward(x[idx], weights, biases, arch.activation, drop, arch.linear_skip)
            err = torch.where(valid, out - target[model_index, idx], torch.zeros((), device=device,
                                                                                dtype=dtype))
            loss = ((err ** 2).sum(1) / n_valid.clamp(min=1)).sum()
            grads = torch.autograd.grad(loss, params)
            opt.step(list(grads), active & (n_valid > 0))

    train_epoch = _EpochRunner(run_epoch, device, cuda_graph)
    for epoch in range(total_epochs):
        epoch_now.fill_(epoch)
        train_epoch()

        with torch.no_grad():
            pred = (predict_rows(x, weights, biases, arch.activation, arch.linear_skip)
                    * y_std[:, None].to(dtype) + y_mean[:, None].to(dtype))
            train_rmse = _masked_rmse(pred, y64.to(dtype), train_mask)
            val_rmse = _masked_rmse(pred, y64.to(dtype), val_mask)
            stop_rmse = val_rmse if stop_on_val else _masked_rmse(pred, y64.to(dtype), stop_mask)
            hist_train[epoch] = torch.where(active, train_rmse, hist_train[epoch])
            hist_val[epoch] = torch.where(active, val_rmse, hist_val[epoch])
            hist_stop[epoch] = torch.where(active, stop_rmse, hist_stop[epoch])
            epochs_run += active.to(torch.int64)
            # Keep this epoch's weights if it is the model's best so far (always, without early
            # stopping or stopping rows: then the last epoch is the one kept).
            keep = active & (~has_stop | (patience == 0) | (stop_rmse < best_stop))
            best_stop = torch.where(keep & has_stop, stop_rmse, best_stop)
            best_epoch = torch.where(keep, epoch, best_epoch)
            for src, dst in zip([*weights, *biases], [*best_w, *best_b], strict=True):
                dst.copy_(torch.where(keep.view(-1, 1, 1), src, dst))
            since_best = torch.where(keep, 0, since_best + 1)
            active &= (epoch + 1 < max_epochs) & ((patience == 0) | (since_best < patience))
        n_active = int(active.sum())  # the one host sync per epoch
        if on_epoch is not None:
            finite = best_stop[torch.isfinite(best_stop)]
            on_epoch(epoch, n_active, float(finite.mean()) if finite.numel() else float("nan"))
        if n_active == 0:
            hist_train, hist_val = hist_train[:epoch + 1], hist_val[:epoch + 1]
            hist_stop = hist_stop[:epoch + 1]
            break

    names = list(names) if names is not None else [f"m{i}" for i in range(n_models)]
    models = StackedModels([w.cpu() for w in best_w], [b.cpu() for b in best_b], arch.activation,
                           y_mean.cpu(), y_std.cpu(), names, arch.linear_skip)
    return TrainResult(models, hist_train.cpu(), hist_val.cpu(), best_epoch.cpu(),
                       epochs_run.cpu(), train_epoch.mode + (" + torch.compile" if fused else ""),
                       hist_stop.cpu())
