"""Every bench script is exercised: each name it imports exists (a moved function fails here,
not in the middle of a nested run), each script imports, and each runs end to end on a tiny
setting (the tests marked slow) in a copy of the repository whose params.yaml is shrunk."""

import ast
import importlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT

BENCH = ROOT / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py"))
OPTIONAL = {"xgboost", "autogluon", "catboost"}  # the `stacked`, `anchors`, `candidates` extras


def imported_names(path):
    """(line, module, name) of every `from X import Y` anywhere in the file (functions too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                yield node.lineno, node.module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None


@pytest.fixture(autouse=True)
def bench_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_name_a_bench_script_imports_exists(script):
    missing = []
    for line, module, name in imported_names(script):
        if module.split(".")[0] in OPTIONAL and importlib.util.find_spec(module.split(".")[0]) is None:
            continue
        loaded = importlib.import_module(module)
        if name is not None and not hasattr(loaded, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{script.name}:{line}: {module} has no {name}")
    assert not missing, "; ".join(missing)
    assert importlib.import_module(script.stem).__doc__  # imports, and says what it measures


TINY = {"train": {"max_epochs": 3, "patience": 0, "lasso_max_iter": 2000},
        "members": {"lgbm": {"n_estimators": 20}}}


@pytest.fixture
def tiny_repo(tmp_path):
    """bench/, the bundled data, the sweep spaces and a shrunk params.yaml: the scripts' ROOT is
    this copy."""
    shutil.copytree(BENCH, tmp_path / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "data/bundled", tmp_path / "data/bundled")
    shutil.copytree(ROOT / "sweeps", tmp_path / "sweeps", ignore=shutil.ignore_patterns("results"))
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in TINY.items():
        for key, value in values.items():
            if isinstance(value, dict):
                raw[section][key].update(value)
            else:
                raw[section][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "variants.yaml").write_text("wider: {train.hidden: [16]}\n")
    return tmp_path


def bench(repo, *args, timeout=300):
    proc = subprocess.run([sys.executable, str(repo / "bench" / args[0]), *map(str, args[1:])],
                          cwd=repo, capture_output=True, text=True, timeout=timeout,
                          env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


RUNS = {
    "sweep_throughput.py": ["--configs", 2, "--epochs", 2, "--device", "cpu"],
    "profile_trainer.py": ["--models", 2, "--epochs", 1, "--device", "cpu"],
    "trainer_throughput.py": ["--sizes", "2", "--epochs", 1, "--loop-models", 1, "--device", "cpu"],
    "train_on_devices.py": ["--devices", "cpu", "--repeats", 1],
    "option_cost.py": ["variants.yaml", "--repeats", 1, "--device", "cpu"],
    "mlp_options.py": ["variants.yaml", "--fold-seeds", 400, "--device", "cpu"],
    "blend_quality.py": ["--fold-seeds", 0, "--device", "cpu"],
    "member_grid.py": ["lasso_svr", "power=1", "--fold-seeds", 400],
    "model_quality.py": ["--repeats", 1, "--device", "cpu"],
    "study_overhead.py": ["--trials", 4, "--batch", 2, "--storages", "memory", "sqlite"],
    "portable_bits.py": ["--epochs", 1],
}
# scripts run end to end by a test of their own below
OWN_TESTS = {"nested_cv.py", "autogluon_peer.py", "stacked_regressions.py"}


def test_every_bench_script_runs_in_a_test():
    """A new script gets a tiny setting in RUNS (or a test of its own), so a broken one fails CI."""
    scripts = {p.name for p in SCRIPTS} - {"common.py", "candidates.py"}  # shared pieces
    assert scripts - set(RUNS) - OWN_TESTS == set()
    assert scripts >= OWN_TESTS
    source = Path(__file__).read_text()
    for name in OWN_TESTS:
        assert source.count(Path(name).stem) > 1, f"{name} has no test of its own"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(RUNS))
def test_each_bench_script_runs_on_a_tiny_setting(tiny_repo, script):
    out = bench(tiny_repo, script, *RUNS[script])
    # every script prints a markdown table; the profiler prints torch's own
    assert ("Self CPU time total" if script == "profile_trainer.py" else "|---") in out


@pytest.mark.slow
def test_nested_cv_runs_and_reports_with_its_peers(tiny_repo, monkeypatch):
    out = tiny_repo / "nested"
    bench(tiny_repo, "nested_cv.py", "run", "--out", out, "--fold-seeds", 1000, "--limit", 1,
          "--quick", "--mlp-configs", 1, "--workers", 1, "--device", "cpu")
    assert len(list(out.glob("s1000_f0_*.npz"))) == 3  # mlp, lgbm, lasso_svr
    bench(tiny_repo, "nested_cv.py", "run", "--out", out, "--fold-seeds", 1000, "--limit", 1,
          "--parts", "lasso", "svr", "--workers", 1)  # the previous default's removed members
    assert len(list(out.glob("s1000_f0_*.npz"))) == 5
    peer = tiny_repo / "peer"
    peer.mkdir()
    y = np.log(np.loadtxt(ROOT / "data/bundled/kaggle_house_pred_train.csv", delimiter=",",
                          skiprows=1, usecols=[-1]))
    np.save(peer / "autogluon_oof_fs1000.npy", y + 0.1)  # a stand-in peer, off by 0.1 everywhere
    report = bench(tiny_repo, "nested_cv.py", "report", out, "--peer", f"t60={peer}",
                   "--against", "AutoGluon best_quality (t60)")
    assert "every setting searched inside" in report and "AutoGluon best_quality (t60)" in report
    row = next(line for line in report.splitlines() if "AutoGluon" in line)
    assert "published defaults" in row and "0.1000" in row  # RMSE of a constant 0.1 error
    assert "decides nothing" in report  # the fixed defaults: chosen on these houses
    previous = next(line for line in report.splitlines() if "previous default" in line)
    assert "mlp + lasso + lgbm + svr + lasso_svr, fitted weights" in previous
    assert "optimistic" in previous and "with lasso" not in report  # a row, not a candidate
    first = report.split("\n## ")[0].splitlines()
    gates = [line for line in first if line.startswith("| a gate: houses above 4000 sq ft")]
    assert len(gates) == 2 and all("decides nothing" in g for g in gates)
    region = [line for line in first if "+ rare sales priced by" in line]
    assert len(region) == 2 and all("searched inside" in r for r in region)  # honest rows
    assert "## The houses above the region's living area" in report  # each one's price
    against = report.split("## The same rows against AutoGluon best_quality (t60)")[1]
    assert "| AutoGluon best_quality (t60) | published defaults | 0.1000 |" in against
    assert "(baseline)" in against.split("\n## ")[0]


def test_autogluon_peer_uses_nested_cv_outer_folds_and_writes_one_prediction_per_house(
        tmp_path, monkeypatch):
    import autogluon_peer
    import nested_cv

    assert np.array_equal(autogluon_peer.outer_folds(1000), nested_cv.outer_folds(1000))
    seen = []

    def fake_fit(train, held, time_limit, seed):
        seen.append((len(train), set(held["Id"])))
        assert train["SalePrice"].notna().all() and time_limit == 7
        return np.full(len(held), 12.0), ["WeightedEnsemble_L2"]

    monkeypatch.setattr(autogluon_peer, "fit_predict", fake_fit)
    report = autogluon_peer.run(tmp_path, 1000, 7)
    oof = np.load(tmp_path / "autogluon_oof_fs1000.npy")
    assert oof.shape == (1460,) and np.all(oof == 12.0)
    assert sum(n for n, _ in seen) == 4 * 1460 and len(seen) == 5  # every row kept in training
    assert json.loads((tmp_path / "autogluon_fs1000.json").read_text())["time_limit_s"] == 7
    assert len(report["folds"]) == 5


@pytest.mark.slow
def test_stacked_recipe_runs_on_its_fold_plan(monkeypatch):
    """The recipe's code path on its fold plan with its boosted models shrunk (xgboost, its
    `stacked` extra, stood in for by LightGBM where it is not installed)."""
    import lightgbm
    import stacked_regressions as sr

    if importlib.util.find_spec("xgboost") is None:
        monkeypatch.setitem(sys.modules, "xgboost", type(sys)("xgboost"))
        sys.modules["xgboost"].XGBRegressor = lambda **kw: lightgbm.LGBMRegressor(verbose=-1)
    published = sr.base_models

    def shrunk(seed):
        models = published(seed)
        for name in ("gboost", "xgb", "lgb"):
            models[name].set_params(n_estimators=10)
        return models

    monkeypatch.setattr(sr, "base_models", shrunk)
    oof, y, outlier, _ = sr.oof_log_price(0)
    assert oof.shape == y.shape and np.isfinite(oof).all()
    assert np.sqrt(np.mean((oof - y)[~outlier] ** 2)) < 0.3
