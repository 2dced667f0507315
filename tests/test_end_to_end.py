"""`dvc repro` in a fresh copy of the repository, as a user runs it (tiny epoch count).

One `dvc repro` (the module fixture) serves the default run; the tests that run dvc again in
full are marked slow."""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))),
                None)

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid",
       "-c", "commit.gpgsign=false"]


def stage_env(cwd) -> dict:
    """The environment a user's shell gives dvc: this interpreter's bin first on PATH (dvc.yaml's
    `python -m ...` must be the venv's python, whatever shell ran the tests)."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(cwd), "PATH": path}


def run_any(cmd, cwd, timeout=600) -> subprocess.CompletedProcess:
    """Run a command in its own process group; past `timeout` the whole group (dvc and the stage
    it started) is killed, so a slow machine leaves no process behind."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=stage_env(cwd), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"{cmd} ran past {timeout} s; its process group was killed") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run(cmd, cwd):
    proc = run_any(cmd, cwd)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    """A git repo holding this checkout's files with tiny params (every family shrunk), after
    one `dvc repro`; each test gets its own copy (`project`), so none depends on another."""
    root = Path(__file__).resolve().parents[1]
    dest = tmp_path_factory.mktemp("clone") / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = root / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for stale in ("dvc.lock", "metrics/cv.json"):
        (dest / stale).unlink(missing_ok=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["train"].update(max_epochs=3, n_seeds=1, hidden=[16], device="cpu", folds=3)
    params["members"]["lgbm"].update(n_estimators=50)
    params["download"]["sources"] = ["data/bundled"]
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run([*GIT, "init", "-q", "-b", "main"], dest)
    run([*GIT, "add", "-A"], dest)
    run([*GIT, "commit", "-qm", "copy"], dest)
    first = run([sys.executable, "-m", "dvc", "repro"], dest)
    (dest / "first_repro.log").write_text(first.stdout)
    return dest


@pytest.fixture
def project(reproduced, tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(reproduced, copy, symlinks=True)
    return copy


def test_repro_writes_valid_submission_then_does_nothing(project):
    assert "Running stage 'blend'" in (project / "first_repro.log").read_text()
    sub = pd.read_csv(project / "submission.csv")
    test = pd.read_csv(project / "data/bundled/kaggle_house_pred_test.csv")
    assert list(sub.columns) == ["Id", "SalePrice"]
    assert sub["Id"].tolist() == test["Id"].tolist()
    assert (sub["SalePrice"] > 10_000).all() and (sub["SalePrice"] < 2_000_000).all()
    metrics = json.loads((project / "metrics/cv.json").read_text())
    assert 0 < metrics["cv_rmse"] < 1
    assert len(list((project / "models").glob("*.pt"))) == 3 * 3  # folds x encodings
    assert (project / "dvclive/plots/metrics/scored_fold/fold0_view0_seed0.tsv").is_file()
    assert (project / "dvclive/plots/custom/learning_curve_fold2.json").is_file()
    assert set(metrics) == {"cv_rmse", "cv_rmse_std", "cv_rmse_no_outliers",
                            "cv_rmse_no_outliers_std", "oof_rmse", "oof_rmse_no_outliers",
                            "best_epoch_mean"}  # small and flat: readable in dvc exp show
    assert json.loads((project / "models/models.json").read_text())["models"][0] == "fold0_view0_seed0.pt"
    blended = json.loads((project / "metrics/blend.json").read_text())
    assert blended["weights"] == pytest.approx({"mlp": 1 / 3, "lgbm": 1 / 3, "lasso_svr": 1 / 3},
                                               abs=1e-6)  # ensemble.blend: equal
    assert 0 < blended["cv_rmse_no_outliers"] < 1
    shown = run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], project).stdout
    for path in ("metrics/blend.json", "metrics/cv.json",
                 "members/lgbm/cv.json", "members/lasso_svr/cv.json"):
        assert path in shown
    rendered = run([sys.executable, "-m", "dvc", "plots", "show", "--json"], project).stdout
    for name in ("learning_curve_fold0", "predicted_vs_actual", "importance", "price_bands",
                 "member_residuals"):
        assert name in rendered

    compared = run([sys.executable, "-m", "pipeline.search.experiments"], project).stdout.splitlines()
    assert compared[0].startswith("experiment") and all(len(line) <= 120 for line in compared)
    rows = {line.split()[0]: line for line in compared[1:] if not line.startswith(" ")}
    assert "(baseline)" in rows["main"]
    assert set(json.loads((project / "metrics/blend_folds.json").read_text())) == {
        "fold_rmse", "fold_rmse_no_outliers", "house_squared_error", "outlier_rows"}  # the rule's
    assert rows["workspace"].split()[1] == f"{blended['oof_rmse']:.5f}"  # pooled over houses

    lock = (project / "dvc.lock").read_bytes()
    again = run([sys.executable, "-m", "dvc", "repro"], project)
    # nothing changed, so nothing runs, dvc.lock stays as it was and `dvc status -q` says so
    ran = [line for line in again.stdout.splitlines() if line.startswith("Running stage")]
    assert ran == [], again.stdout
    assert (project / "dvc.lock").read_bytes() == lock
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "-q"], cwd=project,
                            env=stage_env(project))
    assert status.returncode == 0


