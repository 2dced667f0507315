"""Blend members on out-of-fold predictions: honest nested CV, a one-member blend equal to the MLP
alone, members on the MLP's folds, and one clear line for every bad input."""

import dataclasses

import numpy as np
import pytest
from conftest import repo_params
from sklearn.base import BaseEstimator

from pipeline.common.errors import PipelineError
from pipeline.config.params import parse_params
from pipeline.dataset.matrices import preprocess
from pipeline.members import check_settings, families
from pipeline.scoring.blending import Blender, fit_weights, nested_oof
from pipeline.scoring.predictions import cross_fit, member_plan
from pipeline.stages import blend as blend_mod
from pipeline.stages.blend import blend
from pipeline.stages.member import run_member
from pipeline.stages.predict import predict
from pipeline.stages.train import train


def test_weights_are_non_negative_sum_to_one_and_recover_a_mixture():
    rng = np.random.default_rng(0)
    y = rng.normal(12, 0.4, 500)
    a, b, c = y + rng.normal(0, 0.1, 500), y + rng.normal(0, 0.1, 500), -y  # c is useless
    w = fit_weights(np.stack([a, b, c], axis=1), y)
    assert (w >= 0).all() and w.sum() == pytest.approx(1, abs=1e-12)
    assert w[2] < 1e-6 and w[0] == pytest.approx(0.5, abs=0.1)


def test_nested_cv_never_fits_weights_on_the_scored_fold(monkeypatch):
    n = 200
    fold_of_row = np.arange(n) % 5
    rows_seen = []
    real_fit = Blender.fit

    def spy(self, preds, y):
        rows_seen.append(preds[:, 0].astype(int))  # column 0 carries each row's index
        return real_fit(self, preds, y)

    monkeypatch.setattr(Blender, "fit", spy)
    preds = np.stack([np.arange(n, dtype=float), np.ones(n)], axis=1)
    fit_rows = np.ones(n, dtype=bool)
    fit_rows[7] = False  # e.g. an outlier: never fitted on
    nested_oof(preds, np.arange(n, dtype=float), fit_rows, fold_of_row, "weights", 1.0)
    assert len(rows_seen) == 5
    for fold, seen in enumerate(rows_seen):
        assert not np.isin(seen, np.flatnonzero(fold_of_row == fold)).any()
        assert 7 not in seen
        assert len(seen) == (fold_of_row != fold).sum() - (fold_of_row[7] != fold)


def test_a_member_perfect_only_on_one_fold_does_not_flatter_the_nested_score():
    rng = np.random.default_rng(1)
    n = 500
    y = rng.normal(12, 0.4, n)
    fold_of_row = np.arange(n) % 5
    honest = y + rng.normal(0, 0.1, n)
    leaky = np.where(fold_of_row == 0, y, y + rng.normal(0, 0.5, n))  # knows fold 0's answers
    oof, _ = nested_oof(np.stack([honest, leaky], axis=1), y, np.ones(n, dtype=bool), fold_of_row,
                        "weights", 1.0)
    fold0 = fold_of_row == 0
    # Weights for fold 0 come from folds 1-4, where `leaky` is bad: fold 0 is scored mostly on
    # `honest`, so its error stays near honest's (0.1), far above zero.
    assert np.sqrt(np.mean((oof[fold0] - y[fold0]) ** 2)) > 0.05


@pytest.fixture(scope="module")
def built_run(tmp_path_factory):
    """A tiny end-to-end run, built once: preprocess, the MLP's train stage, every other
    family's member."""
    from conftest import ames_slice

    tmp_path = tmp_path_factory.mktemp("pipeline_run")
    ames_sample = ames_slice()
    params = repo_params(folds=3, n_seeds=1, max_epochs=15, patience=5, device="cpu")
    raw = dict(params.raw)
    raw["members"] = {**raw["members"], "lgbm": {**raw["members"]["lgbm"], "n_estimators": 50,
                                                 "threads": 1}}
    raw["train"] = {**raw["train"], "folds": 3, "n_seeds": 1, "max_epochs": 15, "patience": 5,
                    "device": "cpu"}
    params = parse_params(raw)
    train_frame, test_frame = ames_sample
    (tmp_path / "raw").mkdir()
    train_frame.to_csv(tmp_path / "raw/train.csv", index=False)
    test_frame.to_csv(tmp_path / "raw/test.csv", index=False)
    preprocess(train_frame, test_frame, params.preprocess).save(tmp_path / "processed")
    train(params.train, params.ensemble.average, data_dir=tmp_path / "processed",
          models_dir=tmp_path / "models", metrics_path=tmp_path / "cv.json",
          oof_path=tmp_path / "oof.csv", live_dir=tmp_path / "live",
          member_path=tmp_path / "members/mlp/predictions.npz")
    # the saved models, reloaded: the same test prediction as the train stage's in memory
    predict(params.train, params.ensemble, tmp_path / "processed", tmp_path / "models",
            tmp_path / "mlp_alone.csv")
    for name in families():
        run_member(name, params, data_dir=tmp_path / "processed", out_dir=tmp_path / "members")
    return params, tmp_path


