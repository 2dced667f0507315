"""The Kaggle integration, run with the real `kaggle` client against a fake API on 127.0.0.1:7777."""

import base64
import csv
import json
import subprocess
import time

import pytest
import yaml
from fake_kaggle import KEY, USER, FakeKaggle, make_zip

from pipeline.common.errors import PipelineError
from pipeline.config.params import load_params
from pipeline.kaggle.submit import submit
from pipeline.stages import download as dl


@pytest.fixture
def kaggle_env(tmp_path, monkeypatch):
    """Dummy credentials in a temporary HOME; the client talks to localhost:7777."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def competition_files(repo_root):
    return {"train.csv": (repo_root / "data/bundled/kaggle_house_pred_train.csv").read_bytes(),
            "test.csv": (repo_root / "data/bundled/kaggle_house_pred_test.csv").read_bytes(),
            "sample_submission.csv": b"Id,SalePrice\n"}


@pytest.fixture
def params(repo_root, tmp_path):
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["kaggle"].update(retry_backoff_s=0.01, poll_interval_s=0.01, poll_timeout_s=5)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_params(path), path


SECRETS = (KEY, base64.b64encode(f"{USER}:{KEY}".encode()).decode())


def no_secret_in(*texts):
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def run_download(params, out, *sources):
    p = params.download.__class__(sources=list(sources), files=params.download.files,
                                  timeout_s=params.download.timeout_s,
                                  max_file_mb=params.download.max_file_mb)
    return dl.download(p, out_dir=out, kaggle=params.kaggle)


def test_download_from_kaggle(kaggle_env, competition_files, params, tmp_path, capfd, repo_root):
    with FakeKaggle(make_zip(competition_files)) as fake:
        run_download(params[0], tmp_path / "raw", "kaggle")
    assert (tmp_path / "raw/train.csv").read_bytes() == competition_files["train.csv"]
    assert (tmp_path / "raw/test.csv").read_bytes() == competition_files["test.csv"]
    assert fake.calls == ["DownloadDataFiles"]  # one archive serves both files
    out, err = capfd.readouterr()
    assert "from kaggle: SHA-1 585e9cc93e70b39160e7921475f9bcd7d31219ce verified" in err
    no_secret_in(out, err)


def test_corrupted_archive_falls_back(kaggle_env, params, tmp_path, capfd, repo_root):
    with FakeKaggle(b"PK\x03\x04 this is not a zip"):
        run_download(params[0], tmp_path / "raw", "kaggle", str(repo_root / "data/bundled"))
    err = capfd.readouterr().err
    assert "corrupted" in err and "trying the next source" in err
    assert (tmp_path / "raw/train.csv").stat().st_size > 400_000


def test_tampered_file_in_archive_fails_hash(kaggle_env, competition_files, params, tmp_path, capfd,
                                             repo_root):
    files = {**competition_files, "train.csv": competition_files["train.csv"] + b"1,2\n"}
    with FakeKaggle(make_zip(files)):
        run_download(params[0], tmp_path / "raw", "kaggle", str(repo_root / "data/bundled"))
    assert "train (kaggle_house_pred_train.csv) from kaggle: SHA-1 mismatch" in capfd.readouterr().err
    assert (tmp_path / "raw/train.csv").read_bytes() == competition_files["train.csv"]


def test_archive_with_parent_path_entry_is_refused(kaggle_env, competition_files, params, tmp_path,
                                                   capfd):
    evil = make_zip({**competition_files, "../../escape.txt": b"owned"})
    with FakeKaggle(evil), pytest.raises(PipelineError, match="no source supplied"):
        run_download(params[0], tmp_path / "raw", "kaggle")
    assert "unsafe entry '../../escape.txt'" in capfd.readouterr().err
    assert not list(tmp_path.rglob("escape.txt"))


def test_no_credentials_skips_with_one_line(kaggle_env, params, tmp_path, monkeypatch, capfd,
                                            repo_root):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    with FakeKaggle(b"") as fake:
        run_download(params[0], tmp_path / "raw", "kaggle", str(repo_root / "data/bundled"))
    assert fake.calls == []
    err = capfd.readouterr().err
    assert "no Kaggle credentials: save your API token" in err and "~/.kaggle/" in err
    assert "skipped" in err


@pytest.mark.parametrize(("status", "message"), [
    (401, "rejected the credentials (HTTP 401)"),
    (403, "accept the competition rules at https://www.kaggle.com/competitions/"
          "house-prices-advanced-regression-techniques/rules"),
    (404, "competition 'house-prices-advanced-regression-techniques' not found (HTTP 404)"),
    (429, "still rate limited by Kaggle (HTTP 429) after 4 retries"),
])
def test_download_error_statuses(kaggle_env, competition_files, params, tmp_path, capfd, status,
                                 message):
    with FakeKaggle(make_zip(competition_files)) as fake:
        fake.fail["DownloadDataFiles"] = [status] * 10
        with pytest.raises(PipelineError):
            run_download(params[0], tmp_path / "raw", "kaggle")
    out, err = capfd.readouterr()
    assert message in err
    no_secret_in(out, err)


def test_rate_limit_is_retried_then_succeeds(kaggle_env, competition_files, params, tmp_path, capfd):
    with FakeKaggle(make_zip(competition_files)) as fake:
        fake.fail["DownloadDataFiles"] = [429, 429]
        run_download(params[0], tmp_path / "raw", "kaggle")
    assert fake.calls == ["DownloadDataFiles"] * 3
    assert "rate limited (HTTP 429); retry 2/4" in capfd.readouterr().err


def test_network_down(kaggle_env, params, tmp_path, capfd):
    with pytest.raises(PipelineError):  # nothing listens on 7777
        run_download(params[0], tmp_path / "raw", "kaggle")
    assert "cannot reach the Kaggle API (network down?)" in capfd.readouterr().err


# --- submit -------------------------------------------------------------------------------------

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]


@pytest.fixture
def project(tmp_path, params, repo_root, monkeypatch):
    """A committed project with a valid submission, as after `dvc repro`."""
    root = tmp_path / "project"
    (root / "data/raw").mkdir(parents=True)
    (root / "metrics").mkdir()
    (root / "pipeline").mkdir()
    (root / "pipeline/x.py").write_text("# code\n")
    (root / "params.yaml").write_text(params[1].read_text())
    test_csv = (repo_root / "data/bundled/kaggle_house_pred_test.csv").read_bytes()
    (root / "data/raw/test.csv").write_bytes(test_csv)
    ids = [line.split(b",")[0].decode() for line in test_csv.splitlines()[1:]]
    (root / "submission.csv").write_text("Id,SalePrice\n" + "".join(f"{i},180000.0\n" for i in ids))
    (root / "metrics/blend.json").write_text(json.dumps({"cv_rmse": 0.1234, "cv_rmse_std": 0.01}))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "x"], cwd=root, check=True)
    monkeypatch.chdir(root)
    return root


def make_experiment(project, name, metrics=None, params_edit=None):
    """Commit the workspace (changed as asked) as DVC does for an experiment: a commit that is
    not on any branch, under refs/exps/; HEAD and the workspace are left as they were."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=project, check=True).stdout.strip()
    saved = {p: (project / p).read_text() for p in ("params.yaml", "metrics/blend.json")}
    if params_edit:
        (project / "params.yaml").write_text(saved["params.yaml"] + params_edit)
    if metrics:
        (project / "metrics/blend.json").write_text(json.dumps(metrics))
    subprocess.run([*GIT, "commit", "-qam", name, "--allow-empty"], cwd=project, check=True)
    rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                         cwd=project, check=True).stdout.strip()
    subprocess.run(["git", "update-ref", f"refs/exps/{head[:2]}/{head[2:]}/{name}", rev],
                   cwd=project, check=True)
    subprocess.run(["git", "reset", "-q", "--hard", head], cwd=project, check=True)
    return rev


