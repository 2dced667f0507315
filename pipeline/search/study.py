"""Optuna drives a sweep; the batched trainer evaluates it.

A worker asks the study for a batch of trials, trains every trial x fold x seed of an
architecture as one batched model (pipeline/search/scores.py's `score_configs`, the train stage's own
CV), and tells each trial its score. The study lives in a database (SQLite by default, any
SQLAlchemy URL Optuna takes: PostgreSQL, MySQL) or in Optuna's journal file
(journal:///path/study.log, e.g. on a shared disk, no server), so a search can be stopped and
resumed, and any number of workers on any number of machines can share it. Workers send
heartbeats for their running trials (a trial attribute, the same for every storage); a killed
worker's trials go stale, are marked failed and re-queued once, so completed trials are never
lost or run twice.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import threading
import time
import warnings
from collections.abc import Callable

import numpy as np

from pipeline.common.errors import PipelineError
from pipeline.search.faults import (
    GRACE_HEARTBEATS,
    SURPLUS_ATTR,
    Heartbeat,
    fail_stale_trials,
    raise_interrupted,
    requeue,
    trial_id,
)
from pipeline.search.samplers import decode, distributions, make_sampler


@contextlib.contextmanager
def quiet():
    """Optuna's notes that a feature used here (a sampler option, the plots) is experimental:
    not the user's concern."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def open_study(storage, name: str, spec: dict, fixed: dict):
    """Create or load the study; refuse one created with another space or fixed settings.

    Creating a study is atomic in the storage, so of several workers starting together exactly
    one creates it; that one queues a grid's combinations, then records the space. The others
    wait for that record before they ask for a trial, so a grid is queued once, in order.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    signature = json.dumps({"space": spec["space"], "rank_by": spec["rank_by"], "fixed": fixed},
                           sort_keys=True, default=str)
    sampler = make_sampler(spec)
    try:
        study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                    direction="minimize")
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it
        return _join_study(storage, name, sampler, signature)
    try:
        if spec["sampler"] == "grid":
            _queue_grid(study, spec)
        study.set_user_attr("signature", signature)
    except BaseException:  # Ctrl-C or a lost storage mid set-up: no half-made study is left
        with contextlib.suppress(Exception):
            optuna.delete_study(study_name=name, storage=storage)
        raise
    return study


def _queue_grid(study, spec: dict, log: Callable[[str], None] | None = None) -> None:
    """Queue every combination in order (Optuna's GridSampler stops the study from inside
    tell(), which only works under Study.optimize), saying how far it is every few seconds."""
    log = log or _print_now
    dists, _ = distributions(spec["space"])
    keys = list(dists)
    total = int(np.prod([len(dists[k].choices) for k in keys]))
    said = time.monotonic()
    for done, values in enumerate(itertools.product(*(dists[k].choices for k in keys)), 1):
        study.enqueue_trial(dict(zip(keys, values, strict=True)))
        if time.monotonic() - said > 5:
            log(f"sweep: queueing the grid: {done:,} of {total:,} combinations")
            said = time.monotonic()


# A worker waits for the worker that created the study to finish setting it up while that one
# makes progress (a grid's combinations being queued); set-up that queues nothing new for this
# long was abandoned (a worker killed mid set-up cannot delete what it left).
SETUP_STALL_S = 15


def _join_study(storage, name: str, sampler, signature: str):
    """Load a study another worker created, once it has recorded its space; refuse another."""
    import optuna

    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    queued, moved, said = -1, time.monotonic(), False
    while (stored := study.user_attrs.get("signature")) is None:
        now_queued = len(study.get_trials(deepcopy=False))
        if now_queued != queued:
            queued, moved = now_queued, time.monotonic()
        if time.monotonic() - moved > SETUP_STALL_S:
            raise PipelineError(
                f"sweep: study '{name}' exists but its space was never recorded (the worker that "
                f"created it stopped while setting it up: nothing queued for {SETUP_STALL_S} s); "
                f"delete it (optuna delete-study --study-name {name} --storage URL) or use "
                "another --study name")
        if not said:
            _print_now(f"sweep: waiting for the worker that created study '{name}' to set it up")
            said = True
        time.sleep(0.2)
    if stored != signature:
        raise PipelineError(f"sweep: study '{name}' was created with another space, rank_by, "
                            "params or inputs (data/processed, the other members' predictions); "
                            "use another --study name (or the original space and inputs)")
    return study


def _counts(study) -> tuple[int, list[int], int]:
    """(completed trials, numbers of the trials still to run or running in number order, how
    many of them are running), from one read of the study."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    pending = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return done, pending, running