@pytest.fixture
def pipeline_run(built_run, tmp_path):
    """The tiny run, copied for each test (tests corrupt and rewrite its files)."""
    import shutil

    params, built = built_run
    shutil.copytree(built, tmp_path, dirs_exist_ok=True)
    return params, tmp_path


def run_blend(params, tmp_path, out="submission.csv"):
    return blend(params, members_dir=tmp_path / "members",
                 mlp_predictions=tmp_path / "members/mlp/predictions.npz",
                 data_dir=tmp_path / "processed", raw_dir=tmp_path / "raw", out=tmp_path / out,
                 metrics_path=tmp_path / "blend.json", table_path=tmp_path / "blend_members.csv")


def with_ensemble(params, **updates):
    return dataclasses.replace(params, ensemble=dataclasses.replace(params.ensemble, **updates))


def test_one_member_blend_is_the_mlp_submission_byte_for_byte(pipeline_run):
    params, tmp_path = pipeline_run
    metrics = run_blend(with_ensemble(params, members=("mlp",)), tmp_path)
    assert metrics["weights"] == {"mlp": 1.0}
    assert (tmp_path / "submission.csv").read_bytes() == (tmp_path / "mlp_alone.csv").read_bytes()
    mlp_cv = __import__("json").loads((tmp_path / "cv.json").read_text())
    assert metrics["cv_rmse"] == pytest.approx(mlp_cv["cv_rmse"], abs=1e-12)


def test_default_blend_writes_weights_members_and_a_valid_submission(pipeline_run):
    params, tmp_path = pipeline_run
    metrics = run_blend(params, tmp_path)
    default = set(params.ensemble.members)
    assert default == {"mlp", "lgbm", "lasso_svr"}  # decided by nested CV (docs/model-search.md)
    assert params.ensemble.blend == "equal"
    assert set(metrics["weights"].values()) == {round(1 / 3, 6)}
    assert set(metrics["weights"]) == default
    assert sum(metrics["weights"].values()) == pytest.approx(1, abs=1e-5)
    assert set(metrics["members"]) == default
    table = (tmp_path / "blend_members.csv").read_text().splitlines()
    assert table[0] == "model,cv_rmse,cv_rmse_no_outliers" and len(table) == len(default) + 2
    assert (tmp_path / "submission.csv").is_file()
    import pandas as pd

    bands = pd.read_csv(tmp_path / "blend_bands.csv")  # errors by price band, each model
    assert len(bands) == blend_mod.PRICE_BANDS * (len(default) + 1)
    assert set(bands["model"]) == default | {"blend"} and (bands["log_rmse"] > 0).all()
    pairs = pd.read_csv(tmp_path / "member_residuals.csv")  # each pair of members' residuals
    assert pairs["pair"].nunique() == 3 and len(pairs) == 3 * (~np.load(
        tmp_path / "processed/train.npz")["outlier"].astype(bool)).sum()
    again = run_blend(params, tmp_path, "again.csv")
    assert again == metrics
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "submission.csv").read_bytes()


