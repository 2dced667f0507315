"""The project's decision rule: when one recipe's cross-validated score beats another's.

Two recipes are scored on the same houses, on two metrics: every row (what Kaggle's leaderboard
scores) and the normal houses (the two abnormal partial sales left out, since they alone carry a
quarter of the all-rows squared error). A change wins only if it gains by more than two standard
errors on one metric and loses by more than two on neither; anything else keeps the default, and
a tie keeps the simpler option (docs/model-search.md, "The decision rule").

The standard error is the one of a **paired bootstrap over houses** (`houses`): each house's
squared error (averaged over the outer fold seeds, when there are several reshuffles of the same
houses: reshuffles are not independent samples), both recipes resampled with the same houses.
Where only per-fold scores exist (older commits' files), `verdict` pairs those instead.
"""

from __future__ import annotations

import numpy as np

SE_MULTIPLE = 2.0  # a difference under this many standard errors is a tie
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed, so a verdict is the same on every run


def paired(a, b) -> tuple[float, float]:
    """Mean of the per-fold differences a - b and its standard error."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    return float(d.mean()), se


def house_errors(log_pred_by_seed, y) -> np.ndarray:
    """Each house's squared error, averaged over reshuffles ([S, N] or [N] log predictions; NaN
    where a reshuffle did not predict a house)."""
    pred = np.atleast_2d(np.asarray(log_pred_by_seed, dtype=float))
    return np.nanmean((pred - np.asarray(y, dtype=float)) ** 2, axis=0)


def stored(errors) -> list[float]:
    """Per-house errors as the metrics files and studies keep them (6 significant digits)."""
    return [float(f"{e:.6g}") for e in errors]


def bootstrap(err_a, err_b, rows=None) -> tuple[float, float]:
    """RMSE(a) - RMSE(b) over the houses `rows` (a mask; all by default), and the standard error of
    that difference by a paired bootstrap over those houses."""
    a, b = np.asarray(err_a, dtype=float), np.asarray(err_b, dtype=float)
    if rows is not None:
        a, b = a[rows], b[rows]
    diff = float(np.sqrt(a.mean()) - np.sqrt(b.mean()))
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = rng.integers(0, len(a), size=(BOOTSTRAP_SAMPLES, len(a)))
    resampled = np.sqrt(a[draws].mean(axis=1)) - np.sqrt(b[draws].mean(axis=1))
    return diff, float(resampled.std(ddof=1))


def houses(err_change, err_default, abnormal) -> dict[str, tuple[float, float]]:
    """(difference, bootstrap SE) of change - default on every house and on the normal ones."""
    normal = ~np.asarray(abnormal, dtype=bool)
    return {"all rows": bootstrap(err_change, err_default),
            "normal houses": bootstrap(err_change, err_default, normal)}


def decide(differences: dict[str, tuple[float, float]]) -> str:
    """The rule on (difference, SE) per metric, lower is better: 'better by N SE on M', 'worse
    on M', 'mixed' (a gain on one, a loss on the other: not a win) or 'tie'."""
    if not all(np.isfinite(v) for pair in differences.values() for v in pair):
        return "no verdict (a score is not a number)"
    gains = {m: -d / se if se else np.inf for m, (d, se) in differences.items() if d < 0}
    losses = [m for m, (d, se) in differences.items() if d > SE_MULTIPLE * se]
    won = {m: z for m, z in gains.items() if z > SE_MULTIPLE}
    if won and losses:
        return f"mixed (better on {', '.join(won)}; worse on {', '.join(losses)})"
    if losses:
        return f"worse on {', '.join(losses)}"
    if won:
        best = max(won, key=won.get)
        z = won[best]
        return (f"better by {z:.1f} SE on {best}" if np.isfinite(z)
                else f"better on {best} in every sample")
    return "tie"


def house_verdict(err_change, err_default, abnormal) -> str:
    """The rule for per-house squared errors of two recipes on the same houses."""
    return decide(houses(err_change, err_default, abnormal))


def verdict(change_all, default_all, change_clean, default_clean) -> str:
    """The rule for per-fold scores (lower is better) on all rows and without the outlier rows,
    paired over the folds (where per-house errors are not at hand)."""
    return decide({"all rows": paired(change_all, default_all),
                   "normal houses": paired(change_clean, default_clean)})

