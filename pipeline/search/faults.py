"""Fault tolerance for studies shared by workers: heartbeats on running trials, stale trials
failed and re-queued once, a Ctrl-C'd worker's trials given back. Hand-written because Optuna's
own heartbeat covers optimize() only, not ask/tell batches, and not journal storages."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from pipeline.search.storage import storage_errors

HEARTBEAT_ATTR = "worker_heartbeat"  # a trial's last heartbeat (epoch seconds), in every shared
                                     # storage (fail_stale_trials reads it)
INTERRUPTED_ATTR = "interrupted"  # a trial given back by a worker stopped with Ctrl-C/SIGTERM
SURPLUS_ATTR = "surplus"  # a trial asked in a race past the study's total: failed, never run

GRACE_HEARTBEATS = 2  # a running trial whose worker missed this many heartbeats is stale

def _shared(storage) -> bool:
    """Whether other workers can see the study (not an in-memory one)."""
    import optuna

    return not isinstance(storage, optuna.storages.InMemoryStorage)


class Heartbeat:
    """Records a heartbeat for this worker's running trials until stopped: the time in a system
    attribute of each trial, read by fail_stale_trials."""

    def __init__(self, storage, trial_ids: list[int], interval_s: float):
        self.storage, self.interval_s = storage, interval_s
        # An in-memory study (no storage given) has no other workers to tell.
        self.trial_ids = trial_ids if _shared(storage) else []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _beat(self) -> None:
        for trial_id in self.trial_ids:
            self.storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _run(self) -> None:
        """Beat until stopped; a storage that fails is tried again at the next beat, never a
        thread traceback (the main thread reports a lost storage when it next uses it)."""
        while not self.stop.wait(self.interval_s):
            with contextlib.suppress(Exception):  # any storage failure: retried at the next beat
                self._beat()

    def __enter__(self):
        self._beat()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()



class _Interrupted(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the batch in progress is re-queued before the exit."""


def raise_interrupted(signum, frame):
    raise _Interrupted


def trial_id(trial) -> int:
    """The storage's id of a trial (what storage calls take): Optuna has no public accessor,
    and a trial's number is not its id once several studies share a storage."""
    return trial._trial_id


# The user attribute (a table column) that names the trial a re-queued one re-runs: an
# interrupted or dead worker's trial gets a new number when it is queued again.
RERUN_ATTR = "rerun_of"


def requeue(study, storage, trials, log: Callable[[str], None]) -> None:
    """Give back this worker's unfinished trials (it was interrupted): each failed and queued
    again, so the next worker (or the same command) runs them and no configuration is lost."""
    import optuna
    from optuna.trial import TrialState

    numbers = []
    try:
        for trial in trials:
            try:
                storage.set_trial_system_attr(trial_id(trial), INTERRUPTED_ATTR, True)
                storage.set_trial_state_values(trial_id(trial), TrialState.FAIL)
            except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
                continue  # already finished (told, or failed by another worker)
            study.enqueue_trial(trial.params, user_attrs={RERUN_ATTR: trial.number})
            numbers.append(trial.number)
    except storage_errors():
        log("sweep: the storage is unreachable, so the interrupted trials stay running; they go "
            "stale and are re-run by the next worker")
        return
    if numbers:
        log(f"sweep: interrupted; trial(s) {', '.join(map(str, numbers))} queued again: the same "
            "command runs them")



def fail_stale_trials(study, storage, grace_s: float) -> None:
    """A killed worker's trials (no heartbeat for grace_s): failed, and each re-queued once.

    Read from the heartbeat attribute, for every shared storage. A trial with no heartbeat yet
    (its worker died between asking for it and its first beat) counts from its start; Optuna's
    own check skipped such trials, so they stayed running and the study never completed. Of
    workers racing to fail one trial, only the one whose update lands re-queues it (a finished
    trial refuses the others' updates).
    """
    import optuna
    from optuna.trial import TrialState

    if not _shared(storage):
        return  # no other worker: nothing of this study can be another's stale trial
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.system_attrs.get(HEARTBEAT_ATTR, trial.datetime_start.timestamp())
        if now - beat <= grace_s:
            continue
        try:
            storage.set_trial_state_values(trial_id(trial), TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue  # another worker got there first
        failed_before = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                         if t.params == trial.params and t.number != trial.number
                         and not t.system_attrs.get(INTERRUPTED_ATTR)
                         and not t.system_attrs.get(SURPLUS_ATTR)]
        if not failed_before:  # re-queued once, as Optuna's callback with max_retry=1
            study.enqueue_trial(trial.params, user_attrs={RERUN_ATTR: trial.number})