def test_members_train_on_the_mlps_folds_without_the_outliers(pipeline_run):
    params, tmp_path = pipeline_run
    data = np.load(tmp_path / "processed/train.npz")
    outlier = data["outlier"].astype(bool)
    outlier[:3] = True  # pretend: the sample has no real outlier rows
    plan = member_plan(len(data["y"]), outlier, params, True)
    fitted_rows = []

    class Recorder(BaseEstimator):
        def fit(self, x, y):
            fitted_rows.append(x[:, 0].copy())
            return self

        def predict(self, x):
            return np.zeros(len(x))

    x = np.arange(len(data["y"]), dtype=float)[:, None]  # column 0: the row's index
    cross_fit(Recorder(), x, data["y"], x[:4], plan)
    mlp_folds = np.loadtxt(tmp_path / "oof.csv", delimiter=",", skiprows=1, usecols=1)
    expected = [tuple(np.flatnonzero((mlp_folds != fold) & ~outlier))
                for fold in range(params.train.folds)]
    # the folds fit at once on the cores, so in any order: each fold's rows exactly once
    assert sorted(tuple(rows.astype(int)) for rows in fitted_rows) == sorted(expected)


@pytest.mark.parametrize("case", ["missing", "other_folds", "nan", "other_rows", "truncated",
                                  "not_zip", "pickled", "wrong_length", "absurd", "not_numbers"])
def test_bad_member_outputs_are_one_line_and_leave_the_submission(pipeline_run, case):
    params, tmp_path = pipeline_run
    run_blend(params, tmp_path)
    before = (tmp_path / "submission.csv").read_bytes()
    metrics_before = (tmp_path / "blend.json").read_bytes()
    path = tmp_path / "members/lgbm/predictions.npz"
    if case == "missing":
        path.unlink()
        message = "member lgbm has no predictions; run dvc repro"
    elif case == "truncated":
        path.write_bytes(path.read_bytes()[:300])
        message = r"lgbm/predictions.npz: not a readable .npz archive \(truncated or corrupt"
    elif case == "not_zip":
        np.save(path.with_suffix(".npy"), np.zeros(3))
        path.write_bytes(path.with_suffix(".npy").read_bytes())
        message = "lgbm/predictions.npz: not a readable .npz archive"
    elif case == "pickled":  # an object array would need unpickling: refused, never loaded
        data = dict(np.load(path))
        data["oof"] = np.array([{"any": "object"}] * len(data["oof"]), dtype=object)
        np.savez(path, **data)
        message = ("lgbm/predictions.npz: not a readable .npz archive.*holds pickled Python "
                   "objects, which are never loaded\\)")
    else:
        data = dict(np.load(path))
        if case == "other_folds":
            data["plan"] = np.array([3, 7, 1])
            message = "member lgbm was trained on another fold plan"
        elif case == "nan":
            data["oof"][4] = np.nan
            message = "member lgbm: non-finite oof predictions"
        elif case == "wrong_length":
            data["test"] = data["test"][:-1]
            message = r"member lgbm: .* has \d+ 'test' values for \d+ houses"
        elif case == "absurd":  # finite, but no house costs e**(12 * 1e300)
            data["test"] = data["test"] * 1e300
            message = "member lgbm: a test prediction of .* is far outside the training prices"
        elif case == "not_numbers":
            data["oof"] = data["oof"].astype(str)
            message = "member lgbm: 'oof' in .* is not a 1-D array of numbers"
        else:
            data["fold_of_row"] = np.roll(data["fold_of_row"], 1)
            message = "member lgbm: its fold_of_row differ"
        np.savez(path, **data)
    with pytest.raises(PipelineError, match=message):
        run_blend(params, tmp_path)
    assert (tmp_path / "submission.csv").read_bytes() == before
    assert (tmp_path / "blend.json").read_bytes() == metrics_before


def test_metrics_files_are_strict_json(tmp_path):
    from pipeline.common.atomic import write_json

    write_json(tmp_path / "ok.json", {"cv_rmse": 0.1})
    assert (tmp_path / "ok.json").read_text() == '{\n  "cv_rmse": 0.1\n}\n'
    with pytest.raises(PipelineError, match="bad.json: a value is not finite"):
        write_json(tmp_path / "bad.json", {"cv_rmse": float("inf")})
    assert not (tmp_path / "bad.json").exists()


