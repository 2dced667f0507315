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
batched version to, weight for weight. Here: `train_batched` runs the epochs; `_Models` holds the
parameters, the optimiser and every per-model tensor (`_PerModelState`, which compaction indexes
as a whole); `BatchedOptimizer` is torch.optim's SGD / Adam / AdamW with an [M] axis.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch

from pipeline.common.errors import PipelineError
from pipeline.engine import fixed_order
from pipeline.engine.batched_optim import BatchedOptimizer, compiled_kernels, update_parameter
from pipeline.engine.counter_rng import dropout_keep, keep_mask, shuffle_order
from pipeline.engine.epoch_runner import EpochRunner
from pipeline.engine.stacked_mlp import StackedModels, forward, init_weights, layer_sizes, predict_rows


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
    # Huber loss beyond this residual, in log price (None or 0: squared error); see
    # `squared_or_huber`
    huber_delta: Sequence[float] | None = None
    # With views (x [V, N, W], pipeline/dataset/views.py): the one each model reads
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


def make_deterministic(device: torch.device) -> None:
    """On CUDA, ask torch for deterministic kernels (cuBLAS needs a fixed workspace for that,
    set before its first call, so call this before training). The CPU kernels used here are
    deterministic already, and the switch would cost a second of imports there."""
    if device.type == "cuda":
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


# Drop stopped models from the batch once this fraction of it has stopped. Results are the same
# either way (a model never depends on its batch companions); a compaction costs one copy of the
# remaining models' state and, on CUDA, a new graph capture, so it is not done for every model.
COMPACT_WHEN_STOPPED = 0.5
# CPU batched products of one matrix round differently from those of two or more (a batch of
# one takes a matrix-vector kernel), so a batch never shrinks below two models.
MIN_BATCH = 2


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
    in the batch, drop them from it, so the rest stop paying for them (see _Models.compact).
    """
    device = x.device
    n_models = train_mask.shape[0]
    stop_on_val = stop_mask is None
    stop_mask = val_mask if stop_on_val else stop_mask
    _check_shapes(x, y, train_mask, val_mask, stop_mask, arch, per_model, skip_start,
                  view_widths, feature_scale)
    models = _Models(x, y, train_mask.to(device), val_mask.to(device), stop_mask.to(device),
                     arch=arch, per_model=per_model, fused=compile_kernels and device.type == "cuda",
                     skip_start=skip_start, view_widths=view_widths, feature_scale=feature_scale)
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

    def __init__(self, models: _Models, n_models: int):
        device = models.x.device
        self.weights = [torch.empty_like(w) for w in models.best_w]
        self.biases = [torch.empty_like(b) for b in models.best_b]
        self.best_epoch = torch.zeros(n_models, dtype=torch.int64, device=device)
        self.epochs_run = torch.zeros(n_models, dtype=torch.int64, device=device)
        self.best_stop = torch.full((n_models,), float("inf"), device=device)

    def take(self, models: _Models, rows: torch.Tensor) -> None:
        """Copy the results of the batch positions `rows` out to their models' places."""
        m = models.m
        ids = m.ids[rows]
        for src, dst in zip([*models.best_w, *models.best_b], [*self.weights, *self.biases],
                            strict=True):
            dst[ids] = src[rows]
        self.best_epoch[ids] = m.best_epoch[rows]
        self.epochs_run[ids] = m.epochs_run[rows]
        self.best_stop[ids] = m.best_stop[rows]


def _run_epochs(models: _Models, n_models: int, batch: int, *, stop_on_val: bool, on_epoch,
                compact: bool, cuda_graph: bool) -> tuple[torch.Tensor, _Finished, list]:
    """Train until every model has stopped: ([3, epochs, M] scores, the finished models, the
    epoch runners used). Once COMPACT_WHEN_STOPPED of the batch has stopped, the stopped models
    leave it (`_Models.compact`) and a new runner (a new CUDA graph) takes over."""
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


