"""A bad parameter fails with one line that names the key and the fix."""

import copy
import os

import pytest
import yaml

from pipeline.common.errors import PipelineError
from pipeline.config.params import load_params, parse_params
from pipeline.members import check_settings


def checked(raw):
    """params.yaml as the check_params stage checks it: its sections, then each family's."""
    params = parse_params(raw)
    check_settings(params.members)
    return params


@pytest.fixture
def raw(repo_root):
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def test_repo_params_are_valid(repo_root):
    params = load_params(repo_root / "params.yaml")
    assert params.train.folds >= 2


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("train", "lr", -1, "train.lr must be > 0"),
    ("train", "lr", "fast", "train.lr must be a number"),
    ("train", "optimizer", "lbfgs", "train.optimizer must be one of sgd, adam, adamw"),
    ("train", "dropout", 1.0, "train.dropout must be < 1"),
    ("train", "early_stopping_holdout", 0.8, "train.early_stopping_holdout must be <= 0.5"),
    ("train", "hidden", [64, 0], "train.hidden must be >= 1"),
    ("train", "compile", "yes", "train.compile must be true or false"),
    ("train", "l1_skip", -0.1, "train.l1_skip must be >= 0"),
    ("train", "huber_delta", -0.1, "train.huber_delta must be >= 0"),
    ("train", "lasso_input_power", -1, "train.lasso_input_power must be >= 0"),
    ("train", "lasso_input_power", "high", "train.lasso_input_power must be a number"),
    ("train", "skip_init", "ridge", "train.skip_init must be one of zeros, lasso"),
    ("preprocess", "engineered_features", "yes", "preprocess.engineered_features must be true or false"),
    ("preprocess", "piecewise_linear", "splines",
     "preprocess.piecewise_linear must be one of none, kinks, got 'splines'"),
    ("train", "lasso_max_iter", 0, "train.lasso_max_iter must be >= 1"),
    ("preprocess", "piecewise_bins", 1, "preprocess.piecewise_bins must be >= 2"),
    ("preprocess", "scaler", "minmax", "preprocess.scaler must be one of standard, robust_clip"),
    ("preprocess", "skew_lambda", -0.5, "preprocess.skew_lambda must be >= 0"),
    ("preprocess", "domain_fills", 1, "preprocess.domain_fills must be true or false"),
    ("train", "folds", 1, "train.folds must be >= 2"),
    ("train", "batch_size", 3.5, "train.batch_size must be an integer"),
    ("preprocess", "fit_on", "test", "preprocess.fit_on must be one of train, train\\+test"),
    ("ensemble", "average", "median", "ensemble.average must be one of price, log"),
])
def test_bad_value(raw, section, key, value, message):
    bad = copy.deepcopy(raw)
    bad[section][key] = value
    with pytest.raises(PipelineError, match=message):
        parse_params(bad)


def test_unknown_and_missing_keys(raw):
    bad = copy.deepcopy(raw)
    bad["train"]["learning_rate"] = 0.1
    with pytest.raises(PipelineError, match="train.learning_rate is not a known parameter"):
        parse_params(bad)
    bad = copy.deepcopy(raw)
    del bad["train"]["lr"]
    with pytest.raises(PipelineError, match="train.lr is missing"):
        parse_params(bad)


def test_bad_sha1(raw):
    bad = copy.deepcopy(raw)
    bad["download"]["files"]["train"]["sha1"] = "abc"
    with pytest.raises(PipelineError, match="sha1 must be 40 hex digits"):
        parse_params(bad)


def test_missing_file(tmp_path):
    with pytest.raises(PipelineError, match="not found; run from the repository root"):
        load_params(tmp_path / "params.yaml")


def test_exponent_floats_without_a_dot_are_numbers(repo_root, tmp_path):
    """`l1: 1e-4` is a number to YAML 1.2 and to DVC, a string to PyYAML alone."""
    text = (repo_root / "params.yaml").read_text()
    text = text.replace("  l1: 0.0001 ", "  l1: 1e-4 ").replace("  lr: 0.000781", "  lr: 7.81E-04")
    (tmp_path / "params.yaml").write_text(text)
    params = load_params(tmp_path / "params.yaml")
    assert (params.train.l1, params.train.lr) == (0.0001, 0.000781)
    assert params.train.folds == 5 and isinstance(params.train.folds, int)