def test_unknown_member_is_a_params_error(repo_root):
    import yaml

    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["ensemble"]["members"] = ["mlp", "xgboost"]
    with pytest.raises(PipelineError, match="ensemble.members names an unknown member 'xgboost'"):
        parse_params(raw)
    raw["ensemble"]["members"] = ["mlp"]
    raw["members"]["lgbm"]["subsample"] = 1.5
    with pytest.raises(PipelineError, match=r"members\.lgbm\.subsample must be <= 1"):
        check_settings(parse_params(raw).members)
    raw["members"]["lgbm"]["subsample"] = 0.7
    raw["members"]["lasso_svr"]["epsilon"] = 0.0  # a valid SVR: every residual costs
    check_settings(parse_params(raw).members)
    raw["members"]["lasso_svr"]["gamma"] = 0
    with pytest.raises(PipelineError, match=r"members\.lasso_svr\.gamma must be > 0"):
        check_settings(parse_params(raw).members)


def lasso_svr_model(**changes):
    from pipeline.members.lasso_svr import LassoScaledSVR

    settings = {"C": 20.0, "epsilon": 0.008, "gamma": 0.2, "power": 2.0, "lasso_alpha": 0.01,
                "lasso_max_iter": 50000, "lasso_tol": 1e-6}
    return LassoScaledSVR(**{**settings, **changes})


def test_lasso_svr_kernel_ignores_the_columns_its_lasso_drops():
    """Columns with a zero Lasso coefficient leave the kernel (scale 0), so noise in them cannot
    move a prediction; the kept columns' scales average 1 and follow |coef| ** power."""

    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 6))
    y = 12 + 0.4 * x[:, 0] + 0.1 * x[:, 1] + 0.2 * np.sin(2 * x[:, 0])  # columns 2-5: noise
    model = lasso_svr_model().fit(x[:200], y[:200])
    scale = model.scale_
    kept = scale > 0
    assert kept[:2].all() and scale[0] > 4 * scale[1]  # (0.4 / 0.1) ** 2 ~ 16
    assert scale[kept].mean() == pytest.approx(1, abs=1e-12)
    assert not kept.all()
    noisy = x[200:].copy()
    noisy[:, ~kept] = rng.normal(size=(100, (~kept).sum())) * 100
    first = model.predict(x[200:])
    assert np.array_equal(first, model.predict(noisy))
    again = lasso_svr_model().fit(x[:200], y[:200])
    assert np.array_equal(first, again.predict(x[200:]))  # deterministic
    assert np.sqrt(np.mean((first - y[200:]) ** 2)) < 0.3 * np.std(y[200:])


def test_lasso_svr_with_power_zero_is_the_plain_svr():
    """power 0 is scikit-learn's RBF SVR on the matrix as it is (the member the default blend
    had until nested CV dropped it; tag svr-member-2026-11)."""
    from sklearn.svm import SVR


    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 5))
    y = 12 + 0.3 * np.sin(x[:, 0]) + 0.1 * x[:, 1]
    plain = SVR(kernel="rbf", C=20.0, epsilon=0.008, gamma=0.2)
    scaled = lasso_svr_model(power=0.0)
    assert np.array_equal(plain.fit(x[:150], y[:150]).predict(x[150:]),
                          scaled.fit(x[:150], y[:150]).predict(x[150:]))


def test_lasso_svr_says_when_its_lasso_keeps_no_column(repo_root):
    import yaml


    x = np.random.default_rng(6).normal(size=(50, 3))
    model = lasso_svr_model(lasso_alpha=100.0)
    with pytest.raises(ValueError, match="kept no column.*lower train.lasso_alpha"):
        model.fit(x, 12 + 0.01 * x[:, 0])  # scikit-learn's contract; the stage makes it one line
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["members"]["lasso_svr"]["power"] = -1
    with pytest.raises(PipelineError, match=r"members\.lasso_svr\.power must be >= 0"):
        check_settings(parse_params(raw).members)


def test_ridge_blend_has_an_intercept_and_is_nested_too(pipeline_run):
    params, tmp_path = pipeline_run
    metrics = run_blend(with_ensemble(params, blend="ridge"), tmp_path)
    assert set(metrics["weights"]) == set(params.ensemble.members)
    assert blend_mod.Blender("ridge", 1.0).fit(np.ones((4, 2)), np.ones(4)).intercept_ != 0.0