@dataclass
class _PerModelState:
    """Every [M, ...] tensor of the models in the batch, row m for batch position m.

    Compaction indexes all of them at once (`select`), so a tensor added here can never be
    left out of it and misalign its models. Filled in by `_Models.__init__`."""

    ids: torch.Tensor | None = None  # [M] the model's place in the caller's order
    view: torch.Tensor | None = None  # [M] the encoding it reads (None: one encoding)
    seeds: torch.Tensor | None = None
    lr: torch.Tensor | None = None
    wd: torch.Tensor | None = None
    l1: torch.Tensor | None = None
    l1_skip: torch.Tensor | None = None
    rate: torch.Tensor | None = None  # dropout
    max_epochs: torch.Tensor | None = None
    patience: torch.Tensor | None = None
    train_mask: torch.Tensor | None = None  # [M, N]
    val_mask: torch.Tensor | None = None  # [M, N]
    stop_mask: torch.Tensor | None = None  # [M, N]
    n_train: torch.Tensor | None = None
    has_stop: torch.Tensor | None = None
    y_mean: torch.Tensor | None = None  # float64
    y_std: torch.Tensor | None = None  # float64
    target: torch.Tensor | None = None  # [M, N] standardised log price
    huber: torch.Tensor | None = None  # threshold in standardised units (0: squared error)
    feature_scale: torch.Tensor | None = None  # [M, d]
    best_stop: torch.Tensor | None = None
    best_epoch: torch.Tensor | None = None
    since_best: torch.Tensor | None = None
    active: torch.Tensor | None = None
    epochs_run: torch.Tensor | None = None

    def select(self, keep: torch.Tensor) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                setattr(self, f.name, value[keep])


def _initial_state(x, y64, masks, per_model: PerModel, view_widths, feature_scale
                   ) -> _PerModelState:
    """Every model's settings, rows, target scaling and early-stopping record at the start."""
    device, dtype = x.device, x.dtype

    def vec(values, kind=torch.float32):
        return torch.tensor(list(values), dtype=kind, device=device)

    train_mask, val_mask, stop_mask = masks
    n_models = train_mask.shape[0]
    m = _PerModelState()
    m.ids = torch.arange(n_models, device=device)
    m.view = vec([0] * n_models if per_model.view is None else per_model.view, torch.int64)
    m.seeds = vec(per_model.seeds, torch.int64)
    m.lr, m.wd, m.l1 = vec(per_model.lr), vec(per_model.weight_decay), vec(per_model.l1)
    m.l1_skip = m.l1 if per_model.l1_skip is None else vec(per_model.l1_skip)
    m.rate = vec(per_model.dropout)
    m.max_epochs = vec(per_model.max_epochs, torch.int64)
    m.patience = vec(per_model.patience, torch.int64)
    m.train_mask, m.val_mask, m.stop_mask = train_mask, val_mask, stop_mask
    m.n_train = train_mask.sum(1)
    m.has_stop = stop_mask.any(1)
    # Per-model target scaling from its own training rows (float64 for exact sums).
    m.y_mean, m.y_std = target_scaling(y64, train_mask)
    m.target = ((y64[None] - m.y_mean[:, None]) / m.y_std[:, None]).to(dtype)
    # The Huber threshold in the standardised units the loss sees (0: squared error).
    delta = vec([0.0] * n_models if per_model.huber_delta is None else per_model.huber_delta,
                torch.float64)
    m.huber = (delta / m.y_std).to(dtype)
    m.feature_scale = (None if feature_scale is None
                       else feature_scale.to(device=device, dtype=dtype))
    m.best_stop = torch.full((n_models,), float("inf"), device=device)
    m.best_epoch = torch.zeros(n_models, dtype=torch.int64, device=device)
    m.since_best = torch.zeros(n_models, dtype=torch.int64, device=device)
    m.active = torch.ones(n_models, dtype=torch.bool, device=device)
    m.epochs_run = torch.zeros(n_models, dtype=torch.int64, device=device)
    return m


