"""The members section: each model family's settings, checked against the `Setting`s its own
module declares (pipeline/members/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.config.checks import check_bool, check_number, fail


@dataclass(frozen=True)
class Setting:
    """One setting of a model family (its module's SETTINGS): its type and range (low < value
    by default; <= with low_open=False; value <= high when high is given)."""

    kind: type = float
    low: float = 0
    low_open: bool = True
    high: float | None = None

    def __call__(self, text: str):
        return self.kind(text)


# Counts have a stated maximum, so that every accepted value runs to its end (a billion trees or
# a hundred thousand threads would not).
COUNT = Setting(int, low=1, low_open=False, high=1_000_000)  # an iteration or tree count
THREADS = Setting(int, low=1, low_open=False, high=256)
SEED = Setting(int, low=0, low_open=False, high=2**31 - 1)
FRACTION = Setting(float, high=1)  # a share of rows or columns, in (0, 1]
# Whether the family's folds leave the outlier rows (preprocess.outlier_*) out of training:
# an option that must win by the rule, member by member (docs/model-search.md).
EXCLUDE_OUTLIERS = Setting(bool)


def check_section(key: str, value: Any, expected: dict[str, Setting]) -> None:
    """A family's section has exactly the settings `expected` names, each in its range."""
    if not isinstance(value, dict):
        fail(key, "must be a mapping of settings")
    unknown = sorted(set(value) - set(expected))
    if unknown:
        fail(f"{key}.{unknown[0]}", f"is not a known setting (known: {', '.join(sorted(expected))})")
    missing = sorted(set(expected) - set(value))
    if missing:
        fail(f"{key}.{missing[0]}", "is missing")
    for name, setting in expected.items():
        if setting.kind is bool:
            check_bool(f"{key}.{name}", value[name])
        else:
            check_number(f"{key}.{name}", value[name], low=setting.low, low_open=setting.low_open,
                    high=setting.high, integer=setting.kind is int)


class MembersParams:
    """The members section: one mapping of settings per model family besides the MLP (the train
    section), `params.members.NAME`. Which families exist and what each takes is the families'
    own business (pipeline/members/, each module's SETTINGS): pipeline.members.check_settings
    checks the sections against them (the check_params stage and the member stage run it)."""

    def __init__(self, **sections: dict):
        for name, value in sections.items():
            if not isinstance(value, dict):
                fail(f"members.{name}", "must be a mapping of settings")
        object.__setattr__(self, "sections", dict(sections))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.sections)

    def __getattr__(self, name: str) -> dict:
        try:
            return object.__getattribute__(self, "sections")[name]
        except KeyError:
            raise AttributeError(f"params.yaml has no members.{name} section") from None

    def __setattr__(self, name, value):
        raise AttributeError("MembersParams is read-only; use replace()")

    def replace(self, **sections: dict) -> MembersParams:
        return MembersParams(**{**self.sections, **sections})

    def __eq__(self, other) -> bool:
        return isinstance(other, MembersParams) and self.sections == other.sections

    def __repr__(self) -> str:
        return f"MembersParams({self.sections!r})"