def test_member_and_blend_stages_do_not_import_torch():
    """They only read arrays and fit scikit-learn models; torch's import is most of a stage's
    start-up time, three member stages and the blend pay it for nothing."""
    import subprocess
    import sys

    code = "import sys, pipeline.stages.member, pipeline.stages.blend; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_parameter_check_imports_neither_torch_nor_scikit_learn(repo_root):
    """check-params runs first in every `dvc repro`; reading the families' SETTINGS must not
    import the libraries their models need (a family module imports them in make_model / fit)."""
    import subprocess
    import sys

    code = ("import sys; from pipeline.config.params import load_params; load_params('params.yaml'); "
            "print('torch' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=repo_root)
    assert out.stdout.strip() == "False False"


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (root only, as CI runs): a disk that fills up mid-stage."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_but_one_page(disk):
    import os

    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - 4096))


def test_a_blend_that_fills_the_disk_changes_no_output_and_names_the_file(
        pipeline_run, small_disk, capsys):
    import shutil

    from pipeline.common.cli_support import run_cli

    params, tmp_path = pipeline_run
    outs = {"out": small_disk / "submission.csv", "metrics_path": small_disk / "blend.json",
            "table_path": small_disk / "blend_members.csv"}

    def run():
        blend(params, members_dir=tmp_path / "members",
              mlp_predictions=tmp_path / "members/mlp/predictions.npz",
              data_dir=tmp_path / "processed", raw_dir=tmp_path / "raw", **outs)

    params_file = tmp_path / "params.yaml"
    shutil.copy(__import__("conftest").ROOT / "params.yaml", params_file)
    run_cli(run, params_path=str(params_file))  # the first blend: its outputs are the old ones
    before = {p.name: p.read_bytes() for p in small_disk.iterdir()}
    assert len(before) == 7  # submission, metrics, members, bands, residuals, folds, houses
    fill_but_one_page(small_disk)  # room for the first new file, not for the others
    params = with_ensemble(params, blend="ridge")  # new values in every file
    with pytest.raises(SystemExit) as exit_info:
        run_cli(run, params_path=str(params_file))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no space left on the device")
    assert str(small_disk) in err[0]  # which output it was writing
    after = {p.name: p.read_bytes() for p in small_disk.iterdir() if p.name != "filler"}
    assert after == before  # nothing replaced, no temporary left


def test_more_lgbm_threads_than_cores_fit_on_the_cores_with_the_same_trees(pipeline_run, monkeypatch):
    import os

    from pipeline.stages import member as member_mod
    params, tmp_path = pipeline_run
    one = np.load(tmp_path / "members/lgbm/predictions.npz")["oof"]
    raw = dict(params.raw)
    raw["members"] = {**raw["members"], "lgbm": {**raw["members"]["lgbm"], "threads": 256}}
    used = []
    real = member_mod.cross_fit
    monkeypatch.setattr(member_mod, "cross_fit", lambda *a: used.append(a[-1]) or real(*a))
    run_member("lgbm", parse_params(raw), data_dir=tmp_path / "processed",
               out_dir=tmp_path / "many")
    assert used == [os.cpu_count()]
    assert np.array_equal(np.load(tmp_path / "many/lgbm/predictions.npz")["oof"], one)


def test_fits_then_uses_come_back_in_order_and_a_failed_fit_is_raised():
    """fit_then_use (how cross_fit runs a member's folds): each use gets its own fit's result,
    the results come back in the items' order whatever finishes first, and a fit that fails
    raises in the caller instead of leaving a use waiting."""
    import time

    from pipeline.common.threads import fit_then_use

    def fit(i):
        time.sleep(0.02 * (4 - i))  # the first fits finish last
        return i * 10

    assert fit_then_use(fit, lambda r: r + 1, range(5)) == [1, 11, 21, 31, 41]

    def broken(i):
        if i == 3:
            raise ValueError("fold 3 failed")
        return i

    with pytest.raises(ValueError, match="fold 3 failed"):
        fit_then_use(broken, lambda r: r, range(5))