def test_submit_happy_path_logs_score(kaggle_env, project, capfd):
    exp_rev = make_experiment(project, "exp-demo", metrics={"cv_rmse": 0.1111, "cv_rmse_std": 0.02,
                                                            "cv_rmse_no_outliers": 0.1011})
    subprocess.run(["git", "checkout", "-q", exp_rev, "--", "metrics/blend.json"], cwd=project,
                   check=True)  # as after 'dvc exp apply exp-demo'
    with FakeKaggle(b"", score="0.12001", polls_before_score=2) as fake:
        row = submit(experiment="exp-demo", sleep=lambda s: None, note="first try")
    assert fake.calls[:2] == ["StartSubmissionUpload", "CreateSubmission"]
    assert fake.calls[2:] == ["ListSubmissions"] * 3
    assert fake.uploads == [(project / "submission.csv").read_bytes()]
    description = fake.submissions[0]["description"]
    assert description.startswith("first try | commit " + exp_rev[:12])
    assert "exp exp-demo" in description and "CV 0.11110" in description
    rows = list(csv.DictReader((project / "leaderboard.csv").open()))
    assert rows == [row]
    assert row["commit"] == exp_rev and row["public_score"] == "0.12001"
    assert row["submission_ref"] == "4000" and row["cv_rmse"] == "0.111100"
    assert row["cv_rmse_no_outliers"] == "0.101100"  # both CVs, all rows first (what Kaggle scores)
    assert len(row["params_sha1"]) == 40
    out, err = capfd.readouterr()
    assert "public score 0.12001" in out
    no_secret_in(out, err, (project / "leaderboard.csv").read_text())


