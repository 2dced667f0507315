"""A deliberately plain trainer: one model, nn.Linear layers, torch.optim, a Python loop.

This is the readable specification of one model of the batched trainer (pipeline/engine/trainer.py),
which must reproduce it. It shares only the seeded init and the counter-based shuffle and dropout
streams (so both see the same batches and masks); everything else (layers, loss, optimiser, L1,
weight decay, early stopping) is torch's own. `default_model` is one model of the train stage as
params.yaml configures it: its early-stopping rows drawn from its training rows, its own Lasso
(the linear path's start and the hidden layers' input scales), on its own encoding (view).
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.engine.counter_rng import dropout_keep, shuffle_order
from pipeline.engine.stacked_mlp import ACTIVATION_FUNCTIONS, init_weights, layer_sizes

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def train_one(x, y, train_rows, val_rows, *, seed, hidden, activation, optimizer, batch_size,
              lr, weight_decay, l1, dropout, max_epochs, patience, linear_skip=False,
              l1_skip=None, huber_delta=0.0, feature_scale=None, stop_rows=None,
              skip_start=None):
    """Returns (weights [in,out] list, biases [1,out] list, val_rmse per epoch, best_epoch).

    huber_delta > 0 trains on torch's Huber loss (threshold in log price, so divided by the
    target's std), times 2 so that it is the squared error inside the threshold.
    `feature_scale` [d] multiplies the hidden layers' inputs (a constant: not a parameter).
    L1 is the subgradient l1 * sign(w) added to each weight's gradient before the optimiser
    step (what an L1 term in the loss gives). Early stopping watches `stop_rows` (default: the
    validation rows). `skip_start` (weights [d], intercept), in standardised target units: the
    linear path starts there and the intercept joins the output bias."""
    sizes = layer_sizes(x.shape[1], hidden)
    w0, b0 = init_weights([seed], sizes)
    layers = nn.ModuleList(nn.Linear(i, o) for i, o in itertools.pairwise(sizes))
    with torch.no_grad():
        for layer, w, b in zip(layers, w0, b0, strict=True):
            layer.weight.copy_(w[0].T)
            layer.bias.copy_(b[0, 0])
    skip = nn.Linear(x.shape[1], 1, bias=False)
    nn.init.zeros_(skip.weight)
    if skip_start is not None:
        with torch.no_grad():
            skip.weight += skip_start[0].float()[None]
            layers[-1].bias += float(skip_start[1])
    stop_rows = val_rows if stop_rows is None else stop_rows
    decayed = [la.weight for la in layers] + ([skip.weight] if linear_skip else [])
    opt = OPTIMIZERS[optimizer](
        [{"params": decayed, "weight_decay": weight_decay},
         {"params": [la.bias for la in layers], "weight_decay": 0.0}], lr=lr)
    act = ACTIVATION_FUNCTIONS[activation]
    y64 = y.double()
    mean = y64[train_rows].mean()
    std = y64[train_rows].std(unbiased=False)
    target = ((y64 - mean) / std).float()
    seeds = torch.tensor([seed])
    n = int(train_rows.sum())

    def net(x_in, epoch=None, step=None):
        h = x_in if feature_scale is None else x_in * feature_scale
        for i, layer in enumerate(layers):
            h = layer(h)
            if i < len(layers) - 1:
                h = act(h)
                if epoch is not None and dropout > 0:
                    h = h * dropout_keep(seeds, i, epoch, step, h.shape[0], h.shape[1],
                                         torch.tensor([dropout]))[0]
        if linear_skip:
            h = h + skip(x_in)
        return h.squeeze(-1)

    best, best_val, best_epoch, since, history = None, float("inf"), 0, 0, []
    for epoch in range(max_epochs):
        order = shuffle_order(seeds, train_rows[None], epoch)[0][:n]
        for step, start in enumerate(range(0, n, batch_size)):
            idx = order[start:start + batch_size]
            out = net(x[idx], epoch, step)
            if huber_delta > 0:
                loss = 2 * F.huber_loss(out, target[idx], delta=float(huber_delta / std))
            else:
                loss = F.mse_loss(out, target[idx])
            opt.zero_grad()
            loss.backward()
            with torch.no_grad():
                for la in layers:
                    la.weight.grad += l1 * la.weight.sign()
                if linear_skip:
                    skip.weight.grad += (l1 if l1_skip is None else l1_skip) * skip.weight.sign()
            opt.step()
        with torch.no_grad():
            pred = net(x).double() * std + mean
            val = float(torch.sqrt(((pred[val_rows] - y64[val_rows]) ** 2).mean()))
            stop = float(torch.sqrt(((pred[stop_rows] - y64[stop_rows]) ** 2).mean()))
        history.append(val)
        if patience == 0 or stop < best_val:
            best = copy.deepcopy((layers.state_dict(), skip.state_dict()))
            best_val, best_epoch, since = stop, epoch, 0
        else:
            since += 1
        if patience and since >= patience:
            break
    layers.load_state_dict(best[0])
    skip.load_state_dict(best[1])
    weights = [la.weight.detach().T.clone() for la in layers]
    if linear_skip:
        weights.append(skip.weight.detach().T.clone())
    biases = [la.bias.detach()[None].clone() for la in layers]
    return weights, biases, history, best_epoch


def default_model(x, y, train_rows, val_rows, seed, config):
    """One model of the train stage as `config` (params.yaml's train section) sets it up, on its
    own encoding `x` [N, d] (the view it reads, without padding). Returns what train_one does.

    - early stopping (patience > 0) watches early_stopping_holdout of its training rows, drawn
      with numpy's generator seeded by the model's seed; they leave its training rows;
    - its own Lasso (scikit-learn, float64) on its remaining training rows: the linear path starts
      at coef / std and the output bias gains (intercept - mean) / std, in the standardised
      target units (skip_init: lasso); the hidden layers see column j times |coef_j| ** power,
      normalised to mean 1 over the columns the Lasso keeps (lasso_input_power > 0).
    """
    from sklearn.linear_model import Lasso

    train_rows, stop_rows = train_rows.clone(), None
    if config.patience > 0 and config.early_stopping_holdout > 0:
        rows = np.flatnonzero(train_rows.numpy())
        held = np.random.default_rng(seed).choice(
            rows, max(1, round(len(rows) * config.early_stopping_holdout)), replace=False)
        train_rows[held] = False
        stop_rows = torch.zeros_like(train_rows)
        stop_rows[held] = True
    lasso = Lasso(alpha=config.lasso_alpha, max_iter=config.lasso_max_iter, tol=config.lasso_tol)
    keep = train_rows.numpy()
    lasso.fit(x.numpy().astype(np.float64)[keep], y.numpy()[keep])
    coef = torch.tensor(lasso.coef_, dtype=torch.float64)
    mean = y.double()[train_rows].mean()
    std = y.double()[train_rows].std(unbiased=False)
    skip_start = None
    if config.skip_init == "lasso":
        skip_start = (coef / std, float((lasso.intercept_ - mean) / std))
    scale = None
    if config.lasso_input_power > 0:
        kept = coef != 0
        weight = coef.abs() ** config.lasso_input_power
        scale = (weight / weight[kept].mean()).float() if kept.any() else torch.ones(len(coef))
    return train_one(
        x, y, train_rows, val_rows, seed=seed, hidden=config.hidden,
        activation=config.activation, optimizer=config.optimizer, batch_size=config.batch_size,
        lr=config.lr, weight_decay=config.weight_decay, l1=config.l1, dropout=config.dropout,
        max_epochs=config.max_epochs, patience=config.patience, linear_skip=config.linear_skip,
        l1_skip=config.l1_skip, huber_delta=config.huber_delta, feature_scale=scale,
        stop_rows=stop_rows, skip_start=skip_start)