def _progress(study, total: int, ran: int, started: float) -> str:
    """One line after each batch, also where no progress bar shows (output to a file)."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    line = f"this worker ran {ran} trial(s); {len(complete)}/{total} done in the study"
    if complete:
        best = min(complete, key=lambda t: (t.value, t.number))
        line += f"; best so far {best.value:.5f} (trial {best.number})"
    left = total - len(complete)
    if ran and left > 0:
        eta = (time.monotonic() - started) / ran * left
        line += f"; ~{eta / 60:.0f} min left at this worker's pace"
    return f"sweep: {line}"


def _print_now(line: str) -> None:
    """Progress on stderr, flushed: it reaches a log file as it happens, and stdout keeps the
    ranked table alone."""
    print(line, file=sys.stderr, flush=True)


def run_worker(study, storage, spec: dict, evaluate: Callable[[list[dict]], list[tuple[dict, dict]]],
               log: Callable[[str], None] = _print_now) -> int:
    """Ask, evaluate and tell batches until the study holds `trials` completed trials.

    A worker asks for no more trials than the study still lacks (those running elsewhere
    counted); one asked beyond the total all the same (another worker got there first) is told
    failed before it is run, decided by trial number, so two workers never both drop or both
    keep the same one. Ctrl-C or SIGTERM re-queues the batch in progress before the exit.
    Returns how many trials this worker ran.
    """
    import signal

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, raise_interrupted) if in_main else None
    try:
        return _run_batches(study, storage, spec, evaluate, log)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _run_batches(study, storage, spec: dict, evaluate, log) -> int:
    import optuna
    from optuna.trial import TrialState

    dists, encoded = distributions(spec["space"])
    total, batch = spec["trials"], spec["batch"]
    ran, started = 0, time.monotonic()
    while True:
        fail_stale_trials(study, storage, GRACE_HEARTBEATS * spec["heartbeat_s"])
        done, _, running = _counts(study)
        if done >= total:
            return ran
        asked = []
        for _ in range(min(batch, total - done - running)):
            with quiet():
                asked.append(study.ask(dists))
        if asked:  # one read for the batch (each read of a database loads every trial)
            done_now, pending, _ = _counts(study)
            keep = set(sorted(pending)[:max(0, total - done_now)])
            for trial in [t for t in asked if t.number not in keep]:
                storage.set_trial_system_attr(trial_id(trial), SURPLUS_ATTR, True)
                study.tell(trial, state=TrialState.FAIL)  # surplus: never run
            asked = [t for t in asked if t.number in keep]
        if not asked:  # other workers hold the remaining trials: wait for them to finish
            threading.Event().wait(min(2.0, spec["heartbeat_s"]))
            continue
        configs = [decode(t.params, dists, encoded) for t in asked]
        log(f"sweep: training trial(s) {', '.join(str(t.number) for t in asked)} as one batch "
            f"({done}/{total} done in the study)")
        try:
            with Heartbeat(storage, [trial_id(t) for t in asked], spec["heartbeat_s"]):
                results = evaluate(configs)
        except KeyboardInterrupt:
            requeue(study, storage, asked, log)
            raise
        for trial, (metrics, per_fold) in zip(asked, results, strict=True):
            try:
                for key, value in {**metrics, "per_fold": per_fold}.items():
                    trial.set_user_attr(key, value)
                value = metrics[spec["rank_by"]]
                study.tell(trial, value if value == value else float("inf"))  # NaN: diverged
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
                # Its heartbeats came too late (a stalled machine or database), so another
                # worker failed it and queued it again: that copy's score is the one kept.
                log(f"sweep: note: trial {trial.number} was marked failed by another worker "
                    "(its heartbeats were late); its re-queued copy gives its score")
                continue
            ran += 1
        log(_progress(study, total, ran, started))


def cached_baseline(study, config: dict, score: Callable[[], tuple]) -> tuple:
    """(metrics, per-fold scores) of the baseline config (params.yaml's), scored once per
    study and config and kept in the study, so a rerun or another worker does not train it
    again."""
    import hashlib
    import json

    # a digest: a database's attribute keys are short (Optuna's RDB storage: 512 characters)
    digest = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    key = f"baseline:{digest}"
    cached = study.user_attrs.get(key)
    if cached is None:
        _print_now("sweep: scoring the baseline (params.yaml's config) for the verdicts")
        cached = list(score())
        study.set_user_attr(key, cached)
    return tuple(cached)


def completed_rows(study, spec: dict) -> tuple[list[dict], list[dict]]:
    """(table rows, per-fold scores) of the completed trials, in trial-number order."""
    from optuna.trial import TrialState

    dists, encoded = distributions(spec["space"])
    rows, folds = [], []
    for trial in sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        attrs = dict(trial.user_attrs)
        folds.append(attrs.pop("per_fold", {}))  # also each house's error (the verdicts')
        params = decode(trial.params, dists, encoded)
        rows.append({"config": trial.number, **{k: params[k] for k in spec["space"]}, **attrs})
    return rows, folds


def write_plots(study, out_dir, name: str) -> list:
    """Optimisation history and parameter importances as HTML files a browser opens (Optuna's
    visualisation module; needs plotly: the `plots` extra). Returns the files written."""
    from pathlib import Path

    try:
        import optuna.visualization as vis
        import plotly  # noqa: F401
    except ImportError:
        print("sweep: note: python -m pip install plotly (or '.[plots]') to get the study's "
              "optimisation-history and parameter-importance plots")
        return []
    from optuna.trial import TrialState

    from pipeline.common.atomic import atomic_path

    written = []
    figures = {"history": vis.plot_optimization_history}
    if len(study.get_trials(states=(TrialState.COMPLETE,))) > 1:
        figures["importance"] = vis.plot_param_importances
    for kind, plot in figures.items():
        path = Path(out_dir) / f"{name}_{kind}.html"
        with quiet(), atomic_path(path) as tmp:
            plot(study).write_html(str(tmp), include_plotlyjs=True)
        written.append(path)
    return written