def test_submit_refuses_dirty_pipeline(kaggle_env, project, capfd):
    (project / "params.yaml").write_text((project / "params.yaml").read_text() + "\n# edit\n")
    with FakeKaggle(b"") as fake:
        with pytest.raises(PipelineError, match="uncommitted changes to params.yaml"):
            submit(sleep=lambda s: None)
        submit(dry_run=True)  # a dry run reports it instead of refusing
        assert "a real submit would refuse: uncommitted changes to params.yaml" in \
            capfd.readouterr().out
        assert fake.calls == []
        submit(allow_dirty=True, sleep=lambda s: None)
        assert "(dirty)" in fake.submissions[0]["description"]


def test_submit_dry_run_sends_nothing(kaggle_env, project, capfd, monkeypatch):
    with FakeKaggle(b"") as fake:
        plan = submit(dry_run=True)
    assert fake.calls == []
    assert not (project / "leaderboard.csv").exists()
    out = capfd.readouterr().out
    assert "would send to house-prices-advanced-regression-techniques" in out
    assert "credentials" not in out  # kaggle_env has them
    assert plan["message"].startswith("commit ")
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(name)
    submit(dry_run=True)
    assert "a real submit would stop: no Kaggle credentials" in capfd.readouterr().out


def test_a_note_with_control_characters_reaches_neither_terminal_nor_kaggle(kaggle_env, project,
                                                                            capfd):
    with FakeKaggle(b""):
        plan = submit(dry_run=True, note="\x1b[2J\x1b]0;owned\x07 lasso\r warm")
    out = capfd.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert plan["message"].startswith("[2J") is False and "lasso warm" in plan["message"]


def test_submit_validates_first(kaggle_env, project):
    lines = (project / "submission.csv").read_text().splitlines()
    lines[5] = lines[5].split(",")[0] + ",-1"
    (project / "submission.csv").write_text("\n".join(lines) + "\n")
    with FakeKaggle(b"") as fake, pytest.raises(PipelineError, match="finite and positive"):
        submit(allow_dirty=True)
    assert fake.calls == []


@pytest.mark.parametrize(("status", "message"), [
    (401, "HTTP 401"), (403, "accept the competition rules"), (404, r"not found \(HTTP 404\)"),
    (429, "still rate limited"),
])
def test_submit_errors(kaggle_env, project, capfd, status, message):
    with FakeKaggle(b"") as fake:
        fake.fail["StartSubmissionUpload"] = [status] * 10
        with pytest.raises(PipelineError, match=message):
            submit(sleep=lambda s: None)
    assert not (project / "leaderboard.csv").exists()
    no_secret_in(*capfd.readouterr())


