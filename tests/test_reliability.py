"""A hostile user's cases: bad cells, diverged training, killed runs, full disks, bad files."""

import errno
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, repo_params, train_in

from pipeline.common import atomic
from pipeline.common.cli_support import run_cli
from pipeline.common.errors import PipelineError
from pipeline.common.inputs import read_csv
from pipeline.dataset.matrices import preprocess
from pipeline.search.space import load_space
from pipeline.stages.predict import predict

TRAIN_CSV = ROOT / "data/bundled/kaggle_house_pred_train.csv"
TEST_CSV = ROOT / "data/bundled/kaggle_house_pred_test.csv"


def with_cell(path, row: int, column: str, value: str, n_rows: int) -> pd.DataFrame:
    """The first n_rows of a competition file as read from CSV text with one cell replaced."""
    lines = path.read_text().splitlines()[: n_rows + 1]
    header = lines[0].split(",")
    cells = lines[row + 1].split(",")
    cells[header.index(column)] = value
    lines[row + 1] = ",".join(cells)
    return pd.read_csv(io.StringIO("\n".join(lines) + "\n"))


# --- column kinds ---------------------------------------------------------------------------------

def test_non_numeric_cell_in_train_names_file_column_id_and_value():
    train = with_cell(TRAIN_CSV, 3, "LotArea", "abc", 120)
    test = pd.read_csv(TEST_CSV).iloc[:60]
    with pytest.raises(PipelineError, match=r"train\.csv: column LotArea must be numeric; "
                                            r"non-numeric value\(s\) 'abc' for Id 4"):
        preprocess(train, test, repo_params().preprocess)


def test_non_numeric_cell_in_test_is_one_error_not_a_traceback():
    train = pd.read_csv(TRAIN_CSV).iloc[:120]
    test = with_cell(TEST_CSV, 0, "GrLivArea", "big", 60)
    with pytest.raises(PipelineError, match=r"test\.csv: column GrLivArea must be numeric.*'big' "
                                            r"for Id 1461"):
        preprocess(train, test, repo_params().preprocess)


def test_empty_columns_keep_their_kind_and_warn(capfd):
    train = pd.read_csv(TRAIN_CSV).iloc[:120]
    test = pd.read_csv(TEST_CSV).iloc[:60].copy()
    test["LotFrontage"] = np.nan  # numeric, no house has it
    test["Alley"] = np.nan  # a category column read as float: must stay a category
    result = preprocess(train, test, repo_params().preprocess)
    assert result.x_train.shape[1] == result.x_test.shape[1]
    assert "test.csv: column LotFrontage has no values at all" in capfd.readouterr().err
    alley = [i for i, n in enumerate(result.feature_names) if n.startswith("cat__Alley_")]
    assert np.allclose(result.x_test[:, alley].sum(axis=1), 1)  # all in the missing level


def test_header_only_csv_says_no_rows(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(TRAIN_CSV.read_text().splitlines()[0] + "\n")
    with pytest.raises(PipelineError, match="has a header but no rows"):
        read_csv(path, "run dvc repro")


# --- diverged training ----------------------------------------------------------------------------

@pytest.fixture
def processed(ames_sample, tmp_path):
    params = repo_params()
    train_frame, test_frame = ames_sample
    preprocess(train_frame, test_frame, params.preprocess).save(tmp_path / "processed")
    return tmp_path


@pytest.mark.parametrize("patience", [0, 5])
def test_diverged_training_fails_before_writing_anything(processed, patience):
    params = repo_params(folds=3, n_seeds=1, max_epochs=10, patience=patience, device="cpu")
    object.__setattr__(params.train, "lr", 10.0)  # beyond the check's bound: the trainer's guard
    outputs = [processed / name for name in ("models", "cv.json", "oof.csv", "live")]
    with pytest.raises(PipelineError, match=r"9 of 9 models failed: the training loss became "
                                            r"non-finite.*train\.lr=10\): lower it"):
        train_in(params.train, "log", processed)
    assert not any(p.exists() for p in outputs)


def test_model_that_never_learns_is_refused(processed):
    params = repo_params(folds=3, n_seeds=1, max_epochs=10, patience=3, device="cpu", lr=1.0)
    with pytest.raises(PipelineError, match="no better than the mean price"):
        train_in(params.train, "log", processed)
    assert not (processed / "models").exists()


# --- predict loads what train listed --------------------------------------------------------------

def test_predict_loads_exactly_the_listed_models(processed):
    params = repo_params(folds=3, n_seeds=1, max_epochs=5, patience=2, device="cpu")
    models = processed / "models"
    train_in(params.train, "log", processed)
    listed = json.loads((models / "models.json").read_text())["models"]
    assert listed == [f"fold{f}_view{v}_seed0.pt" for f in range(3) for v in range(3)]
    first = predict(params.train, params.ensemble, processed / "processed", models,
                    processed / "a.csv").read_bytes()
    # A stray model file (e.g. copied in by hand) with huge weights is not picked up.
    import torch
    stray = torch.load(models / "fold0_view0_seed0.pt", weights_only=True)
    stray["y_mean"] = 50.0
    torch.save(stray, models / "zz_stray.pt")
    again = predict(params.train, params.ensemble, processed / "processed", models,
                    processed / "b.csv").read_bytes()
    assert again == first
    (models / "fold1_view2_seed0.pt").unlink()
    with pytest.raises(PipelineError,
                       match=r"fold1_view2_seed0\.pt listed in models\.json are missing"):
        predict(params.train, params.ensemble, processed / "processed", models,
                processed / "c.csv")


# --- leftovers after kill -9 ----------------------------------------------------------------------

def test_killed_write_leaves_an_ignored_temporary_that_the_next_write_removes(tmp_path):
    target = tmp_path / "submission.csv"
    writer = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pipeline.common.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("half")
            print("writing", flush=True)
            time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    leftovers = list(tmp_path.glob(".submission.csv.*.tmp"))
    assert len(leftovers) == 1 and not target.exists()
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index",
                              f"metrics/{leftovers[0].name}"], cwd=ROOT)
    assert ignored.returncode == 0  # never shows in git status
    atomic.write_text(target, "whole")
    assert target.read_text() == "whole"
    assert list(tmp_path.glob(".submission.csv.*.tmp")) == []


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    target = tmp_path / "models"
    mine = tmp_path / f".models.{os.getpid()}.hpabc.tmp"
    mine.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".models.{dead}.hpxyz.tmp"
    stale.mkdir()
    (stale / "fold0_seed0.pt").write_bytes(b"partial")
    atomic.replace_dir(target, lambda d: (d / "m.pt").write_bytes(b"m"))
    assert mine.is_dir() and not stale.exists()
    assert [p.name for p in target.iterdir()] == ["m.pt"]


