"""Sweep on a tiny space and tiny data: ranking, tables, --apply keeping params.yaml's comments."""


import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import repo_params, train_in

from pipeline.common.errors import PipelineError
from pipeline.config.params import load_params
from pipeline.dataset.matrices import preprocess
from pipeline.search import apply, sweep, tables
from pipeline.search import space as spaces

SPACE = {"sampler": "grid", "rank_by": "cv_rmse",
         "space": {"lr": [0.0001, 0.01], "hidden": [[4], [8, 4]]}}


@pytest.fixture
def tiny(ames_sample, repo_root, tmp_path):
    params = repo_params(folds=3, n_seeds=1, max_epochs=4, patience=2, device="cpu")
    train, test = ames_sample
    preprocess(train, test, params.preprocess).save(tmp_path / "processed")
    params_file = tmp_path / "params.yaml"
    params_file.write_text((repo_root / "params.yaml").read_text())
    return params, tmp_path, params_file


def test_grid_sampler_runs_every_combination_once(tiny):
    params, tmp_path, _ = tiny
    table = sweep.run_sweep(params, SPACE, tmp_path / "processed")
    combos = sorted(zip(table["lr"], table["hidden"], strict=True))
    assert combos == [(0.0001, "[4]"), (0.0001, "[8, 4]"), (0.01, "[4]"), (0.01, "[8, 4]")]


def test_tpe_trials_are_seeded_and_in_range(tiny):
    params, tmp_path, _ = tiny
    spec = {"sampler": "tpe", "trials": 5, "batch": 2, "seed": 3,
            "rank_by": "cv_rmse",
            "space": {"lr": {"log_uniform": [1e-4, 1e-2]}, "batch_size": {"int_uniform": [16, 64]},
                      "activation": ["relu", "gelu"]}}
    first = sweep.run_sweep(params, spec, tmp_path / "processed")
    second = sweep.run_sweep(params, spec, tmp_path / "processed")
    pd.testing.assert_frame_equal(first, second)  # one worker, same seed and batch: same table
    assert first["lr"].between(1e-4, 1e-2).all() and first["batch_size"].between(16, 64).all()
    # drawn floats are trained rounded to 4 significant digits: the config scored is the one
    # --apply writes, and it reads as lr: 0.001554
    assert (first["lr"] == [float(f"{lr:.4g}") for lr in first["lr"]]).all()
    assert first["lr"].nunique() > 1


def test_sweep_ranks_by_cv_and_matches_train_stage(tiny):
    params, tmp_path, _ = tiny
    table = sweep.run_sweep(params, SPACE, tmp_path / "processed")
    assert list(table["rank"]) == [1, 2, 3, 4]
    assert table["cv_rmse"].is_monotonic_increasing
    assert sorted(table["config"]) == [0, 1, 2, 3]
    again = sweep.run_sweep(params, SPACE, tmp_path / "processed")
    pd.testing.assert_frame_equal(table, again)  # same seed -> same ranking and numbers

    # A config scored alone by the train stage's code gives the sweep's number.
    best = tables.best_overrides(table, SPACE)
    one = params.train.__class__(**{**params.train.__dict__, **best})
    metrics = train_in(one, params.ensemble.average, tmp_path)
    assert metrics["cv_rmse"] == pytest.approx(table.loc[0, "cv_rmse"], rel=1e-5)


def test_tables_written(tiny):
    params, tmp_path, _ = tiny
    table = sweep.run_sweep(params, SPACE, tmp_path / "processed")
    csv_path, md_path = tables.write_tables(table, tmp_path / "sweeps", "tiny", "cv_rmse")
    written = pd.read_csv(csv_path)
    assert written["rank"].tolist() == [0, 1, 2, 3, 4]  # rank 0: the baseline, params.yaml's
    assert written.loc[0, "config"] == "params.yaml" and written.loc[0, "lr"] == params.train.lr
    assert written.loc[0, "vs_baseline"] == "(baseline)"
    assert set(written.loc[1:, "vs_baseline"]) <= {"tie", "mixed"} | {
        v for v in written["vs_baseline"] if v.startswith(("better", "worse"))}
    text = md_path.read_text()
    assert "| rank | config | lr | hidden | cv_rmse |" in text and text.count("\n| ") == 6


def test_tables_keep_four_significant_digits():
    assert tables.cell_text(0.0006975) == "0.0006975" and tables.cell_text(0.118687) == "0.1187"
    assert tables.cell_text(3000.0) == "3000" and tables.cell_text("[256, 128]") == "[256, 128]"
    assert tables.cell_text(0.000012, "behind_best") == "+0.00001"