def test_submit_without_credentials(kaggle_env, project, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    with pytest.raises(PipelineError, match="no Kaggle credentials"):
        submit()


def test_wrong_key_is_401_and_never_printed(kaggle_env, project, monkeypatch, capfd):
    monkeypatch.setenv("KAGGLE_KEY", "wrong-key-987654321")
    with FakeKaggle(b""), pytest.raises(PipelineError, match="HTTP 401"):
        submit()
    out, err = capfd.readouterr()
    assert "wrong-key-987654321" not in out + err


def test_experiments_table_joins_scores_applies_the_tie_rule_and_fits_120_columns():
    from pipeline.search.experiments import table
    from pipeline.search.runs import flatten_exp_show, join_scores

    def data(cv, cv_clean, lr, fold_seed=0):
        return {"metrics": {"metrics/blend.json": {"data": {"cv_rmse": cv, "cv_rmse_std": 0.02,
                                                          "cv_rmse_no_outliers": cv_clean}}},
                "params": {"params.yaml": {"data": {"train": {"lr": lr, "folds": 5,
                                                              "fold_seed": fold_seed}}}}}

    def exp(name, rev, cv, clean, lr, **kw):
        return {"name": name, "revs": [{"rev": rev, "name": name, "data": data(cv, clean, lr, **kw)}]}

    shown = [{"rev": "workspace", "name": None, "data": data(0.125, 0.111, 0.001)},
             {"rev": "abc1234" * 5, "name": "main", "data": data(0.125, 0.111, 0.001),
              "experiments": [exp("lucid-fawn", "def4567", 0.118, 0.108, 0.003),
                              exp("tiny-gain", "aaa1111", 0.1245, 0.111, 0.0011),
                              exp("other-shuffle", "bbb2222", 0.121, 0.110, 0.001, fold_seed=7)]}]
    logged = [{"experiment": "", "commit": "abc1234" * 5, "public_score": "0.131", "utc_time": "t1"},
              {"experiment": "lucid-fawn", "commit": "abc1234", "public_score": "0.127", "utc_time": "t2"},
              {"experiment": "lucid-fawn", "commit": "abc1234", "public_score": "", "utc_time": "t3"}]
    rows = {r["name"]: r for r in join_scores(flatten_exp_show(shown), logged)}
    assert rows["main"]["public_score"] == "0.131"
    assert rows["lucid-fawn"]["public_score"] == "pending" and rows["lucid-fawn"]["cv_rmse"] == 0.118
    assert rows["workspace"]["public_score"] == ""
    base = [0.13, 0.12, 0.125, 0.122, 0.128]
    folds = {"main": base, "workspace": base,
             "lucid-fawn": [b - 0.007 + 0.0002 * i for i, b in enumerate(base)],  # every fold
             "tiny-gain": [b + d for b, d in zip(base, [-0.002, 0.002, -0.001, 0.0005, -0.001], strict=True)],
             "other-shuffle": [0.12] * 5}
    for name, scores in folds.items():
        rows[name]["folds"] = {"fold_rmse": scores, "fold_rmse_no_outliers": scores}
    from pipeline.search.runs import drop_idle_workspace

    lines = table(drop_idle_workspace(list(rows.values()), [])).splitlines()
    assert lines[0].split() == ["experiment", "RMSE", "all", "rows", "normal", "houses", "vs",
                                "baseline", "(tie", "rule)", "public"]
    assert all(len(line) <= 120 for line in lines)
    by_name = {line.split()[0]: line for line in lines[1:] if not line.startswith(" ")}
    assert "better by" in by_name["lucid-fawn"] and "(-0.0066, by folds)" in by_name["lucid-fawn"]
    assert "tie" in by_name["tiny-gain"]
    assert "(baseline, fold seed 7)" in by_name["other-shuffle"]  # main's params on seed 7
    assert "(baseline)" in by_name["main"]
    assert "workspace" not in by_name  # the same params and scores as main: not listed twice
    assert lines[1].startswith("lucid-fawn")  # best CV on all rows first
    # under each row, what it changed from the baseline (and nothing under the baseline)
    assert lines[2].strip() == "train.lr=0.003"
    assert lines[lines.index(by_name["other-shuffle"]) + 1].strip() == "train.fold_seed=7"
    after_main = lines[lines.index(by_name["main"]) + 1:][:1]
    assert not any(line.startswith(" ") for line in after_main)
    assert not any("train.folds=" in line for line in lines)


# --- reliability: deadlines, no lost submission, archive and credential checks ------------------

def with_kaggle(params, **updates):
    import dataclasses

    return dataclasses.replace(params, kaggle=dataclasses.replace(params.kaggle, **updates))


def test_download_from_a_hanging_api_falls_through_to_the_next_source(
        kaggle_env, competition_files, params, tmp_path, capfd, repo_root):
    quick = with_kaggle(params[0], timeout_s=0.5)
    started = time.perf_counter()
    with FakeKaggle(make_zip(competition_files)) as fake:
        fake.hang.add("DownloadDataFiles")
        run_download(quick, tmp_path / "raw", "kaggle", str(repo_root / "data/bundled"))
    assert time.perf_counter() - started < 5
    err = capfd.readouterr().err
    assert "the Kaggle API did not answer within 0.5 s (kaggle.timeout_s)" in err
    assert "from data/bundled" not in err or "verified" in err
    assert (tmp_path / "raw/train.csv").read_bytes() == competition_files["train.csv"]


def test_submit_to_a_hanging_api_stops_with_one_line(kaggle_env, project, params, monkeypatch):
    import yaml as _yaml

    raw = _yaml.safe_load((project / "params.yaml").read_text())
    raw["kaggle"]["timeout_s"] = 0.5
    (project / "params.yaml").write_text(_yaml.safe_dump(raw, sort_keys=False))
    started = time.perf_counter()
    with FakeKaggle(b"") as fake:
        fake.hang.add("StartSubmissionUpload")
        with pytest.raises(PipelineError, match=r"submit: the Kaggle API did not answer within 0\.5 s"):
            submit(allow_dirty=True, sleep=lambda s: None)
    assert time.perf_counter() - started < 5
    assert not (project / "leaderboard.csv").exists()


@pytest.mark.parametrize("failure", ["error", "hang"])
def test_accepted_upload_is_logged_even_if_the_score_cannot_be_fetched(kaggle_env, project, capfd,
                                                                       failure):
    import yaml as _yaml

    raw = _yaml.safe_load((project / "params.yaml").read_text())
    raw["kaggle"]["timeout_s"] = 0.5
    (project / "params.yaml").write_text(_yaml.safe_dump(raw, sort_keys=False))
    with FakeKaggle(b"", score="0.11111") as fake:
        if failure == "hang":
            fake.hang.add("ListSubmissions")
        else:
            fake.fail["ListSubmissions"] = [500] * 10
        with pytest.raises(PipelineError, match="do not submit it again: run 'house-prices submit "
                                                "--fetch-scores'"):
            submit(allow_dirty=True, sleep=lambda s: None)
        assert len(fake.submissions) == 1
        rows = list(csv.DictReader((project / "leaderboard.csv").open()))
        assert len(rows) == 1 and rows[0]["submission_ref"] == "4000"
        assert rows[0]["public_score"] == ""
        # Later: fill the score in without sending anything again.
        fake.hang.clear()
        fake.fail.clear()
        from pipeline.kaggle.submit import fetch_scores

        assert fetch_scores() == []  # Kaggle is still scoring it
        assert [r["public_score"] for r in fetch_scores()] == ["0.11111"]
        assert fetch_scores() == []  # nothing pending: asks nothing
        assert "StartSubmissionUpload" not in fake.calls[1:]
        assert fake.calls.count("CreateSubmission") == 1
    rows = list(csv.DictReader((project / "leaderboard.csv").open()))
    assert len(rows) == 1 and rows[0]["public_score"] == "0.11111"
    assert "no pending submissions" in capfd.readouterr().out


def test_world_readable_kaggle_json_gets_a_warning(kaggle_env, monkeypatch, capfd):
    from pipeline.kaggle import api as kaggle_api
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    config = kaggle_env / ".kaggle" / "kaggle.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"username": USER, "key": KEY}))
    config.chmod(0o644)
    # (connect() warns the same way; the client caches its config folder at import, so this test
    # asks the check directly rather than through a client that another test's HOME configured.)
    assert kaggle_api.credential_source() == str(config)
    kaggle_api.warn_if_readable_by_others(kaggle_api.credential_source())
    err = capfd.readouterr().err
    assert "can be read by other users" in err and "chmod 600" in err
    no_secret_in(err)
    config.chmod(0o600)
    kaggle_api.warn_if_readable_by_others(kaggle_api.credential_source())
    assert "can be read by other users" not in capfd.readouterr().err


def test_archive_that_inflates_past_the_limit_is_refused_before_extraction(
        kaggle_env, competition_files, params, tmp_path, capfd):
    import dataclasses

    bomb = make_zip({**competition_files, "train.csv": b"0" * 3_000_000})
    assert len(bomb) < 100_000
    small = dataclasses.replace(params[0], download=dataclasses.replace(params[0].download,
                                                                        max_file_mb=1))
    with FakeKaggle(bomb), pytest.raises(PipelineError, match="no source supplied"):
        p = small.download.__class__(sources=["kaggle"], files=small.download.files,
                                     timeout_s=1.0, max_file_mb=1)
        dl.download(p, out_dir=tmp_path / "raw", kaggle=small.kaggle)
    assert "would inflate to 3,000,000 bytes, over download.max_file_mb" in capfd.readouterr().err
    assert not (tmp_path / "raw").exists() or list((tmp_path / "raw").iterdir()) == []


def test_submit_with_truncated_or_keyless_metrics_is_one_line(kaggle_env, project):
    (project / "metrics/blend.json").write_text('{"cv_rmse": 0.12')
    with pytest.raises(PipelineError, match=r"blend\.json: not valid JSON \(truncated\?\)"):
        submit(dry_run=True, allow_dirty=True)
    (project / "metrics/blend.json").write_text('{"cv_rmse": 0.12}')
    with pytest.raises(PipelineError, match=r"missing key cv_rmse_std"):
        submit(dry_run=True, allow_dirty=True)


def test_submit_experiment_refuses_a_workspace_that_is_not_it(kaggle_env, project):
    make_experiment(project, "lr-high", params_edit="# lr changed\n",
                    metrics={"cv_rmse": 0.2, "cv_rmse_std": 0.02})
    with FakeKaggle(b"") as fake:
        with pytest.raises(PipelineError, match=r"the workspace is not experiment 'lr-high' "
                                                r"\(params\.yaml differ\); run 'dvc exp apply lr-high'"):
            submit(experiment="lr-high", allow_dirty=True, sleep=lambda s: None)
        with pytest.raises(PipelineError, match="no DVC experiment named 'nope'"):
            submit(experiment="nope", dry_run=True)
    assert fake.calls == []


def test_submit_refuses_a_file_that_is_not_the_pipelines_output(kaggle_env, project):
    import hashlib

    sub = project / "submission.csv"
    (project / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"predict": {
        "outs": [{"path": "submission.csv", "hash": "md5",
                  "md5": hashlib.md5(sub.read_bytes()).hexdigest()}]}}}))
    subprocess.run([*GIT, "add", "dvc.lock"], cwd=project, check=True)
    subprocess.run([*GIT, "commit", "-qm", "lock"], cwd=project, check=True)
    submit(dry_run=True)  # the file dvc.lock names: fine
    sub.write_text(sub.read_text().replace("180000.0", "190000.0", 1))  # edited by hand
    with pytest.raises(PipelineError, match="is not this workspace's output"):
        submit(dry_run=True)


