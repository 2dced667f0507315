"""The project's decision rule: when one recipe's cross-validated score beats another's.

Scores are compared paired, fold by fold (every recipe is scored on the same folds), and a
difference counts only beyond two standard errors of the paired differences. A change becomes
the default only if it gains on every row (what Kaggle's leaderboard scores) by more than that
and does not lose by more than that without the outlier rows; anything else is a tie, and a tie
keeps the simpler option (docs/model-search.md, "The decision rule").
"""

from __future__ import annotations

import numpy as np

SE_MULTIPLE = 2.0  # a difference under this many paired standard errors is a tie


def paired(a, b) -> tuple[float, float]:
    """Mean of the per-fold differences a - b and its standard error."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    return float(d.mean()), se


def verdict(change_all, default_all, change_clean, default_clean) -> str:
    """'better by N SE', 'worse' or 'tie' for per-fold scores (lower is better) on all rows and
    without the outlier rows."""
    gain_all, se_all = paired(change_all, default_all)
    gain_clean, se_clean = paired(change_clean, default_clean)
    if gain_all < -SE_MULTIPLE * se_all and gain_clean <= SE_MULTIPLE * se_clean:
        return f"better by {-gain_all / se_all:.1f} SE" if se_all else "better on every fold"
    if gain_all > SE_MULTIPLE * se_all or gain_clean > SE_MULTIPLE * se_clean:
        return "worse"
    return "tie"