def _standardised_start(skip_start, m: _PerModelState) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear fit in log price (coef [M, d], intercept [M]) in each model's standardised
    target units, float32 on the CPU (where init_weights made the weights); a zero row: none."""
    coef, intercept = (t.to(device=m.y_std.device, dtype=torch.float64) for t in skip_start)
    has = ((coef != 0).any(1) | (intercept != 0))[:, None]
    start_w = torch.where(has, coef / m.y_std[:, None], 0).to(torch.float32).cpu()
    start_b = torch.where(has[:, 0], (intercept - m.y_mean) / m.y_std, 0).to(torch.float32).cpu()
    return start_w, start_b


class _Models:
    """The models still training: their parameters, optimiser and per-model state, indexed by
    batch position.

    `m.ids` maps a batch position to the model's place in the caller's order; `compact` keeps
    only some positions (the still-active models), and every later epoch runs on them alone.
    tests/reference_trainer.py trains one such model with torch.nn and torch.optim: the
    readable specification that the tests hold this batched version to.
    """

    def __init__(self, x, y, train_mask, val_mask, stop_mask, *, arch: Architecture,
                 per_model: PerModel, fused: bool, skip_start, view_widths=None,
                 feature_scale=None):
        device, dtype = x.device, x.dtype
        self.x, self.arch, self.fused = x, arch, fused
        self.y = y.to(device=device, dtype=torch.float64)
        m = self.m = _initial_state(x, self.y, (train_mask, val_mask, stop_mask), per_model,
                                    view_widths, feature_scale)
        self.view = m.view  # every model's encoding, in the caller's order
        self.use_dropout = bool((m.rate > 0).any())
        self.use_huber = bool((m.huber > 0).any())
        widths = [x.shape[2]] * x.shape[0] if view_widths is None else list(view_widths)
        weights, biases = init_weights(per_model.seeds, layer_sizes(x.shape[-1], arch.hidden),
                                       arch.linear_skip, [widths[v] for v in m.view.tolist()])
        if skip_start is not None:
            start_w, start_b = _standardised_start(skip_start, m)
            weights[-1] += start_w[:, :, None]
            biases[-1] += start_b[:, None, None]
        self.weights = [w.to(device=device, dtype=dtype).requires_grad_() for w in weights]
        self.biases = [b.to(device=device, dtype=dtype).requires_grad_() for b in biases]
        self.update, self.mask_fn = (compiled_kernels() if fused
                                     else (update_parameter, keep_mask))
        self.opt = self._optimizer()
        self.best_w = [w.detach().clone() for w in self.weights]
        self.best_b = [b.detach().clone() for b in self.biases]

    @property
    def params(self) -> list[torch.Tensor]:
        return [*self.weights, *self.biases]

    def _optimizer(self) -> BatchedOptimizer:
        """Weights take weight decay and their L1 (the MLP's, or the linear path's own);
        biases take neither."""
        n_mlp = len(self.weights) - self.arch.linear_skip
        weight_l1 = [self.m.l1] * n_mlp + [self.m.l1_skip] * self.arch.linear_skip
        return BatchedOptimizer(
            self.arch.optimizer, self.params, is_weight=[True] * len(self.weights)
            + [False] * len(self.biases), lr=self.m.lr, weight_decay=self.m.wd,
            l1=[*weight_l1, *[None] * len(self.biases)], update=self.update)

    def compact(self, keep: torch.Tensor) -> None:
        """Keep only batch positions `keep` (in order): the per-model state, the parameters and
        the optimiser's moments are indexed, so each kept model continues exactly where it was."""
        self.m.select(keep)
        old = self.opt
        self.weights = [w.detach()[keep].requires_grad_() for w in self.weights]
        self.biases = [b.detach()[keep].requires_grad_() for b in self.biases]
        self.best_w = [w[keep] for w in self.best_w]
        self.best_b = [b[keep] for b in self.best_b]
        self.opt = self._optimizer()
        self.opt.carry_state(old, keep)

    def run_epoch(self, epoch_now: torch.Tensor, n_steps: int, batch: int) -> None:
        """One epoch of minibatch steps for every model still in the batch. Everything it reads
        is updated in place between epochs, so a captured CUDA graph of it stays valid until
        the next compaction."""
        m = self.m
        device, dtype = self.x.device, self.x.dtype
        model_index = torch.arange(len(m.seeds), device=device)[:, None]
        order = shuffle_order(m.seeds, m.train_mask, epoch_now)
        params = self.params
        for step in range(n_steps):
            idx = order[:, step * batch:(step + 1) * batch]  # [M, B]
            width = idx.shape[1]
            pos = torch.arange(step * batch, step * batch + width, device=device)
            valid = pos[None, :] < m.n_train[:, None]  # [M, B]
            n_valid = valid.sum(1)
            drop = None
            if self.use_dropout:
                def drop(layer, h, step=step):  # h [M, B, width]
                    return dropout_keep(m.seeds, layer, epoch_now, step, h.shape[1], h.shape[2],
                                        m.rate, self.mask_fn)
            rows = self.x[m.view[:, None], idx]
            out = forward(rows, self.weights, self.biases, self.arch.activation, drop,
                          self.arch.linear_skip, m.feature_scale)
            zero = torch.zeros((), device=device, dtype=dtype)
            err = torch.where(valid, out - m.target[model_index, idx], zero)
            loss = (self.loss_terms(err).sum(1) / n_valid.clamp(min=1)).sum()
            grads = torch.autograd.grad(loss, params)
            self.opt.step(list(grads), m.active & (n_valid > 0))

    def loss_terms(self, err: torch.Tensor) -> torch.Tensor:
        """Each residual's loss, err [M, B]: squared, or Huber's for the models with a threshold.
        Squared-error batches keep the plain err ** 2 (no extra work in the hot loop)."""
        if not self.use_huber:
            return err ** 2
        return squared_or_huber(err, self.m.huber[:, None])

    def score_epoch(self, epoch: int, stop_on_val: bool) -> torch.Tensor:
        """Score every model after an epoch, keep its best weights, update early stopping.
        Returns [3, M]: log-RMSE on the training, validation and early-stopping rows."""
        m = self.m
        dtype = self.x.dtype
        pred = (predict_rows(self.x, self.weights, self.biases, self.arch.activation,
                             self.arch.linear_skip, m.view, m.feature_scale)
                * m.y_std[:, None].to(dtype) + m.y_mean[:, None].to(dtype))
        y = self.y.to(dtype)
        train_rmse = _masked_rmse(pred, y, m.train_mask)
        val_rmse = _masked_rmse(pred, y, m.val_mask)
        stop_rmse = val_rmse if stop_on_val else _masked_rmse(pred, y, m.stop_mask)
        active = m.active
        m.epochs_run += active.to(torch.int64)
        # Keep this epoch's weights if it is the model's best so far (always, without early
        # stopping or stopping rows: then the last epoch is the one kept).
        keep = active & (~m.has_stop | (m.patience == 0) | (stop_rmse < m.best_stop))
        m.best_stop = torch.where(keep & m.has_stop, stop_rmse, m.best_stop)
        m.best_epoch = torch.where(keep, epoch, m.best_epoch)
        for src, dst in zip(self.params, [*self.best_w, *self.best_b], strict=True):
            dst.copy_(torch.where(keep.view(-1, 1, 1), src, dst))
        m.since_best = torch.where(keep, 0, m.since_best + 1)
        m.active &= (epoch + 1 < m.max_epochs) & ((m.patience == 0) | (m.since_best < m.patience))
        return torch.stack([train_rmse, val_rmse, stop_rmse])
