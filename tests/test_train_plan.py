"""Which rows each fold model trains on, stops on and is scored on."""

import numpy as np

from pipeline.train import plan_folds, stopping_rows

N_ROWS = 200


def _plan(**updates):
    from conftest import repo_params

    params = repo_params(folds=4, n_seeds=2, **updates).train
    outlier = np.zeros(N_ROWS, dtype=bool)
    outlier[[3, 50]] = True
    return plan_folds(N_ROWS, outlier, params), params, outlier


def test_holdout_is_drawn_from_training_rows_never_the_scored_fold():
    plan, params, outlier = _plan(patience=10, early_stopping_holdout=0.2, exclude_outliers=True)
    train, stop = stopping_rows(plan, params)
    assert not (train & stop).any()
    assert not (stop & plan.val_mask).any() and not (train & plan.val_mask).any()
    np.testing.assert_array_equal(train | stop, plan.train_mask)
    assert not stop[:, outlier].any()
    held = stop.sum(1) / plan.train_mask.sum(1)
    np.testing.assert_allclose(held, 0.2, atol=0.01)
    # The two seeds of a fold hold out different rows (each its own draw), reproducibly.
    assert (stop[0] != stop[1]).any()
    np.testing.assert_array_equal(stopping_rows(plan, params)[1], stop)


def test_holdout_zero_stops_on_the_scored_fold_and_patience_zero_on_nothing():
    plan, params, _ = _plan(patience=10, early_stopping_holdout=0.0)
    train, stop = stopping_rows(plan, params)
    np.testing.assert_array_equal(train, plan.train_mask)
    np.testing.assert_array_equal(stop, plan.val_mask)
    plan, params, _ = _plan(patience=0, early_stopping_holdout=0.2)
    train, stop = stopping_rows(plan, params)
    np.testing.assert_array_equal(train, plan.train_mask)
    assert not stop.any()

