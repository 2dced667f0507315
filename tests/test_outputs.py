"""A stage's outputs are what it ran with, all or nothing: a params edit under a running stage
stops it before any output changes, `sweep --apply` waits for no running `dvc repro` (it
refuses), and only regular files are ever replaced."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from pipeline.common import atomic
from pipeline.common.cli_support import run_cli
from pipeline.common.errors import PipelineError


def test_outputs_change_together_or_not_at_all(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text("old a")
    second.write_text("old b")
    with pytest.raises(RuntimeError), atomic.together():
        atomic.write_text(first, "new a")
        assert first.read_text() == "old a"  # not yet: the stage has not finished
        raise RuntimeError("the second output could not be made")
    assert first.read_text() == "old a" and second.read_text() == "old b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]
    with atomic.together():
        atomic.write_text(first, "new a")
        atomic.write_text(second, "new b")
    assert first.read_text() == "new a" and second.read_text() == "new b"


def test_a_params_edit_while_a_stage_runs_stops_it_before_any_output_changes(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    out = tmp_path / "cv.json"
    out.write_text("made with dropout 0.3")

    def stage():
        atomic.write_text(out, "made with dropout 0.3, again")
        # `house-prices sweep --apply` (or an editor) writes params.yaml while the stage runs
        params.write_text(params.read_text().replace("dropout: 0.3", "dropout: 0.5"))

    with pytest.raises(SystemExit) as exit_info:
        run_cli(stage, params_path=str(params))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "changed while this stage ran" in err[0] and "run it again" in err[0]
    assert out.read_text() == "made with dropout 0.3"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_an_output_path_that_is_not_a_regular_file_is_refused_and_left_as_it_was(tmp_path, kind):
    if kind == "fifo":
        target = tmp_path / "out.csv"
        os.mkfifo(target)
    else:
        target = tmp_path / "full"
        if subprocess.run(["mknod", str(target), "c", "1", "7"], capture_output=True).returncode:
            pytest.skip("cannot make a device node here")  # /dev/full's numbers
    mode = os.lstat(target).st_mode
    with pytest.raises(PipelineError, match="a device, FIFO or socket, not a regular file; refusing"):
        atomic.write_text(target, "Id,SalePrice\n")
    assert os.lstat(target).st_mode == mode
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_cli_output_onto_a_device_is_one_line(tmp_path):
    fifo = tmp_path / "stamp"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "pipeline.stages.check_params", "--params",
                           str(ROOT / "params.yaml"), "--stamp", str(fifo)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {fifo}: a device, FIFO or socket, not a regular file; refusing to replace it "
        "with an output; choose another path"]


@pytest.mark.parametrize("hardlink_lock", [False, True])
def test_sweep_apply_refuses_while_dvc_holds_the_repository(tmp_path, hardlink_lock):
    """--apply takes DVC's own repository lock as the repository configures it: by flock, or by
    a hard link with core.hardlink_lock (for file systems where flock does not work), so it
    waits for a running `dvc repro` either way."""
    from dvc.lock import make_lock

    from pipeline.search.apply import apply_to_params

    (tmp_path / ".dvc/tmp").mkdir(parents=True)
    if hardlink_lock:
        (tmp_path / ".dvc/config").write_text("[core]\n    hardlink_lock = true\n")
    params = tmp_path / "params.yaml"
    original = (ROOT / "params.yaml").read_text()
    params.write_text(original)
    held = make_lock(str(tmp_path / ".dvc/tmp/lock"), tmp_dir=str(tmp_path / ".dvc/tmp"),
                     hardlink_lock=hardlink_lock)
    held.lock()  # what `dvc repro` holds
    try:
        with pytest.raises(PipelineError, match="holds its lock; --apply changed nothing"):
            apply_to_params(params, {"dropout": 0.5})
        assert params.read_text() == original
    finally:
        held.unlock()
    apply_to_params(params, {"dropout": 0.5})
    assert "dropout: 0.5" in params.read_text()


def test_sweep_apply_refuses_while_a_stage_runs_though_dvc_let_its_lock_go(tmp_path):
    """DVC releases its repository lock while a stage's command runs; the stage itself holds a
    marker in .dvc/tmp, and --apply refuses while it is held."""
    import threading

    from pipeline.common.cli_support import run_cli
    from pipeline.search.apply import apply_to_params

    (tmp_path / ".dvc/tmp").mkdir(parents=True)
    params = tmp_path / "params.yaml"
    original = (ROOT / "params.yaml").read_text()
    params.write_text(original)
    started, finish = threading.Event(), threading.Event()

    def stage():
        started.set()
        finish.wait(30)

    runner = threading.Thread(target=run_cli, args=(stage,), kwargs={"params_path": str(params)})
    runner.start()
    try:
        assert started.wait(30)
        with pytest.raises(PipelineError, match="one of its stages is running; --apply changed"):
            apply_to_params(params, {"dropout": 0.5})
        assert params.read_text() == original
    finally:
        finish.set()
        runner.join(30)
    apply_to_params(params, {"dropout": 0.5})
    assert "dropout: 0.5" in params.read_text()


def test_sweep_apply_keeps_a_crlf_params_file_crlf(tmp_path):
    from pipeline.search.apply import apply_to_params

    params = tmp_path / "params.yaml"
    params.write_bytes((ROOT / "params.yaml").read_bytes().replace(b"\n", b"\r\n"))
    apply_to_params(params, {"dropout": 0.5})
    data = params.read_bytes()
    assert b"dropout: 0.5" in data and data.count(b"\r\n") == data.count(b"\n")


def test_sweep_apply_writes_nothing_when_the_result_would_be_invalid(tmp_path):
    from pipeline.search.apply import apply_to_params

    params = tmp_path / "params.yaml"
    original = (ROOT / "params.yaml").read_text()
    params.write_text(original)
    with pytest.raises(PipelineError):
        apply_to_params(params, {"dropout": 1.5})
    assert params.read_text() == original


# --- secrets, pickles, input shapes, pipes ------------------------------------------------------

@pytest.mark.parametrize("url", [
    "postgresql://alice:p@ss:w0rd@127.0.0.1:1/study",  # an unescaped '@' in the password
    "postgresql://alice@127.0.0.1:1/study?password=p@ss:w0rd",
    "postgresql://alice:p%40ss%3Aw0rd@127.0.0.1:1/study"])
def test_a_storage_urls_password_is_never_printed(url):
    from pipeline.search.storage import open_storage

    with pytest.raises(PipelineError) as info:
        open_storage(url)
    message = str(info.value)
    assert "p@ss" not in message and "w0rd" not in message and "p%40ss" not in message
    assert "***" in message and "127.0.0.1" in message


def test_a_model_file_with_objects_is_refused_without_pointing_at_weights_only_false(tmp_path):
    import torch

    from pipeline.members.mlp.checkpoint import load_models

    path = tmp_path / "fold0_seed0.pt"
    torch.save({"weights": [], "payload": _Hostile()}, path)
    with pytest.raises(PipelineError) as info:
        load_models([path])
    assert "weights-only load refuses" in str(info.value)
    assert "weights_only=False" not in str(info.value)


class _Hostile:
    pass


@pytest.mark.parametrize(("text", "message"), [
    (",".join(f"c{i}" for i in range(5000)) + "\n1\n", "the header has 5,000 columns, more than 1,000"),
    ("Id,MSZoning\n1," + "R" * 200_000 + "\n", "line 2 is longer than 65,536 bytes")])
def test_inputs_beyond_the_stated_shape_are_refused_before_pandas_reads_them(tmp_path, text,
                                                                             message):
    from pipeline.common.inputs import read_csv

    path = tmp_path / "train.csv"
    path.write_text(text)
    with pytest.raises(PipelineError, match=message):
        read_csv(path, "hint")


def test_a_closed_pipe_ends_quietly(tmp_path):
    code = ("import sys; from pipeline.common.cli_support import run_cli\n"
            "def stage():\n    for i in range(100000):\n        print('row', i)\n"
            "run_cli(stage)\n")
    proc = subprocess.run(f"{sys.executable} -c \"{code}\" | head -2", shell=True,
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.stdout.splitlines() == ["row 0", "row 1"]
    assert proc.stderr == ""


NO_LEGEND = ("detail", "xOffset", "yOffset", "tooltip")  # channels that draw no legend


def test_plot_templates_have_one_revision_legend_and_tell_revisions_apart(repo_root):
    """Every chart names revisions in one legend, "revision" (DVC's own color encoding would add
    a second, "rev"), and every mark that shows data in `dvc plots diff` varies by revision;
    the members' chart shows both CV metrics."""
    import json

    def encodings(spec):
        for key, value in spec.items() if isinstance(spec, dict) else []:
            if key == "encoding":
                yield value
            if isinstance(value, dict):
                yield from encodings(value)
            if isinstance(value, list):
                for item in value:
                    yield from encodings(item)

    for path in sorted((repo_root / ".dvc/plots").glob("*.json")):
        text = path.read_text()
        assert "<DVC_METRIC_COLOR>" not in text, path.name
        spec = json.loads(text.replace('"<DVC_METRIC_DATA>"', "[]"))
        by_rev = {name: channel for enc in encodings(spec) for name, channel in enc.items()
                  if isinstance(channel, dict) and channel.get("field") == "rev"}
        assert by_rev, f"{path.name}: no mark varies by revision"
        legends = [c for name, c in by_rev.items() if name not in NO_LEGEND]
        assert all(c.get("title") == "revision" or c.get("legend", 0) is None
                   for c in legends), path.name
    dots = (repo_root / ".dvc/plots/dots.json").read_text()
    assert '"fold": ["cv_rmse", "cv_rmse_no_outliers"]' in dots


