"""Download stage against a real HTTP server on 127.0.0.1: every failure moves to the next source."""

import hashlib
import socket
import time

import pytest
import yaml
from http_fixtures import FileServer

from pipeline.common.errors import PipelineError
from pipeline.config.params import DownloadParams
from pipeline.stages import download as dl

FILES = {"train_data.csv": b"Id,SalePrice\n1,100\n" * 500, "test_data.csv": b"Id\n2\n" * 300}


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def params(*sources, timeout_s=2.0, max_file_mb=50, deadline_s=120.0):
    return DownloadParams(
        sources=list(sources), timeout_s=timeout_s, max_file_mb=max_file_mb, deadline_s=deadline_s,
        files={"train": {"name": "train_data.csv", "sha1": sha1(FILES["train_data.csv"])},
               "test": {"name": "test_data.csv", "sha1": sha1(FILES["test_data.csv"])}})


@pytest.fixture
def server():
    with FileServer(FILES, slow_s=3.0) as srv:
        yield srv


@pytest.fixture
def local_copy(tmp_path):
    directory = tmp_path / "bundled"
    directory.mkdir()
    for name, body in FILES.items():
        (directory / name).write_bytes(body)
    return directory


def assert_verified(out_dir):
    assert (out_dir / "train.csv").read_bytes() == FILES["train_data.csv"]
    assert (out_dir / "test.csv").read_bytes() == FILES["test_data.csv"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["test.csv", "train.csv"]


def test_good_url_source(server, tmp_path):
    dl.download(params(f"{server.url}/good/"), out_dir=tmp_path / "raw")
    assert_verified(tmp_path / "raw")
    assert server.requests == ["/good/train_data.csv", "/good/test_data.csv"]


@pytest.mark.parametrize("mode", ["corrupt", "404", "500", "truncated"])
def test_broken_source_falls_through_to_next(server, local_copy, tmp_path, capsys, mode):
    dl.download(params(f"{server.url}/{mode}/", str(local_copy)), out_dir=tmp_path / "raw")
    assert_verified(tmp_path / "raw")
    err = capsys.readouterr().err
    assert f"/{mode}/: " in err and "trying the next source" in err
    assert "verified" in err


def test_hash_mismatch_names_file_source_and_both_hashes(server, local_copy, tmp_path, capsys):
    dl.download(params(f"{server.url}/corrupt/", str(local_copy)), out_dir=tmp_path / "raw")
    err = capsys.readouterr().err
    wrong = sha1(FILES["train_data.csv"][::-1])
    assert (f"train (train_data.csv) from {server.url}/corrupt/: SHA-1 mismatch (expected "
            f"{sha1(FILES['train_data.csv'])}, got {wrong})") in err


def test_slow_server_times_out_then_next_source(server, local_copy, tmp_path, capsys):
    started = time.perf_counter()
    dl.download(params(f"{server.url}/slow/", str(local_copy), timeout_s=0.3), out_dir=tmp_path / "raw")
    elapsed = time.perf_counter() - started
    assert_verified(tmp_path / "raw")
    assert "timed out" in capsys.readouterr().err
    assert elapsed < 2.0  # two files x 0.3 s, far below the server's 3 s stall


def test_a_dripping_mirror_is_abandoned_at_the_deadline_then_the_next_source(
        server, local_copy, tmp_path, capsys):
    """A byte every 0.2 s never trips timeout_s (2 s of silence); deadline_s bounds the whole."""
    started = time.perf_counter()
    dl.download(params(f"{server.url}/drip/", str(local_copy), deadline_s=1.0), out_dir=tmp_path / "raw")
    elapsed = time.perf_counter() - started
    assert_verified(tmp_path / "raw")
    err = capsys.readouterr().err
    assert "train (train_data.csv) from" in err and "not finished after download.deadline_s (1 s" in err
    assert elapsed < 6.0  # two files x ~1 s, not the ~30 minutes the drip would take


def test_unreachable_host_costs_well_under_a_second(local_copy, tmp_path, capsys):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.perf_counter()
    dl.download(params(f"http://127.0.0.1:{port}/", str(local_copy)), out_dir=tmp_path / "raw")
    assert time.perf_counter() - started < 1.0
    assert_verified(tmp_path / "raw")
    assert "cannot connect" in capsys.readouterr().err


def test_all_sources_failing_is_one_clear_error_and_leaves_nothing(server, tmp_path):
    out = tmp_path / "raw"
    with pytest.raises(PipelineError, match="no source supplied a verified train_data.csv"):
        dl.download(params(f"{server.url}/404/", f"{server.url}/corrupt/",
                           str(tmp_path / "nowhere")), out_dir=out)
    assert not out.exists() or list(out.iterdir()) == []


def test_test_file_failing_leaves_no_train_file_either(server, local_copy, tmp_path):
    (local_copy / "test_data.csv").write_bytes(b"tampered")
    out = tmp_path / "raw"
    with pytest.raises(PipelineError, match="test_data.csv"):
        dl.download(params(str(local_copy)), out_dir=out)
    assert list(out.iterdir()) == []


def test_cli_failure_is_one_line_and_exit_1(server, tmp_path, capsys, repo_root):
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["download"]["sources"] = [f"{server.url}/500/"]
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "raw"
    out.mkdir()
    (out / "train.csv").write_text("the previous good train.csv")
    (out / "test.csv").write_text("the previous good test.csv")
    with pytest.raises(SystemExit) as exit_info:
        dl.main(["--params", str(params_file), "--out", str(out)])
    assert exit_info.value.code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: download: no source supplied a verified")
    assert "HTTP 500" in last
    # A failed download loses nothing: the previous files stay, and no temporary is left.
    assert sorted(p.name for p in out.iterdir()) == ["test.csv", "train.csv"]
    assert (out / "train.csv").read_text() == "the previous good train.csv"


def test_bundled_copy_matches_params(repo_root, tmp_path):
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())["download"]
    raw["sources"] = [str(repo_root / "data/bundled")]
    paths = dl.download(DownloadParams(**raw), out_dir=tmp_path / "raw")
    assert paths["train"].stat().st_size > 400_000


def test_a_source_that_cannot_connect_is_said_once_not_per_file(local_copy, tmp_path, capsys):
    """Offline, the first run prints one line per unusable source, then one per verified file."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    dl.download(params(closed, str(local_copy)), out_dir=tmp_path / "raw")
    assert_verified(tmp_path / "raw")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith(f"download: {closed}: cannot connect")
    assert all("verified" in line for line in lines[1:])


def test_a_huge_source_entry_is_refused_in_a_short_line():
    with pytest.raises(PipelineError, match=r"download.sources\[0\] is 100,000 characters long") \
            as info:
        params("x" * 100_000)
    assert len(str(info.value)) < 400


def test_an_unreadable_folder_source_falls_through_to_the_next(local_copy, tmp_path, capsys):
    """A folder whose path the OS refuses (a name over 255 bytes) is one short log line, and the
    next source is tried (it once stopped the stage with the whole path as its error)."""
    out = tmp_path / "raw"
    dl.download(params(str(tmp_path / ("n" * 300)), str(local_copy)), out_dir=out)
    assert_verified(out)
    err = capsys.readouterr().err
    assert "trying the next source" in err and all(len(line) < 400 for line in err.splitlines())