def test_lasso_warm_start_needs_the_skip_path(raw):
    bad = copy.deepcopy(raw)
    bad["train"].update(skip_init="lasso", linear_skip=False)
    with pytest.raises(PipelineError, match="train.skip_init .*set train.linear_skip=true"):
        parse_params(bad)


# Values a hostile run found accepted by the check and then crashing or running without end.
@pytest.mark.parametrize(("keys", "value", "message"), [
    (("members", "lgbm", "num_leaves"), 1, "members.lgbm.num_leaves must be >= 2"),
    (("members", "lgbm", "threads"), 100000, "members.lgbm.threads must be <= 256"),
    (("members", "lgbm", "n_estimators"), 10**9, "members.lgbm.n_estimators must be <= 100000"),
    (("train", "lasso_max_iter"), 10**12, "train.lasso_max_iter must be <= 1000000"),
    (("train", "max_epochs"), 1000000000, "train.max_epochs must be <= 10000"),
    (("train", "hidden"), [100000, 100000], "train.hidden must be <= 4096"),
    (("train", "hidden"), [4096, 4096, 4096], "train.hidden has more than 20,000,000 weights"),
    (("train", "hidden"), [8] * 9, "train.hidden must have at most 8 layers"),
    (("train", "n_seeds"), 1000000, "train.n_seeds must be <= 50"),
    (("train", "folds"), 5000, "train.folds must be <= 100"),
    (("train", "seed"), 2**64, "train.seed must be <= 4294967295"),
    (("train", "batch_size"), 10**9, "train.batch_size must be <= 65536"),
    (("preprocess", "piecewise_bins"), 1000000000, "preprocess.piecewise_bins must be <= 64"),
    (("preprocess", "mlp_views"), [{"scaler": "standard"}] * 9,
     "preprocess.mlp_views must list at most 8 views"),
    (("download", "timeout_s"), 1e9, "download.timeout_s must be <= 3600"),
    (("kaggle", "retries"), 10**6, "kaggle.retries must be <= 20"),
    (("ensemble", "members"), "mlp", "ensemble.members must be a list of names, got 'mlp'"),
    (("train", "lr"), 1000, "train.lr must be <= 1.0"),
    (("train", "lasso_alpha"), 5, "train.lasso_alpha must be <= 0.1"),
    (("download", "deadline_s"), 0, "download.deadline_s must be > 0"),
    (("train", "exclude_outliers"), 1, "train.exclude_outliers must be true or false, got 1"),
    (("train", "folds"), 5.0, "train.folds must be an integer, got 5.0"),
])
def test_every_accepted_value_runs(raw, keys, value, message):
    bad = copy.deepcopy(raw)
    where = bad
    for key in keys[:-1]:
        where = where[key]
    where[keys[-1]] = value
    with pytest.raises(PipelineError, match=message):
        checked(bad)


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.update(xgb={"depth": 3}), "members.xgb is not a model family .known: lasso_svr, lgbm"),
    (lambda m: m.pop("lasso_svr") and m.update(ens=None), "members.lasso_svr is missing; add the section"),
    (lambda m: m["lgbm"].pop("seed"), "members.lgbm.seed is missing"),
    (lambda m: m["lgbm"].update(depth=3), "members.lgbm.depth is not a known setting"),
    (lambda m: m.update(lgbm=[1]), "members.lgbm must be a mapping of settings"),
])
def test_the_members_sections_are_the_families(raw, change, message):
    """Each module of pipeline/members/ is a family with its section; no other section."""
    bad = copy.deepcopy(raw)
    change(bad["members"])
    if bad["members"].pop("ens", 1) is None:  # the blend no longer names the family left out
        bad["ensemble"]["members"] = ["mlp", "lgbm"]
    with pytest.raises(PipelineError, match=message):
        checked(bad)


def test_the_blend_names_only_members_params_yaml_has(raw):
    bad = copy.deepcopy(raw)
    bad["ensemble"]["members"] = ["mlp", "xgb"]
    with pytest.raises(PipelineError, match="ensemble.members names an unknown member 'xgb' "
                       r"\(known: mlp, lgbm, lasso_svr\)"):
        parse_params(bad)