def test_a_symlinked_output_is_written_through_to_its_regular_file_and_the_link_kept(tmp_path):
    real = tmp_path / "real" / "submission.csv"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "submission.csv"
    link.symlink_to(real)
    atomic.write_text(link, "Id,SalePrice\n")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "Id,SalePrice\n"


@pytest.mark.parametrize("where", ["device", "dangling", "directory"])
def test_a_symlink_to_anything_but_a_regular_file_is_refused_and_kept(tmp_path, where):
    """`house-prices predict --out /dev/stdout` (a link to /proc/self/fd/1) once replaced the
    system's link with a CSV; a link to a device, to nothing or to a folder is refused."""
    target = {"device": Path("/dev/null"), "dangling": tmp_path / "gone.csv",
              "directory": tmp_path}[where]
    link = tmp_path / "out.csv"
    link.symlink_to(target)
    with pytest.raises(PipelineError, match=f"{link}: a symlink to .*refusing"):
        atomic.write_text(link, "Id,SalePrice\n")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_a_link_into_dvcs_cache_is_replaced_as_dvc_replaces_it(tmp_path):
    cached = tmp_path / ".dvc/cache/files/md5/ab/cdef"
    cached.parent.mkdir(parents=True)
    cached.write_text("cached\n")
    link = tmp_path / "submission.csv"
    link.symlink_to(cached)
    atomic.write_text(link, "new\n")
    assert not link.is_symlink() and link.read_text() == "new\n"
    assert cached.read_text() == "cached\n"


def test_predict_refuses_a_bad_output_before_loading_any_model(tmp_path):
    """Checked before the work: no models or data are needed to hear about the output."""
    link = tmp_path / "out.csv"
    link.symlink_to("/dev/null")
    proc = subprocess.run([sys.executable, "-m", "pipeline.stages.predict", "--params",
                           str(ROOT / "params.yaml"), "--data", str(tmp_path / "none"),
                           "--models", str(tmp_path / "none"), "--out", str(link)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1 and link.is_symlink()
    assert proc.stderr.strip().splitlines() == [
        f"error: {link}: a symlink to /dev/null, not a regular file in a writable folder; "
        "refusing to write through it or replace it; choose another path"]


def test_the_train_stage_refuses_a_file_where_its_models_folder_goes(tmp_path):
    from pipeline.stages.train import train

    (tmp_path / "models").write_text("not a folder\n")
    with pytest.raises(PipelineError, match="models: a regular file, not a directory"):
        train(None, "log", data_dir=tmp_path / "none", models_dir=tmp_path / "models",
              metrics_path=tmp_path / "cv.json")
