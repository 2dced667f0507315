"""Sweeps on Optuna studies: resumable, shared by workers, and clear about a storage it cannot use.

Workers are real `house-prices sweep` processes sharing an SQLite file, as on one machine."""

import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from conftest import ROOT, repo_params
from optuna.trial import TrialState

from pipeline.common.errors import PipelineError
from pipeline.dataset.matrices import preprocess
from pipeline.search import space as spaces
from pipeline.search import sweep
from pipeline.search.storage import open_storage


@pytest.fixture
def workspace(ames_sample, tmp_path):
    """Preprocessed sample data and a params.yaml with tiny training."""
    params = repo_params(folds=3, n_seeds=1, max_epochs=4, patience=2, device="cpu")
    train, test = ames_sample
    preprocess(train, test, params.preprocess).save(tmp_path / "processed")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"].update(folds=3, n_seeds=1, max_epochs=4, patience=2, device="cpu")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return params, tmp_path


def write_space(tmp_path, **spec):
    spec = {"sampler": "random", "seed": 0, "heartbeat_s": 1, "rank_by": "cv_rmse",
            "space": {"lr": {"log_uniform": [1e-4, 1e-2]}, "dropout": [0.1, 0.3, 0.5]}, **spec}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_worker_left_behind():
    """A test that fails or times out mid-study leaves no sweep worker running."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _default_sigint() -> None:
    """A process started in the background by a non-interactive shell (a CI script's `&`)
    inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler: give the
    worker Ctrl-C's default back, as a terminal would."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def worker(tmp_path, space, storage, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.search.sweep", str(space), "--params",
         str(tmp_path / "params.yaml"), "--data", str(tmp_path / "processed"), "--out",
         str(tmp_path / "out"), "--storage", storage, "--study", "shared", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
        preexec_fn=_default_sigint)
    STARTED.append(proc)
    return proc


def trials_by_state(storage):
    """The study's trials by state, read while workers may still be creating its tables (the
    project's open_storage retries that race)."""
    try:
        study = optuna.load_study(study_name="shared", storage=open_storage(storage))
    except KeyError:  # the worker has not created it yet
        return {}
    states = {}
    for trial in study.get_trials():
        states.setdefault(trial.state, []).append(trial)
    return states


def storage_url(tmp_path, kind):
    return (f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite"
            else f"journal://{tmp_path / 'study.log'}")


@pytest.mark.parametrize(("sampler", "kind"), [
    pytest.param("random", "sqlite", marks=pytest.mark.slow),
    pytest.param("grid", "sqlite", marks=pytest.mark.slow),
    pytest.param("random", "journal", marks=pytest.mark.slow)])
