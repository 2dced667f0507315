"""Train M independent MLPs side by side as one batched model, data resident on the device.

Each model has its own training and validation rows (a fold), seed (init, shuffles, dropout
masks), and scalar hyperparameters (lr, weight decay, L1, dropout, max epochs, patience) held as
[M] tensors. A model's result never depends on which other models share the batch: its
randomness is counter-based (pipeline/counter_rng.py), a step only ever touches its own slice,
and on CUDA the products and sums whose kernels depend on the batch's size take a fixed order
(pipeline/fixed_order.py).
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

from pipeline import fixed_order
from pipeline.counter_rng import dropout_keep, keep_mask, shuffle_order
from pipeline.errors import PipelineError
from pipeline.periodic import Periodic, embedded_columns, embedded_width, init_periodic
from pipeline.schedules import factors, kind_codes
from pipeline.stacked_mlp import (
    StackedModels,
    forward,
    init_adapters,
    init_weights,
    layer_sizes,
    predict_rows,
)

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
    tabm_k: int = 1  # > 1: each model is k TabM-mini members sharing its hidden weights
    input_scale: bool = False  # a learned scale per input of the hidden layers (RealMLP)
    periodic: int = 0  # > 0: periodic embeddings of the numeric inputs, this many frequencies
    periodic_dim: int = 8  # units each numeric input becomes
    periodic_sigma: float = 0.1  # std of the frequencies' start


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
    # pipeline/schedules.py: constant / cosine for lr, constant / flat_cos for dropout and weight
    # decay (None: constant)
    lr_schedule: Sequence[str] | None = None
    reg_schedule: Sequence[str] | None = None
    # Huber loss beyond this residual, in log price (None or 0: squared error); see
    # `squared_or_huber`
    huber_delta: Sequence[float] | None = None
    # With views (x [V, N, W], pipeline/views.py): the one each model reads
    view: Sequence[int] | None = None

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
    y_mean = fixed_order.row_sum(tm * y64) / n_train
    y_std = torch.sqrt(fixed_order.row_sum(tm * (y64[None] - y_mean[:, None]) ** 2) / n_train)
    return y_mean, torch.where(y_std > 0, y_std, torch.ones_like(y_std))


def _masked_rmse(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    count = mask.sum(1)
    sq = torch.where(mask, (pred - y[None, :]) ** 2, torch.zeros((), dtype=pred.dtype,
                                                                 device=pred.device))
    rmse = torch.sqrt(fixed_order.row_sum(sq) / count.clamp(min=1))
    return torch.where(count > 0, rmse, torch.full_like(rmse, float("nan")))


def squared_or_huber(err: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """err ** 2, or where delta > 0 Huber's loss scaled to agree with it near zero: err ** 2
    inside +-delta, 2 delta |err| - delta ** 2 beyond (a large residual pulls with a constant
    force, so a few mispriced training houses bend the fit less). delta broadcasts against err."""
    size = err.abs()
    return torch.where((delta > 0) & (size > delta), delta * (2 * size - delta), err ** 2)


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

    def carry_state(self, old: _BatchedOptimizer, keep: torch.Tensor) -> None:
        """Continue the models at positions `keep` of `old`: their step counts and moments."""
        self.beta_powers = old.beta_powers[:, keep]
        self.exp_avg = [m[keep] for m in old.exp_avg]
        self.exp_avg_sq = [v[keep] for v in old.exp_avg_sq]

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
                  skip_start: tuple[torch.Tensor, torch.Tensor] | None = None,
                  compact: bool = True, view_widths: Sequence[int] | None = None,
                  feature_scale: torch.Tensor | None = None) -> TrainResult:
    """Train len(per_model) models on x [N, d] / y [N] (log price), all on x's device.

    With several encodings of the rows, x is [V, N, W] (zero-padded views, pipeline/views.py),
    `per_model.view` says which one each model reads and `view_widths` [V] how many of its
    columns are real: a model starts as a model of that width.

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
    `feature_scale` [M, d]: a fixed (untrained) scale of each input of the hidden layers, per
    model (`train.lasso_input_power` derives it from the model's own Lasso); the linear
    path sees the inputs as they are. A row of ones leaves a model as it is without it.
    `compact`: once early stopping has stopped at least COMPACT_WHEN_STOPPED of the models still
    in the batch, drop them from it, so the rest stop paying for them (see _Models.compact).
    """
    device = x.device
    n_models, n_rows = train_mask.shape
    stop_on_val = stop_mask is None
    stop_mask = val_mask if stop_on_val else stop_mask
    if (len(per_model) != n_models or val_mask.shape != train_mask.shape
            or stop_mask.shape != train_mask.shape or y.shape != (n_rows,)):
        raise ValueError("masks, targets and per-model settings disagree in shape")
    if skip_start is not None and not arch.linear_skip:
        raise ValueError("skip_start needs an architecture with a linear skip path")
    if x.dim() == 3:
        if per_model.view is None or view_widths is None or len(view_widths) != x.shape[0]:
            raise ValueError("x with views needs per_model.view and view_widths")
        if arch.periodic:
            raise PipelineError("train.periodic does not combine with preprocess.mlp_views; set "
                                "train.periodic=0 or preprocess.mlp_views=[]")
    if feature_scale is not None and feature_scale.shape != (n_models, x.shape[-1]):
        raise ValueError("feature_scale must be [models, inputs]")
    models = _Models(x, y, train_mask.to(device), val_mask.to(device), stop_mask.to(device),
                     arch, per_model, compile_kernels and device.type == "cuda", skip_start,
                     view_widths, feature_scale)
    if bool((models.n_train == 0).any()):
        raise PipelineError("a model has no training rows; use fewer folds or more data")

    total_epochs = int(models.max_epochs.max())
    hist = torch.full((3, total_epochs, n_models), float("nan"), device=device)
    best_stop_all = torch.full((n_models,), float("inf"), device=device)
    out_w = [torch.empty_like(w) for w in models.best_w]
    out_b = [torch.empty_like(b) for b in models.best_b]  # then adapters, embeddings, if any
    best_epoch = torch.zeros(n_models, dtype=torch.int64, device=device)
    epochs_run = torch.zeros(n_models, dtype=torch.int64, device=device)
    y_mean, y_std = models.y_mean, models.y_std
    batch = arch.batch_size
    n_steps = -(-int(models.n_train.max()) // batch)
    epoch_now = torch.zeros((), dtype=torch.int64, device=device)
    runners: list[_EpochRunner] = []  # one per compaction (a CUDA graph is for one batch)

    def finish(rows: torch.Tensor) -> None:
        """Copy the results of the batch positions `rows` out to their models' places."""
        ids = models.ids[rows]
        for src, dst in zip([*models.best_w, *models.best_b], [*out_w, *out_b], strict=True):
            dst[ids] = src[rows]
        best_epoch[ids] = models.best_epoch[rows]
        epochs_run[ids] = models.epochs_run[rows]
        best_stop_all[ids] = models.best_stop[rows]

    def runner() -> _EpochRunner:
        runners.append(_EpochRunner(lambda: models.run_epoch(epoch_now, n_steps, batch), device,
                                    cuda_graph))
        return runners[-1]

    train_epoch = runner()
    for epoch in range(total_epochs):
        epoch_now.fill_(epoch)
        models.schedule(epoch)
        train_epoch()
        with torch.no_grad():
            ran = models.active.clone()
            rmse = models.score_epoch(epoch, stop_on_val)
            hist[:, epoch, models.ids] = torch.where(ran, rmse, hist[:, epoch, models.ids])
        n_active = int(models.active.sum())  # the one host sync per epoch
        if on_epoch is not None:
            best = best_stop_all.index_put((models.ids,), models.best_stop)
            finite = best[torch.isfinite(best)]
            on_epoch(epoch, n_active, float(finite.mean()) if finite.numel() else float("nan"))
        if n_active == 0:
            hist = hist[:, :epoch + 1]
            break
        if (compact and len(models.ids) > MIN_BATCH
                and n_active <= (1 - COMPACT_WHEN_STOPPED) * len(models.ids)):
            # Stopped models ride along to fill the batch up to MIN_BATCH; they take no steps.
            order = torch.argsort((~models.active).to(torch.int8), stable=True)
            keep, drop = order[:max(n_active, MIN_BATCH)], order[max(n_active, MIN_BATCH):]
            finish(drop)
            models.compact(keep.sort().values)
            train_epoch = runner()
    finish(torch.arange(len(models.ids), device=device))

    names = list(names) if names is not None else [f"m{i}" for i in range(n_models)]
    biases, extra = [b.cpu() for b in out_b[:len(models.biases)]], out_b[len(models.biases):]
    adapters = extra.pop(0).cpu() if models.adapters is not None else None
    periodic = (None if models.periodic is None
                else Periodic(x.shape[1], models.periodic.columns, *(t.cpu() for t in extra)))
    view = None if x.dim() == 2 else torch.tensor(list(per_model.view), dtype=torch.int64)
    stacked = StackedModels([w.cpu() for w in out_w], biases, arch.activation, y_mean.cpu(),
                            y_std.cpu(), names, arch.linear_skip, adapters, periodic, view,
                            None if feature_scale is None
                            else feature_scale.to(device="cpu", dtype=out_w[0].dtype))
    modes = [r.mode for r in runners]
    mode = next((m for m in modes if "failed" in m), modes[0])
    return TrainResult(stacked, hist[0].cpu(), hist[1].cpu(), best_epoch.cpu(), epochs_run.cpu(),
                       mode + (" + torch.compile" if models.fused else ""), hist[2].cpu())


# Drop stopped models from the batch once this fraction of it has stopped. Results are the same
# either way (a model never depends on its batch companions); a compaction costs one copy of the
# remaining models' state and, on CUDA, a new graph capture, so it is not done for every model.
COMPACT_WHEN_STOPPED = 0.5
# CPU batched products of one matrix round differently from those of two or more (a batch of
# one takes a matrix-vector kernel), so a batch never shrinks below two models.
MIN_BATCH = 2


class _Models:
    """The models still training: every per-model tensor, indexed by batch position.

    `ids` maps a batch position to the model's place in the caller's order; `compact` keeps
    only some positions (the still-active models), and every later epoch runs on them alone.
    """

    def __init__(self, x, y, train_mask, val_mask, stop_mask, arch: Architecture,
                 per_model: PerModel, fused: bool, skip_start, view_widths=None,
                 feature_scale=None):
        device, dtype = x.device, x.dtype
        self.x, self.arch, self.fused = x, arch, fused
        self.y = y.to(device=device, dtype=torch.float64)

        def vec(values, kind=torch.float32):
            return torch.tensor(list(values), dtype=kind, device=device)

        n_models = train_mask.shape[0]
        self.ids = torch.arange(n_models, device=device)
        # With views: each model's encoding, and the real width it starts as
        self.view = None if x.dim() == 2 else vec(per_model.view, torch.int64)
        n_inputs = None if x.dim() == 2 else [view_widths[v] for v in per_model.view]
        self.seeds = vec(per_model.seeds, torch.int64)
        self.lr, self.wd, self.l1 = vec(per_model.lr), vec(per_model.weight_decay), vec(per_model.l1)
        self.l1_skip = self.l1 if per_model.l1_skip is None else vec(per_model.l1_skip)
        self.rate = vec(per_model.dropout)
        self.use_dropout = bool((self.rate > 0).any())
        # Scheduled settings: their epoch values are written into lr / wd / rate in place (so
        # the optimiser and a captured CUDA graph keep reading the same tensors), from these.
        self.base = torch.tensor([list(per_model.lr), list(per_model.weight_decay),
                                  list(per_model.dropout)], dtype=torch.float64, device=device).T
        self.kinds = torch.stack([kind_codes(per_model.lr_schedule, n_models, device),
                                  kind_codes(per_model.reg_schedule, n_models, device)], 1)
        self.scheduled = bool((self.kinds > 0).any())
        self.max_epochs = vec(per_model.max_epochs, torch.int64)
        self.patience = vec(per_model.patience, torch.int64)
        self.train_mask, self.val_mask, self.stop_mask = train_mask, val_mask, stop_mask
        self.n_train = train_mask.sum(1)
        self.has_stop = stop_mask.any(1)
        # Per-model target scaling from its own training rows (float64 for exact sums).
        self.y_mean, self.y_std = target_scaling(self.y, train_mask)
        self.target = ((self.y[None] - self.y_mean[:, None]) / self.y_std[:, None]).to(dtype)
        # The Huber threshold in the standardised units the loss sees (0: squared error).
        delta = vec([0.0] * n_models if per_model.huber_delta is None else per_model.huber_delta,
                    torch.float64)
        self.huber = (delta / self.y_std).to(dtype)
        self.use_huber = bool((self.huber > 0).any())

        self.feature_scale = (None if feature_scale is None
                              else feature_scale.to(device=device, dtype=dtype))
        self.periodic = None
        width = x.shape[-1]
        if arch.periodic:
            columns = embedded_columns(x.cpu())
            self.periodic = Periodic(x.shape[1], columns, *(
                t.to(device=device, dtype=dtype).requires_grad_() for t in init_periodic(
                    per_model.seeds, len(columns), arch.periodic, arch.periodic_dim,
                    arch.periodic_sigma)))
            width = embedded_width(x.shape[1], len(columns), arch.periodic_dim)
        weights, biases = init_weights(per_model.seeds, layer_sizes(width, arch.hidden, arch.tabm_k),
                                       arch.linear_skip, x.shape[-1], n_inputs)
        if skip_start is not None:
            start_w, start_b = (t.to(torch.float32).cpu() for t in skip_start)
            weights[-1] += start_w[:, :, None]
            biases[-1] += start_b[:, None, None]
        self.weights = [w.to(device=device, dtype=dtype).requires_grad_() for w in weights]
        self.biases = [b.to(device=device, dtype=dtype).requires_grad_() for b in biases]
        # TabM adapters train like biases (no weight decay or L1: they scale around +-1), so
        # they travel at the end of the biases' list.
        # RealMLP's scaling layer is the same thing for one member, started at 1.
        adapters = (init_adapters(per_model.seeds, arch.tabm_k, width) if arch.tabm_k > 1
                    else torch.ones(len(per_model), 1, width) if arch.input_scale else None)
        self.adapters = (None if adapters is None
                         else adapters.to(device=device, dtype=dtype).requires_grad_())
        self.update, self.mask_fn = (compiled_kernels() if fused
                                     else (update_parameter, keep_mask))
        self.opt = self._optimizer()
        self.best_w = [w.detach().clone() for w in self.weights]
        self.best_b = [b.detach().clone() for b in self.unpenalised]
        self.best_stop = torch.full((n_models,), float("inf"), device=device)
        self.best_epoch = torch.zeros(n_models, dtype=torch.int64, device=device)
        self.since_best = torch.zeros(n_models, dtype=torch.int64, device=device)
        self.active = torch.ones(n_models, dtype=torch.bool, device=device)
        self.epochs_run = torch.zeros(n_models, dtype=torch.int64, device=device)

    @property
    def unpenalised(self) -> list[torch.Tensor]:
        """Biases, then the adapters and the periodic embeddings (trained like biases: no weight
        decay or L1; the penalised hidden layer after them keeps their output in check)."""
        return [*self.biases, *([] if self.adapters is None else [self.adapters]),
                *([] if self.periodic is None else self.periodic.tensors)]

    @property
    def params(self) -> list[torch.Tensor]:
        return [*self.weights, *self.unpenalised]

    def _optimizer(self) -> _BatchedOptimizer:
        n_mlp = len(self.weights) - self.arch.linear_skip
        l1 = [self.l1] * n_mlp + [self.l1_skip] * self.arch.linear_skip
        n_free = len(self.unpenalised)
        return _BatchedOptimizer(self.arch.optimizer, self.params,
                                 [True] * len(self.weights) + [False] * n_free,
                                 self.lr, self.wd, [*l1, *[None] * n_free], self.update)

    def compact(self, keep: torch.Tensor) -> None:
        """Keep only batch positions `keep` (in order): every per-model tensor and the
        optimiser's moments are indexed, so each kept model continues exactly where it was."""
        per_model = ("ids", "view", "seeds", "lr", "wd", "l1", "l1_skip", "rate", "max_epochs",
                     "patience", "base", "kinds", "train_mask", "val_mask", "stop_mask",
                     "n_train", "has_stop", "huber", "feature_scale",
                     "y_mean", "y_std", "target", "best_stop", "best_epoch", "since_best",
                     "active", "epochs_run")
        for name in per_model:
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name)[keep])
        old = self.opt
        self.weights = [w.detach()[keep].requires_grad_() for w in self.weights]
        self.biases = [b.detach()[keep].requires_grad_() for b in self.biases]
        if self.adapters is not None:
            self.adapters = self.adapters.detach()[keep].requires_grad_()
        if self.periodic is not None:
            self.periodic = Periodic(self.periodic.n_inputs, self.periodic.columns,
                                     *(t.detach()[keep].requires_grad_()
                                       for t in self.periodic.tensors), self.periodic._indices)
        self.best_w = [w[keep] for w in self.best_w]
        self.best_b = [b[keep] for b in self.best_b]
        self.opt = self._optimizer()
        self.opt.carry_state(old, keep)

    def schedule(self, epoch: int) -> None:
        """Set lr, weight decay and dropout to their values for `epoch` (in place)."""
        if not self.scheduled:
            return
        lr_f = factors(self.kinds[:, 0], epoch, self.max_epochs)
        reg_f = factors(self.kinds[:, 1], epoch, self.max_epochs)
        for value, column, f in ((self.lr, 0, lr_f), (self.wd, 1, reg_f), (self.rate, 2, reg_f)):
            value.copy_(self.base[:, column] * f)

    def run_epoch(self, epoch_now: torch.Tensor, n_steps: int, batch: int) -> None:
        """One epoch of minibatch steps for every model still in the batch. Everything it reads
        is updated in place between epochs, so a captured CUDA graph of it stays valid until
        the next compaction."""
        device, dtype = self.x.device, self.x.dtype
        seeds, rate, n_train = self.seeds, self.rate, self.n_train
        use_dropout = self.use_dropout
        model_index = torch.arange(len(seeds), device=device)[:, None]
        order = shuffle_order(seeds, self.train_mask, epoch_now)
        params = self.params
        for step in range(n_steps):
            idx = order[:, step * batch:(step + 1) * batch]  # [M, B]
            width = idx.shape[1]
            pos = torch.arange(step * batch, step * batch + width, device=device)
            valid = pos[None, :] < n_train[:, None]  # [M, B]
            n_valid = valid.sum(1)
            drop = None
            if use_dropout:
                def drop(layer, h, step=step):  # h [M, B (x k members), width]
                    return dropout_keep(seeds, layer, epoch_now, step, h.shape[1], h.shape[2],
                                        rate, self.mask_fn)
            rows = self.x[idx] if self.view is None else self.x[self.view[:, None], idx]
            out = forward(rows, self.weights, self.biases, self.arch.activation, drop,
                          self.arch.linear_skip, self.adapters, self.periodic, self.feature_scale)
            zero = torch.zeros((), device=device, dtype=dtype)
            target = self.target[model_index, idx]
            if self.adapters is None:
                err = torch.where(valid, out - target, zero)
                loss = (self.loss_terms(err).sum(1) / n_valid.clamp(min=1)).sum()
            else:  # every member fits the target: the mean of the members' losses
                err = torch.where(valid[:, None], out - target[:, None], zero)
                loss = (self.loss_terms(err).sum(2) / n_valid.clamp(min=1)[:, None]).mean(1).sum()
            grads = torch.autograd.grad(loss, params)
            self.opt.step(list(grads), self.active & (n_valid > 0))

    def loss_terms(self, err: torch.Tensor) -> torch.Tensor:
        """Each residual's loss, err [M, ...]: squared, or Huber's for the models with a threshold.
        Squared-error batches keep the plain err ** 2 (no extra work in the hot loop)."""
        if not self.use_huber:
            return err ** 2
        return squared_or_huber(err, self.huber.view(-1, *(1,) * (err.dim() - 1)))

    def score_epoch(self, epoch: int, stop_on_val: bool) -> torch.Tensor:
        """Score every model after an epoch, keep its best weights, update early stopping.
        Returns [3, M]: log-RMSE on the training, validation and early-stopping rows."""
        dtype = self.x.dtype
        pred = (predict_rows(self.x, self.weights, self.biases, self.arch.activation,
                             self.arch.linear_skip, self.adapters, self.periodic, self.view,
                             self.feature_scale)
                * self.y_std[:, None].to(dtype) + self.y_mean[:, None].to(dtype))
        y = self.y.to(dtype)
        train_rmse = _masked_rmse(pred, y, self.train_mask)
        val_rmse = _masked_rmse(pred, y, self.val_mask)
        stop_rmse = val_rmse if stop_on_val else _masked_rmse(pred, y, self.stop_mask)
        active = self.active
        self.epochs_run += active.to(torch.int64)
        # Keep this epoch's weights if it is the model's best so far (always, without early
        # stopping or stopping rows: then the last epoch is the one kept).
        keep = active & (~self.has_stop | (self.patience == 0) | (stop_rmse < self.best_stop))
        self.best_stop = torch.where(keep & self.has_stop, stop_rmse, self.best_stop)
        self.best_epoch = torch.where(keep, epoch, self.best_epoch)
        for src, dst in zip(self.params, [*self.best_w, *self.best_b], strict=True):
            dst.copy_(torch.where(keep.view(-1, 1, 1), src, dst))
        self.since_best = torch.where(keep, 0, self.since_best + 1)
        self.active &= (epoch + 1 < self.max_epochs) & ((self.patience == 0)
                                                        | (self.since_best < self.patience))
        return torch.stack([train_rmse, val_rmse, stop_rmse])
