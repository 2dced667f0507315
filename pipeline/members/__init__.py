"""Model families of the blend: one module each in this folder, found by name.

A family is a module here whose name does not start with "_" (`_lasso.py` is shared by two
families; `mlp/` is the train stage's MLP, not a family of this registry). Each has
`SETTINGS` (the keys its `members.NAME` section of params.yaml takes, each a config `Setting`
with its type and range) and `make_model(settings, train) -> estimator`: an unfitted
scikit-learn estimator that the member stage clones for each fold (fit(x, y) / predict(x) on
the preprocessed matrix and log price). `train` (params.yaml's train section) gives
train.lasso_*, the project's one Lasso setting, to the families that fit one. A family whose
fits use several cores says how many in a `threads` setting. Adding a family:
docs/architecture.md.
"""

from __future__ import annotations

import importlib
import pkgutil

from pipeline.common.errors import PipelineError
from pipeline.config.members import MembersParams, check_section


def families() -> tuple[str, ...]:
    """The family modules in this folder, by name (none is imported)."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)
                        if not m.ispkg and not m.name.startswith("_")))


def family(name: str):
    """The module of model family `name`."""
    if name not in families():
        raise PipelineError(f"unknown model family {name!r} (known: {', '.join(families())}); "
                            f"a family is a module in pipeline/members/")
    return importlib.import_module(f"{__name__}.{name}")


def settings_of(name: str) -> dict:
    return family(name).SETTINGS


def check_settings(members: MembersParams, names: tuple[str, ...] | None = None) -> None:
    """Every family has its members.NAME section, with exactly its settings, each in range
    (`names`: just these families, as the member stage checks its own)."""
    known = families()
    for name in members.names:
        if name not in known:
            raise PipelineError(f"params.yaml: members.{name} is not a model family (known: "
                                f"{', '.join(known)}; a family is a module in pipeline/members/)")
    for name in known if names is None else names:
        if name not in members.names:
            raise PipelineError(f"params.yaml: members.{name} is missing; add the section of "
                                f"the family's settings ({', '.join(settings_of(name))})")
        check_section(f"members.{name}", getattr(members, name), settings_of(name))


def model_settings(settings: dict) -> dict:
    """A family's settings as its estimator takes them: the fold plan's own key left out."""
    return {k: v for k, v in settings.items() if k != "exclude_outliers"}