def test_submit_dry_run_on_repro_output(project):
    warned = subprocess.run([sys.executable, "-m", "pipeline.kaggle.submit", "--dry-run"], cwd=project,
                            capture_output=True, text=True, env=stage_env(project))
    assert warned.returncode == 0  # dvc repro rewrote dvc.lock: a real submit would refuse
    assert "a real submit would refuse: uncommitted changes to dvc.lock" in warned.stdout
    proc = run([sys.executable, "-m", "pipeline.kaggle.submit", "--dry-run", "--allow-dirty"], project)
    assert "submission.csv is valid; would send to house-prices-advanced-regression-techniques" \
        in proc.stdout


@pytest.mark.slow
def test_rerun_is_byte_identical(project):
    paths = ["metrics/cv.json", "submission.csv", "metrics/oof.csv", "metrics/importance.csv",
             "metrics/cv_folds.json", "models/models.json", "metrics/blend.json",
             "members/lgbm/predictions.npz", "members/lgbm/cv.json",
             "members/lasso_svr/predictions.npz",
             "members/mlp/predictions.npz",
             *(str(p.relative_to(project)) for p in sorted((project / "models").glob("*.pt")))]
    first = {p: (project / p).read_bytes() for p in paths}
    run([sys.executable, "-m", "dvc", "repro", "-f", "-s", "train", "member_lgbm",
         "member_lasso_svr", "blend"], project)
    for path, content in first.items():
        assert (project / path).read_bytes() == content, f"{path} changed between identical runs"


@pytest.mark.slow
def test_training_param_change_reruns_only_train_and_the_blend(project):
    proc = run([sys.executable, "-m", "dvc", "exp", "run", "-S", "train.lr=0.003"], project)
    assert "Running stage 'train'" in proc.stdout
    assert "Running stage 'download'" not in proc.stdout
    assert "Running stage 'preprocess'" not in proc.stdout
    assert "Running stage 'member_lgbm'" not in proc.stdout  # not its parameter: not re-run
    assert "Running stage 'blend'" in proc.stdout
    shown = run([sys.executable, "-m", "dvc", "exp", "show", "--json"], project).stdout
    assert "cv_rmse" in shown and "0.003" in shown


@pytest.mark.slow
def test_queued_sweep_experiment_runs(project):
    from pipeline.search.apply import queue_experiments

    table = pd.DataFrame({"rank": [1, 2], "config": [1, 0], "lr": [0.002, 0.004],
                          "hidden": ["[8, 4]", "[16]"], "cv_rmse": [0.2, 0.3]})
    spec = {"space": {"lr": [0.002, 0.004], "hidden": [[16], [8, 4]]}}
    commands = queue_experiments(table, spec, 1, cwd=project, name="space")
    assert commands == [["dvc", "exp", "run", "--queue", "-n", "space-rank1", "-S", "train.lr=0.002",
                         "-S", "train.hidden=[8,4]"]]
    run([sys.executable, "-m", "dvc", "exp", "run", "--run-all"], project)
    shown = json.loads(run([sys.executable, "-m", "dvc", "exp", "show", "--json"], project).stdout)
    text = json.dumps(shown)
    assert '"lr": 0.002' in text and '"hidden": [8, 4]' in text and "space-rank1" in text
    # The README's `dvc exp show` line: the submission's CV first, and it fits 120 columns.
    readme = (project / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("dvc exp show --only-changed"))
    env = {**stage_env(project), "COLUMNS": "300"}
    shown = subprocess.run([sys.executable, "-m", *shlex.split(line), "--no-pager"], cwd=project,
                           capture_output=True, text=True, env=env, check=True).stdout
    assert max(map(len, shown.splitlines())) <= 120, shown
    header = next(x for x in shown.splitlines() if "Experiment" in x).split()
    assert header[1] == "metrics/blend.json:cv_rmse" and "train.lr" in header


@pytest.mark.parametrize(("change", "message"), [
    ("train.activation=swish", "train.activation must be one of relu, gelu, tanh, silu, got 'swish'"),
    # DVC deems 1 == true unchanged and would skip every stage: the check runs all the same
    ("train.exclude_outliers=1", "train.exclude_outliers must be true or false, got 1")])
def test_bad_param_stops_before_any_output_is_removed(project, change, message):
    outputs = ["metrics/cv.json", "metrics/oof.csv", "submission.csv", "models/models.json"]
    before = {p: (project / p).read_bytes() for p in outputs}
    proc = run_any([sys.executable, "-m", "dvc", "exp", "run", "-S", change], project)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    assert "Running stage 'train'" not in proc.stdout
    for path, content in before.items():
        assert (project / path).read_bytes() == content, f"{path} was touched"
    run([*GIT, "checkout", "params.yaml"], project)


