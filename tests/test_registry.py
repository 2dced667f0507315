"""Adding a model family is one module in pipeline/members/, its params.yaml section and its
dvc.yaml stage (docs/architecture.md): a toy family added that way goes through check_params,
its member stage and the blend, and nothing else in the code names it."""

import json
import shutil
import sys

import pytest
import yaml
from conftest import ROOT

import pipeline.members
from pipeline.common.errors import PipelineError
from pipeline.members import families

TOY = '''"""A toy family: a quantile of the training rows' log prices (a stand-in for a real one)."""

from sklearn.dummy import DummyRegressor

from pipeline.config.members import EXCLUDE_OUTLIERS, Setting

SETTINGS = {"quantile": Setting(float, low=0, low_open=False, high=1),
            "exclude_outliers": EXCLUDE_OUTLIERS}


def make_model(settings, train=None):
    return DummyRegressor(strategy="quantile", quantile=settings["quantile"])
'''


@pytest.fixture
def toy_family(tmp_path, monkeypatch):
    """pipeline/members/ with toy.py beside the real families (a second folder on the package's
    path, so the repository is not written)."""
    folder = tmp_path / "families"
    folder.mkdir()
    (folder / "toy.py").write_text(TOY)
    monkeypatch.setattr(pipeline.members, "__path__", [*pipeline.members.__path__, str(folder)])
    yield
    sys.modules.pop("pipeline.members.toy", None)


def run_command(cmd: str) -> None:
    """A dvc.yaml command line, run by its CLI in this process."""
    module, *argv = cmd.split("python -m ", 1)[1].split()
    __import__(module, fromlist=["main"]).main(argv)


def test_a_new_family_is_one_module_its_section_and_its_stage(toy_family, small_run, tmp_path,
                                                              monkeypatch, capsys):
    assert "toy" in families()
    built, _ = small_run
    project = tmp_path / "project"
    shutil.copytree(built, project)
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["members"]["toy"] = {"quantile": 0.5, "exclude_outliers": True}  # its section
    raw["ensemble"]["members"] = [*raw["ensemble"]["members"], "toy"]
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    member_stage = stages["member_lgbm"]["cmd"].replace(" lgbm ", " toy ")  # its stage
    monkeypatch.chdir(project)

    run_command(stages["check_params"]["cmd"])
    run_command(member_stage)
    run_command(stages["blend"]["cmd"])

    assert "member toy:" in capsys.readouterr().out
    cv = json.loads((project / "members/toy/cv.json").read_text())
    blend = json.loads((project / "metrics/blend.json").read_text())
    assert set(blend["weights"]) == {"mlp", "lgbm", "lasso_svr", "toy"}
    assert blend["members"]["toy"]["cv_rmse"] == pytest.approx(cv["cv_rmse"], abs=1e-12)
    assert cv["cv_rmse"] > 0.3  # a median price for every house: far worse than a model
    assert len((project / "submission.csv").read_text().splitlines()) == 1 + 1459

    raw["members"]["toy"]["quantile"] = 1.5  # its own settings are checked by check_params
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as stop:
        run_command(stages["check_params"]["cmd"])
    assert stop.value.code != 0
    assert "members.toy.quantile must be <= 1" in capsys.readouterr().err


def test_a_section_without_its_family_or_a_family_without_its_section_is_refused(toy_family):
    from pipeline.config.params import load_params
    from pipeline.members import check_settings

    params = load_params(ROOT / "params.yaml")  # has no members.toy
    with pytest.raises(PipelineError, match="members.toy is missing; add the section of the "
                                            r"family's settings \(quantile, exclude_outliers\)"):
        check_settings(params.members)
    check_settings(params.members, ("lgbm",))  # the member stage checks its own family


def test_the_registry_names_no_family_in_code():
    """The families are the modules of pipeline/members/; no other module lists them."""
    names = set(families())
    assert names == {"lgbm", "lasso_svr"}
    for path in (ROOT / "pipeline").rglob("*.py"):
        if path.parent.name == "members" and path.stem in names:
            continue
        text = path.read_text()
        for name in names:
            assert f'"{name}"' not in text and f"'{name}'" not in text, \
                f"{path.relative_to(ROOT)} names the family {name!r}"