def test_the_blend_moves_only_the_region_houses(pipeline_run):
    """Two training houses and one test house of the tiny run made huge partial sales in the raw
    files: with rare_sales comparable, the test one is priced at their mean log price, each held
    out one at the other's, and every other row of submission.csv and of the per-house errors is
    the blend's, byte for byte."""
    import json

    import pandas as pd

    params, tmp_path = pipeline_run
    train = pd.read_csv(tmp_path / "raw/train.csv")
    test = pd.read_csv(tmp_path / "raw/test.csv")
    fold = np.load(tmp_path / "members/mlp/predictions.npz")["fold_of_row"]
    picked = [0, int(np.flatnonzero(fold != fold[0])[0])]
    train.loc[picked, ["GrLivArea", "SaleCondition"]] = [5000, "Partial"]
    test.loc[[4], ["GrLivArea", "SaleCondition"]] = [5000, "Partial"]
    train.to_csv(tmp_path / "raw/train.csv", index=False)
    test.to_csv(tmp_path / "raw/test.csv", index=False)

    run_blend(with_ensemble(params, rare_sales="none"), tmp_path, out="plain.csv")
    plain = json.loads((tmp_path / "blend_folds.json").read_text())["house_squared_error"]
    metrics = run_blend(with_ensemble(params, rare_sales="comparable"), tmp_path)
    priced = json.loads((tmp_path / "blend_folds.json").read_text())["house_squared_error"]
    ids = train["Id"].to_numpy()
    assert metrics["rare_sales"]["train_ids"] == ids[picked].tolist()
    assert metrics["rare_sales"]["test_ids"] == [int(test["Id"][4])]
    a, b = (pd.read_csv(tmp_path / name) for name in ("plain.csv", "submission.csv"))
    outside = a.index != 4
    assert a[outside].equals(b[outside])
    log_y = np.log(train["SalePrice"].to_numpy(dtype=float))
    assert np.log(b["SalePrice"][4]) == pytest.approx(log_y[picked].mean(), abs=1e-6)
    assert [p for i, p in enumerate(priced) if i not in picked] == \
        [p for i, p in enumerate(plain) if i not in picked]
    assert priced[picked[0]] == pytest.approx((log_y[picked[1]] - log_y[picked[0]]) ** 2, rel=1e-4)


def test_houses_lists_every_training_house_and_the_worst_first(pipeline_run, capsys):
    """metrics/houses.csv: each house's out-of-fold prices by the blend and each member, with
    its Id; `house-prices houses` prints the worst, with their features, within 120 columns."""
    import pandas as pd

    from pipeline.search.houses import main as houses_main

    params, tmp_path = pipeline_run
    run_blend(params, tmp_path)
    capsys.readouterr()
    houses = pd.read_csv(tmp_path / "houses.csv")
    train = pd.read_csv(tmp_path / "raw/train.csv")
    assert houses["Id"].tolist() == train["Id"].tolist()
    assert {f"{m}_price" for m in params.ensemble.members} <= set(houses)
    expected = np.log(houses["blend_price"] / houses["price"])
    np.testing.assert_allclose(houses["log_error"], expected, atol=1e-4)
    houses_main(["-n", "3", "--houses", str(tmp_path / "houses.csv"),
                 "--raw", str(tmp_path / "raw/train.csv")])
    out = capsys.readouterr().out.splitlines()
    worst = houses.loc[houses["log_error"].abs().idxmax(), "Id"]
    assert out[2].split()[0] == str(worst) and len(out) == 5
    assert all(len(line) <= 120 for line in out[1:])


def test_each_family_leaves_the_outlier_rows_out_or_not_by_its_own_setting(pipeline_run):
    """members.NAME.exclude_outliers: a family that learns from every row says so in its file,
    the blend accepts it, and a file made under the other setting is refused in one line."""
    params, tmp_path = pipeline_run

    def with_lgbm(exclude):
        members = params.members.replace(lgbm={**params.members.lgbm, "exclude_outliers": exclude})
        return dataclasses.replace(params, members=members)

    keeps, leaves = with_lgbm(False), with_lgbm(True)
    for p in (keeps, leaves):
        run_member("lgbm", p, data_dir=tmp_path / "processed", out_dir=tmp_path / "members")
        plan = np.load(tmp_path / "members/lgbm/predictions.npz")["plan"]
        assert plan[2] == int(p.members.lgbm["exclude_outliers"])
        run_blend(p, tmp_path)
    with pytest.raises(PipelineError, match="member lgbm was trained on another fold plan"):
        run_blend(keeps, tmp_path)  # the file on disk left them out