# --- what reaches a terminal or a file from the server or a user's file --------------------------

def test_a_hostile_score_never_reaches_the_log_or_the_terminal_as_sent(kaggle_env, project, capfd):
    hostile = "=cmd|' /C calc'!A0\x1b[2J\x1b]0;owned\x07"
    with FakeKaggle(b"", score=hostile, polls_before_score=0):
        row = submit(sleep=lambda s: None)
    out, err = capfd.readouterr()
    assert "\x1b" not in out + err and "\x07" not in out + err
    logged = next(iter(csv.DictReader((project / "leaderboard.csv").open())))["public_score"]
    assert logged == row["public_score"] and not logged.startswith(("=", "+", "-", "@"))
    assert "\x1b" not in logged and "not a number" in logged


def test_an_html_page_for_json_is_one_line(kaggle_env, project, capfd):
    from pipeline.kaggle.submit import main as submit_main

    with FakeKaggle(b"") as fake:
        fake.html.add("StartSubmissionUpload")
        with pytest.raises(SystemExit) as exit_info:
            submit_main([])
    assert exit_info.value.code == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "not JSON" in err[-1] and "Traceback" not in "".join(err)


@pytest.mark.parametrize(("answer", "message"), [
    ("nested", "JSON nested too deep"), ("loop", "redirect after redirect")])
