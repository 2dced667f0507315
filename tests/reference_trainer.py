"""A deliberately plain trainer: one model, nn.Linear layers, torch.optim, a Python loop.

The batched trainer must reproduce it. It shares only the seeded init and the counter-based
shuffle and dropout streams (so both see the same batches and masks); everything else (layers,
loss, optimiser, L1, weight decay, early stopping) is torch's own.
"""

from __future__ import annotations

import copy
import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.counter_rng import dropout_keep, shuffle_order
from pipeline.periodic import embedded_columns, init_periodic
from pipeline.schedules import factor
from pipeline.stacked_mlp import ACTIVATION_FUNCTIONS, init_adapters, init_weights, layer_sizes

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def train_one(x, y, train_rows, val_rows, *, seed, hidden, activation, optimizer, batch_size,
              lr, weight_decay, l1, dropout, max_epochs, patience, linear_skip=False,
              l1_skip=None, tabm_k=1, input_scale=False, periodic=0, periodic_dim=8,
              periodic_sigma=0.1, lr_schedule="constant", reg_schedule="constant",
              huber_delta=0.0, feature_scale=None):
    """Returns (weights [in,out] list, biases [1,out] list, val_rmse per epoch, best_epoch),
    and with tabm_k > 1 the TabM adapters [k, in] after the biases, then with periodic > 0 the
    embedding's frequencies [F, k], weights [F, 2k, dim] and biases [F, dim].

    TabM-mini here is written the plain way: k copies of each row, one per member, scaled by
    the member's adapter; the last layer computes every output unit for every member's rows and
    member i keeps unit i. The periodic embedding is one nn.Linear per numeric column, its
    outputs after the columns left as they are. The lr schedule is torch's LambdaLR; the
    scheduled weight decay and dropout rate are set at the start of each epoch. huber_delta > 0
    trains on torch's Huber loss (threshold in log price, so divided by the target's std), times
    2 so that it is the squared error inside the threshold. `feature_scale` [d] multiplies the
    hidden layers' inputs (a constant: not a parameter)."""
    columns = embedded_columns(x).tolist() if periodic else []
    kept = [j for j in range(x.shape[1]) if j not in columns]
    width = len(kept) + len(columns) * periodic_dim
    sizes = layer_sizes(width, hidden, tabm_k)
    w0, b0 = init_weights([seed], sizes)
    adapters = (nn.Parameter(init_adapters([seed], tabm_k, width)[0].clone()) if tabm_k > 1
                else nn.Parameter(torch.ones(1, width)) if input_scale else None)
    frequencies, embeds = None, nn.ModuleList()
    if periodic:
        f0, ew0, eb0 = (t[0] for t in init_periodic([seed], len(columns), periodic, periodic_dim,
                                                    periodic_sigma))
        frequencies = nn.Parameter(f0.clone())
        for f in range(len(columns)):
            embed = nn.Linear(2 * periodic, periodic_dim)
            with torch.no_grad():
                embed.weight.copy_(ew0[f].view(2 * periodic, periodic_dim).T)
                embed.bias.copy_(eb0[f])
            embeds.append(embed)
    members = adapters is not None
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
         {"params": [la.bias for la in layers] + ([adapters] if members else [])
          + ([frequencies, *embeds.parameters()] if periodic else []),
          "weight_decay": 0.0}], lr=lr)
    lr_steps = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda epoch: factor(lr_schedule, epoch, max_epochs))
    act = ACTIVATION_FUNCTIONS[activation]
    y64 = y.double()
    mean = y64[train_rows].mean()
    std = y64[train_rows].std(unbiased=False)
    target = ((y64 - mean) / std).float()
    seeds = torch.tensor([seed])
    n = int(train_rows.sum())

    def embedded(x_in):
        if not periodic:
            return x_in
        units = []
        for f, column in enumerate(columns):
            angle = 2 * math.pi * x_in[:, column:column + 1] * frequencies[f]  # [B, k]
            units.append(torch.relu(embeds[f](torch.cat([torch.cos(angle), torch.sin(angle)], 1))))
        return torch.cat([x_in[:, kept], *units], dim=1)

    def net(x_in, epoch=None, step=None, rate=0.0):
        """[B] predictions, or [k, B] (one per member) with TabM."""
        h = embedded(x_in if feature_scale is None else x_in * feature_scale)
        h = h[None] * adapters[:, None, :] if members else h  # [k, B, d]
        for i, layer in enumerate(layers):
            h = layer(h)
            if i < len(layers) - 1:
                h = act(h)
                if epoch is not None and dropout > 0:
                    rows, width = h.shape[-2] * tabm_k, h.shape[-1]
                    keep = dropout_keep(seeds, i, epoch, step, rows, width,
                                        torch.tensor([rate]))[0]
                    # the batched trainer lays a batch out row by row, members side by side
                    h = h * (keep.view(-1, tabm_k, width).transpose(0, 1) if members else keep)
        if members:
            h = h[torch.arange(tabm_k), :, torch.arange(tabm_k)]  # member i's unit i: [k, B]
            return h + skip(x_in).squeeze(-1)[None] if linear_skip else h
        if linear_skip:
            h = h + skip(x_in)
        return h.squeeze(-1)

    best, best_val, best_epoch, since, history = None, float("inf"), 0, 0, []
    for epoch in range(max_epochs):
        order = shuffle_order(seeds, train_rows[None], epoch)[0][:n]
        rate = dropout * factor(reg_schedule, epoch, max_epochs)
        opt.param_groups[0]["weight_decay"] = weight_decay * factor(reg_schedule, epoch, max_epochs)
        for step, start in enumerate(range(0, n, batch_size)):
            idx = order[start:start + batch_size]
            out = net(x[idx], epoch, step, rate)
            if huber_delta > 0:
                loss = 2 * F.huber_loss(out, target[idx].expand_as(out),
                                        delta=float(huber_delta / std))
            else:
                loss = F.mse_loss(out, target[idx].expand_as(out))
            loss = loss + l1 * sum(la.weight.abs().sum() for la in layers)
            if linear_skip:
                loss = loss + (l1 if l1_skip is None else l1_skip) * skip.weight.abs().sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        lr_steps.step()
        with torch.no_grad():
            out = net(x)
            pred = (out.mean(0) if members else out).double() * std + mean
            val = float(torch.sqrt(((pred[val_rows] - y64[val_rows]) ** 2).mean()))
        history.append(val)
        if patience == 0 or val < best_val:
            best = copy.deepcopy((layers.state_dict(), skip.state_dict(),
                                  None if adapters is None else adapters.detach(),
                                  None if frequencies is None else frequencies.detach(),
                                  embeds.state_dict()))
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
    if members:
        biases.append(best[2].clone())
    if periodic:
        embeds.load_state_dict(best[4])
        biases += [best[3].clone(), torch.stack([e.weight.detach().T for e in embeds]),
                   torch.stack([e.bias.detach() for e in embeds])]
    return weights, biases, history, best_epoch
