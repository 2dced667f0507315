"""Optuna drives a sweep; the batched trainer evaluates it.

A worker asks the study for a batch of trials, trains every trial x fold x seed of an
architecture as one batched model (pipeline/search/sweep.py's `score_configs`, the train stage's own
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
import zlib
from collections.abc import Callable

import numpy as np
import yaml

from pipeline.common.errors import PipelineError
from pipeline.search.storage import storage_errors

HEARTBEAT_ATTR = "worker_heartbeat"  # a trial's last heartbeat (epoch seconds), in every shared
                                     # storage (fail_stale_trials reads it)
INTERRUPTED_ATTR = "interrupted"  # a trial given back by a worker stopped with Ctrl-C/SIGTERM
SURPLUS_ATTR = "surplus"  # a trial asked in a race past the study's total: failed, never run
SAMPLERS = ("tpe", "random", "grid", "cmaes")
GRACE_HEARTBEATS = 2  # a running trial whose worker missed this many heartbeats is stale


@contextlib.contextmanager
def quiet():
    """Optuna's notes that a feature used here (a sampler option, the plots) is experimental:
    not the user's concern."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def distributions(space: dict) -> tuple[dict, set]:
    """Optuna distributions for a space; lists of lists (e.g. hidden widths) become strings."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out, encoded = {}, set()
    for key, choice in space.items():
        if isinstance(choice, list):
            if any(isinstance(c, list | dict) for c in choice):
                encoded.add(key)
                choice = [yaml.safe_dump(c, default_flow_style=True).strip() for c in choice]
            out[key] = CategoricalDistribution(choice)
            continue
        kind, (low, high) = next(iter(choice.items()))
        if kind == "int_uniform":
            out[key] = IntDistribution(low, high)
        else:
            out[key] = FloatDistribution(float(low), float(high), log=kind == "log_uniform")
    return out, encoded


# A value drawn from a continuous range is rounded to this many significant digits before it is
# trained, so the config scored is the one the table shows and --apply writes (lr: 0.001554).
SIGNIFICANT_DIGITS = 4


def decode(params: dict, dists: dict, encoded: set) -> dict:
    """A trial's params as a config: list choices decoded, floats drawn from a range rounded
    (a listed choice stays as written)."""
    from optuna.distributions import FloatDistribution

    return {k: yaml.safe_load(v) if k in encoded
            else float(f"{v:.{SIGNIFICANT_DIGITS}g}")
            if isinstance(dists[k], FloatDistribution) else v
            for k, v in params.items()}


def _trial_seed(seed: int, number: int, name: str) -> int:
    return int(np.random.SeedSequence([seed, number, zlib.crc32(name.encode())])
               .generate_state(1)[0])


def number_seeded_random(seed: int):
    """Random search whose draws are a function of (seed, trial number, parameter): workers that
    start together with the same seed still propose different trials, and one worker's study is
    the same every time."""
    import optuna

    class NumberSeededRandomSampler(optuna.samplers.BaseSampler):
        def infer_relative_search_space(self, study, trial):
            return {}

        def sample_relative(self, study, trial, search_space):
            return {}

        def sample_independent(self, study, trial, param_name, param_distribution):
            draw = optuna.samplers.RandomSampler(seed=_trial_seed(seed, trial.number, param_name))
            return draw.sample_independent(study, trial, param_name, param_distribution)

    return NumberSeededRandomSampler()


def make_sampler(spec: dict):
    import optuna
    from optuna.trial import TrialState

    kind, seed = spec["sampler"], spec.get("seed", 0)
    random = number_seeded_random(seed)
    if kind == "tpe":

        class Tpe(optuna.samplers.TPESampler):
            """TPE whose random start-up trials are drawn per trial number (see above). Whether a
            trial is a start-up one is read once per trial, not once per parameter: each read of
            a database storage loads every trial."""

            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.starting: dict[int, bool] = {}

            def sample_independent(self, study, trial, param_name, param_distribution):
                if trial.number not in self.starting:
                    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    self.starting = {trial.number: len(complete) < self._n_startup_trials}
                if self.starting[trial.number]:
                    return random.sample_independent(study, trial, param_name,
                                                     param_distribution)
                return super().sample_independent(study, trial, param_name, param_distribution)

        return Tpe(seed=seed, constant_liar=True)
    if kind in ("random", "grid"):  # grid: the combinations are queued in open_study
        return random
    try:
        import cmaes  # noqa: F401
    except ImportError as exc:
        raise PipelineError("sweep: sampler cmaes needs the cmaes package: "
                            "python -m pip install cmaes") from exc
    return optuna.samplers.CmaEsSampler(seed=seed)


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


def _shared(storage) -> bool:
    """Whether other workers can see the study (not an in-memory one)."""
    import optuna

    return not isinstance(storage, optuna.storages.InMemoryStorage)


class _Heartbeat:
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


class _Interrupted(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the batch in progress is re-queued before the exit."""


def _raise_interrupted(signum, frame):
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
    previous = signal.signal(signal.SIGTERM, _raise_interrupted) if in_main else None
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
            with _Heartbeat(storage, [trial_id(t) for t in asked], spec["heartbeat_s"]):
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


def decode_all(spec: dict) -> list[dict]:
    """Every listed choice of the space, one key at a time (to validate values before a run)."""
    out = []
    for key, choice in spec["space"].items():
        values = choice if isinstance(choice, list) else list(next(iter(choice.values())))
        out += [{key: v} for v in values]
    return out


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