# --- full disk and other OS errors ----------------------------------------------------------------

def test_disk_full_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch, capsys):
    target = tmp_path / "cv.json"
    target.write_text("old")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(type(target), "write_text", full)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: atomic.write_text(target, "new"))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no space left on the device; free some space")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["cv.json"]


# --- sweep spaces ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("choice", "message"), [
    ({"log_uniform": [0, 0.01]}, "log_uniform needs low > 0"),
    ({"uniform": [0.3]}, r"uniform needs \[low, high\], two numbers"),
    ({"int_uniform": [16.5, 64]}, "two integers"),
    ({"uniform": [0.7, 0.3]}, "low 0.7 is above high 0.3"),
    ({"normal": [0, 1]}, "must be a list of choices or one of"),
    ([], "empty list of choices"),
])
def test_malformed_sweep_ranges_are_one_line(tmp_path, choice, message):
    path = tmp_path / "space.yaml"
    path.write_text(json.dumps({"sampler": "random", "trials": 2, "space": {"dropout": choice}}))
    with pytest.raises(PipelineError, match=message):
        load_space(path)


def test_a_space_without_trials_says_what_is_missing(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(json.dumps({"sampler": "tpe", "space": {"dropout": [0.1, 0.2]}}))
    with pytest.raises(PipelineError, match="trials is missing: say how many completed trials"):
        load_space(path)


def test_a_repository_without_commits_is_told_to_commit(tmp_path, monkeypatch):
    """`experiments` once printed an empty table (exit 0); `submit`'s provenance said "not
    inside a git repository" in one."""
    import subprocess
    import sys

    from pipeline.kaggle.provenance import _git

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    proc = subprocess.run([sys.executable, "-m", "pipeline.search.experiments"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: experiments: this repository has no commit yet, so no baseline to judge "
        "experiments against; commit first (git add -A && git commit), then dvc repro"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="submit: this repository has no commit yet"):
        _git("rev-parse", "HEAD")
    monkeypatch.chdir(tmp_path.parent)  # not a repository at all: said so
    with pytest.raises(PipelineError, match="submit: not inside a git repository"):
        _git("-C", str(tmp_path / "none"), "rev-parse", "HEAD")


# --- the CLI, end to end --------------------------------------------------------------------------

def test_preprocess_cli_bad_cell_exits_1_with_one_line(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    lines = TRAIN_CSV.read_text().splitlines()
    cells = lines[5].split(",")
    cells[lines[0].split(",").index("LotArea")] = "abc"
    lines[5] = ",".join(cells)
    (raw / "train.csv").write_text("\n".join(lines) + "\n")
    (raw / "test.csv").write_bytes(TEST_CSV.read_bytes())
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline.stages.preprocess", "--params",
                           str(ROOT / "params.yaml"), "--raw", str(raw), "--out",
                           str(tmp_path / "processed")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: train.csv: column LotArea must be numeric; non-numeric value(s) 'abc' for Id 5; "
        "fix or blank those cells"]
    assert not (tmp_path / "processed").exists()
    assert time.perf_counter() - started < 60