def test_apply_edits_only_intended_keys_and_keeps_comments(tiny):
    _, _, params_file = tiny
    before = params_file.read_text().splitlines()
    apply.apply_to_params(params_file, {"lr": 0.01, "hidden": [8, 4]})
    after = params_file.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(before) == len(after)
    assert [b.split("#")[0].strip() for _, b in changed] == ["hidden: [8, 4]", "lr: 0.01"]
    assert all("#" in b for a, b in changed if "#" in a)  # the comments stay
    params = load_params(params_file)
    assert params.train.lr == 0.01 and params.train.hidden == (8, 4)


@pytest.mark.parametrize(("space", "message"), [
    ({"folds": [3, 5]}, "cannot vary within a sweep"),
    ({"learning_rate": [0.1]}, "is not a train parameter"),
])
def test_bad_space(tmp_path, space, message):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"space": space}))
    with pytest.raises(PipelineError, match=message):
        spaces.load_space(path)


def test_bad_value_in_space_is_a_param_error(tiny):
    params, tmp_path, _ = tiny
    with pytest.raises(PipelineError, match="train.dropout must be < 1"):
        sweep.run_sweep(params, {"sampler": "grid", "space": {"dropout": [0.5, 1.5]}},
                        tmp_path / "processed")


def test_ties_with_the_best_are_marked_paired_over_folds():
    table = pd.DataFrame({"rank": [1, 2, 3, 4]})
    best = [0.10, 0.12, 0.11, 0.13, 0.09]
    folds = [best,
             [0.1002, 0.1201, 0.1101, 0.1301, 0.0901],    # 0.0001 behind on every fold: no tie
             [0.1015, 0.1195, 0.1103, 0.1299, 0.0910],    # 0.0004 behind, but noisy: a tie
             [v + 0.002 for v in best]]                   # consistently behind: no tie
    tables.mark_ties(table, folds)
    assert table["tie_with_best"].tolist() == ["best", "no", "tie", "no"]
    assert table["behind_best"].tolist()[0] == 0.0
    assert table["behind_best"].tolist()[3] == pytest.approx(0.002)


def test_sweep_table_says_which_configs_tie(tiny):
    params, tmp_path, _ = tiny
    spec = {**SPACE, "rank_by": "cv_rmse_no_outliers"}
    table = sweep.run_sweep(params, spec, tmp_path / "processed")
    assert table.loc[0, "tie_with_best"] == "best" and table.loc[0, "behind_best"] == 0.0
    assert (table["behind_best"].diff().dropna() >= -1e-12).all()  # ranked by the same mean
    assert set(table.loc[1:, "tie_with_best"]) <= {"tie", "no"}
    lines = tables.terminal_table(tables.with_baseline(table), spec).splitlines()
    assert all(len(line) <= 120 for line in lines)
    assert lines[0].split() == ["rank", "cv_rmse_no_outliers", "behind_best", "tie", "vs_baseline"]
    assert lines[2].startswith("    lr=") and "e-0" not in "".join(lines)  # no scientific gaps


def test_the_tie_rule_is_the_projects_one_not_a_space_setting(tmp_path):
    """One rule for a tie everywhere (pipeline/scoring/compare.py): a space cannot set its own."""
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"tie_below": 0.001, "trials": 2, "space": {"lr": [0.001]}}))
    with pytest.raises(PipelineError, match="unknown key.s. tie_below"):
        spaces.load_space(path)


def test_sweep_scores_the_blend_dvc_repro_submits_with_the_baseline(small_run):
    """Each trial is scored in the blend with the other members' out-of-fold predictions (what
    `dvc repro` would submit): the baseline (params.yaml's config) gets the blend stage's own CV,
    bit for bit, and a trial of the same config ties it."""
    import json

    root, _ = small_run
    params = load_params(root / "params.yaml")
    spec = {"sampler": "grid", "space": {"lr": [params.train.lr, params.train.lr * 3]}}
    table = sweep.run_sweep(params, spec, root / "data/processed", members_dir=root / "members",
                            raw_train=root / "data/raw/train.csv")
    assert params.ensemble.rare_sales == "comparable"  # the blend prices the partial sales too
    assert spaces.check_space(spec)["rank_by"] == "blend_cv_rmse"  # the default
    blend = json.loads((root / "metrics/blend.json").read_text())
    baseline = table.attrs["baseline"]
    assert baseline["blend_cv_rmse"] == blend["cv_rmse"]
    assert baseline["cv_rmse"] == json.loads((root / "metrics/cv.json").read_text())["cv_rmse"]
    same = table.loc[table["lr"] == params.train.lr].iloc[0]
    assert same["blend_cv_rmse"] == blend["cv_rmse"] and same["vs_baseline"] == "tie"
    assert table["blend_cv_rmse"].is_monotonic_increasing
    with pytest.raises(PipelineError, match="needs the other members' predictions"):
        sweep.run_sweep(params, spec, root / "data/processed", members_dir=root / "nowhere")