def test_a_blend_that_fails_at_run_time_leaves_the_submission(project):
    """`dvc repro -s blend` with a member file truncated: one line, and DVC (persist: true) has
    not removed the previous submission and metrics first."""
    kept = ["submission.csv", "metrics/blend.json", "metrics/blend_members.csv"]
    before = {p: (project / p).read_bytes() for p in kept}
    member = project / "members/lgbm/predictions.npz"
    good = member.read_bytes()
    member.chmod(0o644)  # DVC's cache may have left it read-only
    member.write_bytes(good[:200])
    proc = run_any([sys.executable, "-m", "dvc", "repro", "-s", "blend"], project)
    assert proc.returncode != 0
    assert "error: members/lgbm/predictions.npz: not a readable .npz archive" in proc.stderr
    for path, content in before.items():
        assert (project / path).read_bytes() == content, f"{path} was removed or changed"
    member.write_bytes(good)
    again = run([sys.executable, "-m", "dvc", "repro", "-s", "blend"], project)
    assert "Running stage 'blend'" not in again.stdout  # back as it was: nothing to do


@pytest.mark.slow
def test_a_train_stage_that_fails_at_run_time_changes_none_of_its_outputs(project):
    """An accepted lr whose models learn nothing: one line, and DVC (persist: true) has not
    removed the models, the member predictions or the git-only metrics first."""
    kept = ["metrics/cv.json", "metrics/cv_folds.json", "metrics/oof.csv", "models/models.json",
            "members/mlp/predictions.npz", "submission.csv"]
    before = {p: (project / p).read_bytes() for p in kept}
    params = project / "params.yaml"
    original = params.read_text()
    changed = yaml.safe_load(original)
    changed["train"]["lr"] = 1.0  # within the check's bound; these models cannot learn with it
    params.write_text(yaml.safe_dump(changed, sort_keys=False))
    proc = run_any([sys.executable, "-m", "dvc", "repro"], project)
    assert proc.returncode != 0
    assert "error: train: " in proc.stderr and "models failed" in proc.stderr
    for path, content in before.items():
        assert (project / path).read_bytes() == content, f"{path} was removed or changed"
    params.write_text(original)


def test_experiments_marks_a_stale_workspace_and_names_the_next_step(project):
    fresh = run([sys.executable, "-m", "pipeline.search.experiments"], project).stdout.splitlines()
    assert any(line.startswith("workspace ") for line in fresh)
    assert any(line.startswith("next: confirm a gain on other fold seeds") for line in fresh)
    assert not any("stale" in line for line in fresh)
    params = project / "params.yaml"
    changed = yaml.safe_load(params.read_text())
    changed["train"]["dropout"] = 0.5  # as after `sweep --apply` or a hand edit
    params.write_text(yaml.safe_dump(changed, sort_keys=False))
    shown = run([sys.executable, "-m", "pipeline.search.experiments"], project).stdout
    assert "workspace (stale)" in shown
    said = " ".join(shown.split())
    assert "workspace: its outputs are stale (" in said and "; run dvc repro" in said
    assert all(len(line) <= 120 for line in shown.splitlines())


def test_editing_a_module_a_stage_imports_reruns_that_stage(project):
    """The DAG's deps are the code each stage runs (tests/test_dag.py): an edit of the members'
    prediction files (pipeline/scoring/predictions.py) makes train, the member stages and the
    blend stale, not check_params, download or preprocess."""
    with open(project / "pipeline/scoring/predictions.py", "a") as fh:
        fh.write("\n# an edit\n")
    status = run([sys.executable, "-m", "dvc", "status", "--json"], project).stdout
    stale = set(__import__("json").loads(status))
    assert {"train", "member_lgbm", "member_lasso_svr", "blend"} <= stale
    assert not stale & {"check_params", "download", "preprocess"}


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium; .ci/run "
                                             "installs it)")
def test_plots_render_with_no_network_in_a_headless_browser(project, tmp_path):
    """`dvc plots show` writes a page that carries its renderer (.dvc/plots/offline.html): in a
    browser cut off from every network each chart is drawn, and the screenshot has ink in every
    row of charts."""
    import numpy as np
    from PIL import Image

    run([sys.executable, "-m", "dvc", "plots", "show"], project)
    page = project / "dvc_plots/index.html"
    html = page.read_text()
    assert "<script src=" not in html and "cdn.jsdelivr" not in html
    offline = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
               "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=20000"]
    dom = subprocess.run([*offline, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=180).stdout
    charts = html.count("vegaEmbed(")
    assert charts >= 10 and dom.count('<canvas width="') == charts  # every chart drawn
    shot = tmp_path / "plots.png"
    subprocess.run([*offline, "--window-size=1300,2000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=180, check=True)
    ink = np.asarray(Image.open(shot).convert("L")) < 200
    rows = np.array_split(ink[:1750], 5)  # two charts a row, about 350 pixels each
    assert all(band.mean() > 0.01 for band in rows), [round(b.mean(), 4) for b in rows]
