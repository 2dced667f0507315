"""The batched models' state: parameters, optimiser and every per-model tensor (targets scaled
per model, losses), with the step that trains all of them at once."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from pipeline.engine import fixed_order
from pipeline.engine.batched_optim import BatchedOptimizer, compiled_kernels, update_parameter
from pipeline.engine.counter_rng import dropout_keep, keep_mask, shuffle_order
from pipeline.engine.specs import Architecture, PerModel
from pipeline.engine.stacked_mlp import forward, init_weights, layer_sizes, predict_rows


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


@dataclass
class PerModelState:
    """Every [M, ...] tensor of the models in the batch, row m for batch position m.

    Compaction indexes all of them at once (`select`), so a tensor added here can never be
    left out of it and misalign its models. Filled in by `BatchedModels.__init__`."""

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
                   ) -> PerModelState:
    """Every model's settings, rows, target scaling and early-stopping record at the start."""
    device, dtype = x.device, x.dtype

    def vec(values, kind=torch.float32):
        return torch.tensor(list(values), dtype=kind, device=device)

    train_mask, val_mask, stop_mask = masks
    n_models = train_mask.shape[0]
    m = PerModelState()
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


def _standardised_start(skip_start, m: PerModelState) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear fit in log price (coef [M, d], intercept [M]) in each model's standardised
    target units, float32 on the CPU (where init_weights made the weights); a zero row: none."""
    coef, intercept = (t.to(device=m.y_std.device, dtype=torch.float64) for t in skip_start)
    has = ((coef != 0).any(1) | (intercept != 0))[:, None]
    start_w = torch.where(has, coef / m.y_std[:, None], 0).to(torch.float32).cpu()
    start_b = torch.where(has[:, 0], (intercept - m.y_mean) / m.y_std, 0).to(torch.float32).cpu()
    return start_w, start_b


class BatchedModels:
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
