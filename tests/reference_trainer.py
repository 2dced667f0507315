"""A deliberately plain trainer: one model, nn.Linear layers, torch.optim, a Python loop.

This is the readable specification of one model of the batched trainer (pipeline/trainer.py),
which must reproduce it. It shares only the seeded init and the counter-based shuffle and dropout
streams (so both see the same batches and masks); everything else (layers, loss, optimiser, L1,
weight decay, early stopping) is torch's own.
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.counter_rng import dropout_keep, shuffle_order
from pipeline.stacked_mlp import ACTIVATION_FUNCTIONS, init_weights, layer_sizes

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def train_one(x, y, train_rows, val_rows, *, seed, hidden, activation, optimizer, batch_size,
              lr, weight_decay, l1, dropout, max_epochs, patience, linear_skip=False,
              l1_skip=None, huber_delta=0.0, feature_scale=None):
    """Returns (weights [in,out] list, biases [1,out] list, val_rmse per epoch, best_epoch).

    huber_delta > 0 trains on torch's Huber loss (threshold in log price, so divided by the
    target's std), times 2 so that it is the squared error inside the threshold.
    `feature_scale` [d] multiplies the hidden layers' inputs (a constant: not a parameter)."""
    sizes = layer_sizes(x.shape[1], hidden)
    w0, b0 = init_weights([seed], sizes)
    layers = nn.ModuleList(nn.Linear(i, o) for i, o in itertools.pairwise(sizes))
    with torch.no_grad():
        for layer, w, b in zip(layers, w0, b0, strict=True):
            layer.weight.copy_(w[0].T)
            layer.bias.copy_(b[0, 0])
    skip = nn.Linear(x.shape[1], 1, bias=False)
    nn.init.zeros_(skip.weight)
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
            loss = loss + l1 * sum(la.weight.abs().sum() for la in layers)
            if linear_skip:
                loss = loss + (l1 if l1_skip is None else l1_skip) * skip.weight.abs().sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pred = net(x).double() * std + mean
            val = float(torch.sqrt(((pred[val_rows] - y64[val_rows]) ** 2).mean()))
        history.append(val)
        if patience == 0 or val < best_val:
            best = copy.deepcopy((layers.state_dict(), skip.state_dict()))
            best_val, best_epoch, since = val, epoch, 0
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