def test_two_workers_share_a_study_without_losing_or_repeating_a_trial(workspace, sampler, kind):
    """Both start at once on a new study (for a grid: one of them queues it, once)."""
    _, tmp_path = workspace
    storage = storage_url(tmp_path, kind)
    if sampler == "grid":  # 4 x 2 combinations, every one run once
        space = write_space(tmp_path, sampler="grid", batch=2, space={
            "lr": [0.001, 0.002, 0.005, 0.01], "dropout": [0.1, 0.3]})
    else:
        space = write_space(tmp_path, trials=8, batch=2)
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["train"].update(max_epochs=60, patience=0)  # long enough a batch that both workers get some
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    workers = [worker(tmp_path, space, storage) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    states = trials_by_state(storage)
    complete = states[TrialState.COMPLETE]
    assert len(complete) == 8
    assert len({t.number for t in complete}) == 8
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 8  # none run twice
    ran = [int(([0, *re.findall(r"this worker ran (\d+)", err)])[-1]) for _, err in outputs]
    assert sum(ran) == 8 and all(r > 0 for r in ran)  # both took part
    assert len(states.get(TrialState.WAITING, [])) == 0  # nothing queued twice is left over
    # a trial asked past the total in a race is failed unrun and marked; no other fails
    assert all(t.system_attrs.get("surplus") for t in states.get(TrialState.FAIL, []))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_killed_worker_is_resumed_and_the_study_completes(workspace, kind):
    _, tmp_path = workspace
    storage = storage_url(tmp_path, kind)
    space = write_space(tmp_path, trials=6, batch=3)
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["train"].update(max_epochs=300, patience=0)  # slow enough to be killed mid-batch
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    victim = worker(tmp_path, space, storage)
    deadline = time.monotonic() + 180  # a loaded machine starts workers slowly
    while time.monotonic() < deadline:
        if any((tmp_path / f).exists() for f in ("study.db", "study.log")) and len(
                trials_by_state(storage).get(TrialState.RUNNING, [])) == 3:
            break  # the whole first batch is being trained
        time.sleep(0.2)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    running = trials_by_state(storage)[TrialState.RUNNING]
    assert len(running) == 3
    time.sleep(2.5)  # the victim's heartbeats are now stale (2 x heartbeat_s)
    resumed = worker(tmp_path, space, storage)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    states = trials_by_state(storage)
    assert len(states[TrialState.COMPLETE]) == 6
    assert len(states[TrialState.FAIL]) == 3  # the killed worker's, each re-queued and re-run
    failed = {tuple(sorted(t.params.items())) for t in states[TrialState.FAIL]}
    completed = {tuple(sorted(t.params.items())) for t in states[TrialState.COMPLETE]}
    assert failed <= completed
    assert TrialState.RUNNING not in states


@pytest.mark.parametrize(("storage", "message"), [
    ("redis://localhost/0", "storage URL scheme 'redis' is not supported"),
    ("sqlite:////no/such/folder/study.db", "cannot open the study storage"),
    ("journal:///no/such/folder/study.log", "cannot open the study storage .*no folder"),
])
def test_a_storage_it_cannot_use_is_one_line(workspace, storage, message):
    params, tmp_path = workspace
    spec = spaces.load_space(write_space(tmp_path, trials=2))
    with pytest.raises(PipelineError, match=message):
        sweep.run_sweep(params, spec, tmp_path / "processed", storage, "shared")


def test_a_study_created_with_another_space_is_refused_and_left_as_it_is(workspace):
    params, tmp_path = workspace
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    spec = spaces.load_space(write_space(tmp_path, trials=2, batch=2))
    sweep.run_sweep(params, spec, tmp_path / "processed", storage, "shared")
    other = spaces.load_space(write_space(tmp_path, trials=2, space={"lr": [0.001, 0.002]}))
    with pytest.raises(PipelineError, match="study 'shared' was created with another space"):
        sweep.run_sweep(params, other, tmp_path / "processed", storage, "shared")
    assert len(trials_by_state(storage)[TrialState.COMPLETE]) == 2


def test_the_cli_resumes_from_its_default_database(workspace):
    _, tmp_path = workspace
    space = write_space(tmp_path, trials=2, batch=2)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pipeline.search.sweep", str(space), "--params",
           str(tmp_path / "params.yaml"), "--data", str(tmp_path / "processed"), "--out",
           str(tmp_path / "out")]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "out/space.db").is_file() and (tmp_path / "out/space.md").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "this worker ran" not in again.stderr  # nothing left to run
    assert "this worker ran" in first.stderr and "this worker ran" not in first.stdout
    assert again.stdout.count("| ") == first.stdout.count("| ")  # the same table, from the study
    try:
        import plotly  # noqa: F401
    except ImportError:  # the `plots` extra is not installed: one line says how to get them
        assert "pip install plotly" in first.stdout
    else:
        for kind in ("history", "importance"):
            assert "<html>" in (tmp_path / f"out/space_{kind}.html").read_text()[:2000].lower()


