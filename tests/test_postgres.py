"""The README's "Many machines" recipe against a real PostgreSQL server that the test starts
(Debian's `postgresql` package; `.ci/run` installs it), and a server that goes away mid-study.

Workers are real `house-prices sweep` processes, given the README's bare postgresql:// URL."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
from optuna.trial import TrialState
from test_study import (  # noqa: F401 (fixtures)
    no_worker_left_behind,
    trials_by_state,
    worker,
    workspace,
    write_space,
)

from pipeline.common.errors import PipelineError

PG_BIN = next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)), None)
if PG_BIN is None and shutil.which("initdb"):
    PG_BIN = os.path.dirname(shutil.which("initdb"))
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    PG_BIN is None, reason="no PostgreSQL server installed (apt-get install postgresql; .ci/run "
                           "installs it)")]


class Server:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (user postgres, password pw, as the README's
    docker command makes), run as the `postgres` user when the tests run as root."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="pg-")
        self.data = os.path.join(self.root, "data")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.root, "postgres")
        pwfile = os.path.join(self.root, "pw")
        with open(pwfile, "w") as fh:
            fh.write("pw\n")
        if self.as_user:
            shutil.chown(pwfile, "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=scram-sha-256",
                  f"--pwfile={pwfile}")
        self.url = f"postgresql://postgres:pw@127.0.0.1:{self.port}/postgres"

    def _run(self, tool, *args):
        subprocess.run([*self.as_user, os.path.join(PG_BIN, tool), *args], check=True,
                       capture_output=True, timeout=120, cwd=self.root)

    def start(self):
        self._run("pg_ctl", "-D", self.data, "-w", "-l", os.path.join(self.root, "log"), "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1", "start")

    def stop(self):
        self._run("pg_ctl", "-D", self.data, "-w", "-m", "fast", "stop")

    def remove(self):
        subprocess.run([*self.as_user, os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m",
                        "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def server():
    pg = Server()
    pg.start()
    yield pg
    pg.remove()


def slow_training(tmp_path, epochs: int):
    import yaml

    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["train"].update(max_epochs=epochs, patience=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def configs(trials) -> set:
    return {tuple(sorted(t.params.items())) for t in trials}


def test_the_readme_recipe_two_workers_share_a_study_on_postgresql(workspace, server):  # noqa: F811
    _, tmp_path = workspace
    space = write_space(tmp_path, trials=6, batch=2)
    slow_training(tmp_path, 60)
    workers = [worker(tmp_path, space, server.url) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    states = trials_by_state(server.url)
    assert len(states[TrialState.COMPLETE]) == 6
    assert len(configs(states[TrialState.COMPLETE])) == 6  # none run twice
    # Two workers asking at the same moment near the end can ask one trial past the total; it is
    # failed before it runs and marked so. No other failed row: nothing trained was lost.
    assert all(t.system_attrs.get("surplus") for t in states.get(TrialState.FAIL, []))


def test_a_server_that_goes_away_is_one_line_and_the_rerun_completes(workspace, server):  # noqa: F811
    _, tmp_path = workspace
    space = write_space(tmp_path, trials=4, batch=2)
    slow_training(tmp_path, 400)
    victim = worker(tmp_path, space, server.url)
    deadline = time.monotonic() + 180  # a loaded machine starts workers slowly
    while time.monotonic() < deadline and len(
            trials_by_state(server.url).get(TrialState.RUNNING, [])) < 2:
        time.sleep(0.2)
    server.stop()  # while the worker trains its first batch
    _, err = victim.communicate(timeout=300)
    assert victim.returncode == 1
    assert "Traceback" not in err and "Exception in thread" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    # progress lines (the batch it started, its epochs), then the one error line, last
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:] and errors[0].startswith("error: sweep: lost the study storage"), err
    assert all(line.startswith(("sweep: training trial(s)", "sweep batch")) for line in lines[:-1]), err
    assert "run the same command again" in errors[0]
    assert "pw@" not in err  # the password is not printed

    server.start()
    time.sleep(2.5)  # its trials' heartbeats are stale (2 x heartbeat_s)
    resumed = worker(tmp_path, space, server.url)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    states = trials_by_state(server.url)
    assert len(states[TrialState.COMPLETE]) == 4
    assert len(configs(states[TrialState.COMPLETE])) == 4
    assert configs(states[TrialState.FAIL]) <= configs(states[TrialState.COMPLETE])
    assert TrialState.RUNNING not in states


def test_a_missing_postgresql_driver_names_the_extra(monkeypatch):
    import importlib.util

    from pipeline.search.storage import open_storage

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("psycopg", "psycopg2") else real(name, *a))
    with pytest.raises(PipelineError, match=r"needs a PostgreSQL driver: python -m pip install -e "
                                            r"'\.\[postgres\]'"):
        open_storage("postgresql://postgres:pw@127.0.0.1:1/postgres")