def test_cuda_without_a_gpu_stops_at_the_parameter_check(raw, tmp_path, monkeypatch):
    """Found by check-params (the first stage), before DVC removes the train stage's outputs."""
    import torch

    from pipeline.stages import check_params as params_mod
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    bad = copy.deepcopy(raw)
    bad["train"]["device"] = "cuda"
    with pytest.raises(PipelineError, match="train.device is cuda but torch sees no GPU on this "
                                            "machine; use auto or cpu"):
        params_mod.check_machine(parse_params(bad))
    params_mod.check_machine(parse_params(raw))  # auto: fine anywhere


def test_a_column_name_typo_stops_at_the_parameter_check(raw):
    from pipeline.stages import check_params as params_mod
    bad = copy.deepcopy(raw)
    bad["preprocess"]["numeric_as_category"] = ["MSSubClass", "NoSuchCol"]
    with pytest.raises(PipelineError, match="preprocess.numeric_as_category names 'NoSuchCol', not "
                                            "a numeric column of train.csv"):
        params_mod.check_columns(parse_params(bad))
    bad = copy.deepcopy(raw)
    bad["preprocess"]["mlp_views"] = [{"numeric_as_category": ["Neighborhood"]}]  # a category
    with pytest.raises(PipelineError, match=r"mlp_views\[0\].numeric_as_category names 'Neighborhood'"):
        params_mod.check_columns(parse_params(bad))
    params_mod.check_columns(parse_params(raw))


def test_models_too_large_for_the_machine_stop_at_the_parameter_check(raw):
    """Each of these is within its own maximum; together they would need ~1 TB."""
    from pipeline.stages import check_params as params_mod
    bad = copy.deepcopy(raw)
    bad["train"].update(hidden=[4096, 4096], n_seeds=50, folds=100)
    with pytest.raises(PipelineError, match=r"= 15,000 models, whose weights and optimiser state "
                                            r"need ~\d[\d,.]* GB; this machine's memory is"):
        params_mod.check_machine(parse_params(bad))


def test_more_threads_than_cores_is_a_note_and_the_fits_use_the_cores(raw, capsys, monkeypatch):
    from pipeline.stages import check_params as params_mod
    monkeypatch.setattr(params_mod.os, "cpu_count", lambda: 2)
    many = copy.deepcopy(raw)
    many["members"]["lgbm"]["threads"] = 256
    params_mod.check_machine(parse_params(many))
    assert ("members.lgbm.threads 256 is more than this machine's 2 cores; each fit uses 2"
            in capsys.readouterr().out)


def test_the_parameter_check_removes_temporaries_of_killed_runs(repo_root, tmp_path):
    """A run killed with SIGKILL leaves `.submission.csv.PID.X.tmp` (hidden: .gitignore has
    .*.tmp); the next dvc repro's first stage removes it, not only the next write to its target."""
    import shutil
    import subprocess
    import sys

    shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / "models").mkdir()
    left = [tmp_path / f".submission.csv.{dead}.hpab_c1.tmp", tmp_path / f".models.{dead}.hpx9.tmp"]
    left[0].write_text("half")
    left[1].mkdir()
    (left[1] / "fold0.pt").write_text("half")
    alive = tmp_path / f".submission.csv.{os.getpid()}.hpzz.tmp"  # a running process's: kept
    alive.write_text("busy")
    users = tmp_path / f".notes.txt.{dead}.backup.tmp"  # the same shape, not the project's: kept
    users.write_text("mine")
    from pipeline.stages.check_params import main

    main(["--params", str(tmp_path / "params.yaml")])
    assert not any(p.exists() for p in left) and alive.exists() and users.read_text() == "mine"


@pytest.mark.parametrize(("content", "message"), [
    ("utf16", "not UTF-8 text"), ("deep", "nested too deeply")])
def test_a_params_file_that_cannot_be_read_is_one_line(repo_root, tmp_path, content, message):
    import subprocess
    import sys

    path = tmp_path / "params.yaml"
    if content == "utf16":
        path.write_bytes((repo_root / "params.yaml").read_text().encode("utf-16"))
    else:
        path.write_text("a: " + "[" * 20000 + "]" * 20000 + "\n")
    proc = subprocess.run([sys.executable, "-m", "pipeline.stages.check_params", "--params", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