def test_workers_opening_a_new_grid_study_together_queue_it_once(tmp_path, monkeypatch):
    """Of workers that open a new grid study at the same moment, exactly one creates and queues
    it; the others wait until it is queued (widened here: each queued trial takes 20 ms)."""
    import threading

    from pipeline.search.study import open_study

    storage = open_storage(f"sqlite:///{tmp_path / 'grid.db'}")
    spec = spaces.check_space({"sampler": "grid", "space": {"lr": [0.001, 0.002, 0.005],
                                                            "dropout": [0.1, 0.3]}})
    slow_enqueue = optuna.Study.enqueue_trial

    def enqueue(self, *args, **kwargs):
        time.sleep(0.02)
        return slow_enqueue(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "enqueue_trial", enqueue)
    start, seen = threading.Barrier(3), []

    def open_and_count():
        start.wait()
        study = open_study(storage, "grid", spec, {})
        seen.append(len(study.get_trials(states=(TrialState.WAITING,))))

    threads = [threading.Thread(target=open_and_count) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert seen == [6, 6, 6]  # every worker found the whole grid queued, and only once
    trials = optuna.load_study(study_name="grid", storage=storage).get_trials()
    queued = [tuple(sorted(t.system_attrs["fixed_params"].items())) for t in trials]
    assert len(queued) == len(set(queued)) == 6


def test_a_study_whose_creator_died_during_setup_is_one_line(tmp_path, monkeypatch):
    from pipeline.search import study as studies
    storage = open_storage(f"sqlite:///{tmp_path / 'grid.db'}")
    optuna.create_study(storage=storage, study_name="half")  # created, space never recorded
    monkeypatch.setattr(studies, "SETUP_STALL_S", 0.5)  # 15 s: nothing queued for that long
    spec = spaces.check_space({"sampler": "grid", "space": {"dropout": [0.1, 0.3]}})
    with pytest.raises(PipelineError, match="its space was never recorded.*delete-study"):
        studies.open_study(storage, "half", spec, {})


def test_a_grid_too_large_to_queue_is_refused_before_any_queueing():
    """100,000 combinations once took ~33 min to queue before the first trial."""
    space = {"dropout": [0.1 * i for i in range(1, 9)], "lr": [0.001 * i for i in range(1, 51)],
             "l1": [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1]}
    with pytest.raises(PipelineError, match="2,400 combinations, more than the 2,000") as info:
        spaces.check_space({"sampler": "grid", "space": space})
    assert "sampler: random" in str(info.value)


def test_a_trial_failed_by_another_worker_meanwhile_is_a_note_not_a_crash():
    """A worker whose heartbeats came late finds its trial failed (and re-queued) by another
    when it reports the score: it says so, keeps going, and the study still completes."""
    from pipeline.search.study import open_study, run_worker

    spec = spaces.check_space({"sampler": "random", "trials": 3, "batch": 2,
                              "space": {"dropout": {"uniform": [0.1, 0.5]}}})
    storage = optuna.storages.InMemoryStorage()
    study = open_study(storage, "late", spec, {})
    lines, calls = [], []

    def evaluate(configs):
        if not calls:  # the first batch: another worker fails its first trial meanwhile
            first = study.get_trials(states=(TrialState.RUNNING,))[0]
            storage.set_trial_state_values(first._trial_id, TrialState.FAIL)
        calls.append(configs)
        return [({spec["rank_by"]: 0.1 + 0.01 * i}, {}) for i in range(len(configs))]

    ran = run_worker(study, storage, spec, evaluate, log=lines.append)
    assert ran == 3
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    assert any("trial 0 was marked failed by another worker" in line for line in lines)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_failed_and_requeued(tmp_path,
                                                                                     kind):
    """A worker killed between asking for its trials and its first heartbeat left them running
    forever (Optuna fails only trials with a heartbeat record), so the study never completed;
    such a trial now counts from its start, while a trial with a fresh heartbeat is left alone."""
    from pipeline.search.faults import Heartbeat, fail_stale_trials

    storage = open_storage(storage_url(tmp_path, kind))
    study = optuna.create_study(study_name="shared", storage=storage)
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    orphan, alive = study.ask(space), study.ask(space)
    with Heartbeat(storage, [alive._trial_id], 0.2):
        time.sleep(2.5)  # past the grace of 2 s: the orphan never beat, the other beats
        fail_stale_trials(study, storage, grace_s=2.0)
        states = {t.number: t.state for t in study.get_trials()}
    assert states[orphan.number] == TrialState.FAIL
    assert states[alive.number] == TrialState.RUNNING
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [orphan.params]  # re-queued once


@pytest.mark.parametrize(("spec", "message"), [
    ({"trials": 10**12, "batch": 2}, "trials must be at most 100,000"),
    ({"trials": 4, "batch": 10**9}, "batch must be at most 256"),
])
def test_huge_trial_or_batch_counts_are_one_line_before_any_ask(workspace, spec, message):
    _, tmp_path = workspace
    path = write_space(tmp_path, **spec)
    with pytest.raises(PipelineError, match=f"space.yaml: {message}"):
        spaces.load_space(path)


def test_a_bad_value_in_a_space_file_names_the_space_file(workspace):
    params, tmp_path = workspace
    path = write_space(tmp_path, trials=2, space={"dropout": [0.1, 1.5]})
    spec = spaces.load_space(path)
    with pytest.raises(PipelineError, match=r"space.yaml: space key 'dropout' value 1.5 is not "
                                            r"valid \(train.dropout must be < 1"):
        sweep.run_sweep(params, spec, tmp_path / "processed", None, "x", space_path=path)


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_worker_gives_its_batch_back_and_every_config_is_scored_once(workspace, how):
    """Ctrl-C (or SIGTERM) mid-batch: the running trials are failed and queued again before the
    exit, so the rerun scores them (no waiting for stale heartbeats) and none is lost."""
    _, tmp_path = workspace
    storage = storage_url(tmp_path, "sqlite")
    space = write_space(tmp_path, trials=4, batch=2, heartbeat_s=60)  # never stale in this test
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["train"].update(max_epochs=400, patience=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    victim = worker(tmp_path, space, storage)
    deadline = time.monotonic() + 180  # a loaded machine starts workers slowly
    while time.monotonic() < deadline:
        if (tmp_path / "study.db").exists() and len(
                trials_by_state(storage).get(TrialState.RUNNING, [])) == 2:
            break
        time.sleep(0.2)
    first_batch = {tuple(sorted(t.params.items())) for t in trials_by_state(storage)[TrialState.RUNNING]}
    time.sleep(1)  # into training
    victim.send_signal(how)
    _, err = victim.communicate(timeout=120)
    assert victim.returncode == 130, err
    assert "queued again" in err and "Traceback" not in err
    assert TrialState.RUNNING not in trials_by_state(storage)
    resumed = worker(tmp_path, space, storage)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    states = trials_by_state(storage)
    completed = [tuple(sorted(t.params.items())) for t in states[TrialState.COMPLETE]]
    assert len(completed) == len(set(completed)) == 4  # every configuration once
    assert first_batch <= set(completed)  # the interrupted ones among them
    failed = {t.number for t in states[TrialState.FAIL]}
    reruns = [t.user_attrs.get("rerun_of") for t in states[TrialState.COMPLETE]]
    assert sorted(r for r in reruns if r is not None) == sorted(failed)  # the table says which


def test_an_interrupted_grid_set_up_leaves_no_study_and_a_long_one_says_how_far(
        tmp_path, monkeypatch, capsys):
    """Ctrl-C while a big grid is queued: the half-made study is deleted (the same command then
    starts afresh instead of refusing it), and queueing reports progress."""
    from pipeline.search import study as studies
    storage = open_storage(f"sqlite:///{tmp_path / 'grid.db'}")
    spec = spaces.check_space({"sampler": "grid", "space": {"lr": [0.001, 0.002, 0.005],
                                                            "dropout": [0.1, 0.3]}})
    real = optuna.Study.enqueue_trial
    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "enqueue_trial", interrupted)
    with pytest.raises(KeyboardInterrupt):
        studies.open_study(storage, "grid", spec, {})
    assert optuna.get_all_study_names(storage) == []
    monkeypatch.setattr(optuna.Study, "enqueue_trial", real)
    clock = iter(range(0, 1000, 6))  # every combination "takes" 6 s
    monkeypatch.setattr(studies.time, "monotonic", lambda: next(clock))
    study = studies.open_study(storage, "grid", spec, {})
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 6
    assert "sweep: queueing the grid: 1 of 6 combinations" in capsys.readouterr().err


def test_the_cached_baseline_has_a_key_every_storage_takes():
    """Optuna's RDB storages (PostgreSQL enforces it) cap an attribute's key at 512 characters;
    the baseline is keyed by a digest of its config, however long the config."""
    import optuna

    from pipeline.search.study import cached_baseline

    study = optuna.create_study()
    config = {f"key_{i}": "x" * 40 for i in range(40)}  # ~2,000 characters as JSON
    calls = []
    first = cached_baseline(study, config, lambda: calls.append(1) or ({"cv_rmse": 0.1}, {}))
    again = cached_baseline(study, config, lambda: calls.append(1) or ({"cv_rmse": 0.2}, {}))
    assert first == again == ({"cv_rmse": 0.1}, {}) and calls == [1]  # scored once
    assert all(len(key) <= 512 for key in study.user_attrs)


def test_a_failing_storage_s_own_notes_do_not_add_lines_to_the_one_line():
    """Optuna's SQL storage notes each failed query on stderr ("Caught an error from sqlalchemy
    ... falling back"); while a sweep runs they are muted, so a lost server is one line."""
    import logging

    import optuna

    from pipeline.search.storage import RDB_STORAGE_LOGGER, lost_storage_is_one_line

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    notes = optuna.logging.get_logger(RDB_STORAGE_LOGGER)
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    notes.addHandler(handler)
    try:
        with lost_storage_is_one_line("sqlite:///x.db"):
            notes.warning("Caught an error from sqlalchemy: gone. Falling back")
        assert seen == []
        notes.warning("Caught an error from sqlalchemy: outside a sweep")  # restored afterwards
        assert seen == ["Caught an error from sqlalchemy: outside a sweep"]
    finally:
        notes.removeHandler(handler)