def test_a_hostile_answer_is_one_line(kaggle_env, project, capfd, answer, message):
    """JSON nested 200,000 deep (once a RecursionError traceback) and a redirect loop (once
    reported as HTTP 404): one line each, and nothing logged."""
    from pipeline.kaggle.submit import main as submit_main

    with FakeKaggle(b"") as fake:
        getattr(fake, answer).add("StartSubmissionUpload")
        with pytest.raises(SystemExit) as exit_info:
            submit_main([])
    assert exit_info.value.code == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert "Traceback" not in "".join(err)
    assert not (project / "leaderboard.csv").exists()


def test_submit_of_another_file_never_echoes_its_content(kaggle_env, project, capfd):
    from pipeline.kaggle.submit import main as submit_main

    secret = project / "shadow"
    secret.write_text("root:$6$s3cr3tHash:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    with pytest.raises(SystemExit):
        submit_main(["--file", str(secret), "--dry-run"])
    out, err = capfd.readouterr()
    assert "s3cr3tHash" not in out + err and "root:" not in out + err
    assert err.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("content", [b"\xff\xfe\x00\x01binary\x00" * 50,
                                     b"utc_time,experiment,public_score\n2026,x,0.12\n"])
def test_a_leaderboard_that_is_not_one_is_one_line(kaggle_env, project, capfd, content):
    from pipeline.kaggle.submit import main as submit_main

    (project / "leaderboard.csv").write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        submit_main(["--fetch-scores"])
    assert exit_info.value.code == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "leaderboard.csv: not a" in err[0] and "git checkout" in err[0]


def test_experiments_judge_each_fold_seed_against_the_baseline_on_that_seed_and_pool_them():
    """An experiment run on fold seeds 0 and 1 is judged against the baseline run on 0 and 1,
    each house's error averaged over both (like with like); an experiment on a seed without a
    baseline run says which run to make; rank and difference come from the same figure."""
    import numpy as np

    from pipeline.search.experiments import against, house_rmse, table

    rng = np.random.default_rng(3)
    n = 400

    def row(name, seed, errors, baseline=False, **params):
        return {"name": name, "rev": name, "baseline": baseline, "cv_rmse": 0.2,
                "cv_rmse_no_outliers": 0.2, "public_score": "",
                "params": {"train.fold_seed": seed, "train.folds": 5, **params},
                "folds": {"fold_rmse": [0.1] * 5, "fold_rmse_no_outliers": [0.1] * 5,
                          "houses": list(errors), "outlier_rows": [0, 1]}}

    base0 = rng.gamma(2.0, 0.006, n)
    base1 = base0 * rng.uniform(0.8, 1.2, n)
    main = row("main", 0, base0, baseline=True, **{"train.lr": 1})
    rows = [main, row("main-s1", 1, base1, **{"train.lr": 1}),
            row("x-s0", 0, base0 * 0.9, **{"train.lr": 2}),
            row("x-s1", 1, base1 * 0.9, **{"train.lr": 2}),
            row("y-s7", 7, base0 * 0.5, **{"train.lr": 3})]
    verdicts = {r["name"]: against(r, main, rows) for r in rows}
    assert verdicts["main-s1"] == "(baseline, fold seed 1)"
    assert verdicts["x-s0"] == verdicts["x-s1"]  # one pooled verdict for the experiment
    assert verdicts["x-s0"].startswith("better by") and verdicts["x-s0"].endswith(", 2 seeds)")
    assert verdicts["y-s7"] == "no baseline at fold seed 7 (run it: -S train.fold_seed=7)"
    # the table's figure is the RMSE over houses, the one the difference is of
    lines = table(rows).splitlines()
    assert lines[0].split()[1:3] == ["RMSE", "all"]
    shown = {line.split()[0]: float(line.split()[1]) for line in lines[1:] if line[0] != " "}
    assert shown["x-s0"] == pytest.approx(house_rmse(rows[2]), abs=1e-5)
    ranked = [line.split()[0] for line in lines[1:] if line[0] != " "]
    assert ranked == sorted(ranked, key=lambda k: house_rmse(next(r for r in rows if r["name"] == k)))


def test_experiments_on_a_binary_fold_file_says_no_fold_scores(tmp_path):
    from pipeline.search.runs import fold_scores

    path = tmp_path / "blend_folds.json"
    path.write_bytes(b"\x00\xff\xfe" * 100)
    assert fold_scores("workspace", str(path)) is None
    path.write_text("[" * 20000 + "]" * 20000)
    assert fold_scores("workspace", str(path)) is None


def test_a_formula_from_outside_is_neutralised_in_a_cell():
    from pipeline.common.errors import safe_cell
    from pipeline.kaggle.submit import score_text

    assert safe_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)" and safe_cell("-1+2") == "'-1+2"
    assert score_text("0.12345") == "0.12345" and score_text(0.1) == "0.1"