def test_a_study_resumed_after_a_member_changed_is_refused(small_run, tmp_path):
    """The blend scores of a study's trials hold the other members' predictions of the time:
    after `dvc repro` changed one (a new members.lgbm setting), resuming would rank old blends
    beside new ones, so the study is refused and left as it was."""
    import shutil

    root, _ = small_run
    params = load_params(root / "params.yaml")
    members = tmp_path / "members"
    shutil.copytree(root / "members", members)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    spec = {"sampler": "grid", "trials": 1, "space": {"lr": [params.train.lr]}}
    sweep.run_sweep(params, spec, root / "data/processed", storage, "s", members_dir=members)
    lgbm = dict(np.load(members / "lgbm/predictions.npz"))
    np.savez(members / "lgbm/predictions.npz", **{**lgbm, "oof": lgbm["oof"] + 0.01})
    with pytest.raises(PipelineError, match="another space, rank_by, params or inputs"):
        sweep.run_sweep(params, spec, root / "data/processed", storage, "s", members_dir=members)
    import optuna

    assert [t.state.name for t in optuna.load_study(study_name="s", storage=storage).trials] \
        == ["COMPLETE"]


def test_a_sweep_says_when_a_batch_starts_and_how_it_trains(tiny, monkeypatch, capsys):
    """Where no progress bar shows (a log file, a pipe), a sweep prints a line as each batch
    starts and, while it trains, the epoch, the models still training and the time left."""
    from pipeline.members.mlp.fit import EpochLines

    params, tmp_path, _ = tiny
    monkeypatch.setattr(EpochLines, "PROGRESS_EVERY_S", 0.0)
    sweep.run_sweep(params, {**SPACE, "batch": 2}, tmp_path / "processed")
    said = capsys.readouterr().err
    assert "sweep: training trial(s) 0, 1 as one batch (0/4 done in the study)" in said
    assert "sweep: training trial(s) 2, 3 as one batch (2/4 done in the study)" in said
    assert "epoch 1/4, " in said and " models still training" in said and "min left" in said
    assert "likely ~" in said and "if no model gains again, at most ~" in said


def test_apply_says_how_to_undo_it_in_the_params_file_it_wrote(tiny, capsys):
    """--apply of a config that is no win names the file it edited (--params), not params.yaml."""
    _, tmp_path, params_file = tiny
    raw = yaml.safe_load(params_file.read_text())
    raw["train"].update(folds=3, n_seeds=1, max_epochs=4, patience=2, device="cpu")
    mine = tmp_path / "my params.yaml"
    mine.write_text(yaml.safe_dump(raw))
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"sampler": "grid", "rank_by": "cv_rmse",
                                     "space": {"lr": [raw["train"]["lr"]]}}))
    sweep.main([str(space), "--params", str(mine), "--data", str(tmp_path / "processed"),
                "--out", str(tmp_path / "results"), "--members", str(tmp_path / "none"), "--apply"])
    out = capsys.readouterr().out
    assert f"wrote the best config into {mine}" in out
    assert out.rstrip().endswith(f"undo it with git checkout -- '{mine}'")  # quoted: a space


def test_the_terminal_table_names_the_trial_a_rerun_replaced():
    shown = pd.DataFrame({"rank": [1, 2], "config": [3, 1], "lr": [0.001, 0.002],
                          "cv_rmse": [0.11, 0.12], "behind_best": [0.0, 0.01],
                          "tie_with_best": ["best", "no"], "vs_baseline": ["tie", "tie"],
                          "rerun_of": [0.0, float("nan")]})
    lines = tables.terminal_table(shown, {"rank_by": "cv_rmse", "space": {"lr": [0.001, 0.002]}})
    assert "trial 3 re-runs trial 0, whose worker stopped" in lines
    assert lines.count("re-runs") == 1
