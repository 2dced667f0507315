"""SGD / Adam / AdamW over stacked parameters [M, ...]: torch.optim's single-tensor formulas with
a per-model lr, weight decay and L1, and a step mask for the models that take no step."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from pipeline.engine.counter_rng import keep_mask

# torch.optim's Adam/AdamW defaults, so the batched optimiser matches the library one.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


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


class BatchedOptimizer:
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

    def carry_state(self, old: BatchedOptimizer, keep: torch.Tensor) -> None:
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