def test_experiments_judge_by_houses_where_both_commits_have_them():
    import numpy as np

    from pipeline.search.experiments import against

    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.11, 1460) ** 2
    base[[523, 1298]] = 2.5
    folds = {"fold_rmse": [0.12] * 5, "fold_rmse_no_outliers": [0.11] * 5}
    params = {"train.folds": 5, "train.fold_seed": 0, "train.exclude_outliers": True}

    def row(houses):
        return {"params": params, "folds": {**folds, "houses": list(houses),
                                            "outlier_rows": [523, 1298]}}

    baseline = row(base)
    better = row(base * 0.9)
    assert against(better, baseline).startswith("better by") and " ± " in against(better, baseline)
    only_two = base.copy()
    only_two[[523, 1298]] = 0.0  # priced the two partial sales exactly, nothing else
    assert against(row(only_two), baseline).startswith("tie")


def test_an_archive_stream_past_the_limit_is_cut_as_it_passes_it(
        kaggle_env, competition_files, params, tmp_path, capfd, repo_root):
    """The Kaggle client saves the archive itself: the process may not write a file past
    download.max_file_mb while it does (the OS refuses the write), so a huge stream never fills
    the temporary directory; the next source supplies the files."""
    import os as _os

    huge = make_zip({**competition_files, "noise.bin": _os.urandom(3_000_000)})  # incompressible
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    for spec in params[0].download.files.values():
        (bundled / spec.name).write_bytes((repo_root / "data/bundled" / spec.name).read_bytes())
    p = params[0].download.__class__(sources=["kaggle", str(bundled)],
                                     files=params[0].download.files, timeout_s=5.0, max_file_mb=1)
    with FakeKaggle(huge):
        dl.download(p, out_dir=tmp_path / "raw", kaggle=params[0].kaggle)
    err = capfd.readouterr().err
    assert "the archive is larger than download.max_file_mb (1,000,000 bytes); cut off" in err
    assert sorted(x.name for x in (tmp_path / "raw").iterdir()) == ["test.csv", "train.csv"]
    import resource

    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] == resource.RLIM_INFINITY  # the child's
