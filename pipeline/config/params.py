"""Typed, validated view of params.yaml: a bad parameter fails early with one clear line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.common import paths
from pipeline.common.errors import PipelineError
from pipeline.config.checks import (
    MAX_SOURCE_LENGTH,
    check_choice,
    check_names,
    check_number,
    fail,
)
from pipeline.config.members import MembersParams
from pipeline.config.preprocess import PreprocessParams
from pipeline.config.train import TrainParams


def _section(raw: dict, name: str, cls: type) -> Any:
    """Build section `cls` from raw[name]; a dataclass rejects unknown and missing keys by name
    (the members section takes each family's, checked against the families)."""
    data = raw.get(name)
    if not isinstance(data, dict):
        raise PipelineError(f"params.yaml: section '{name}' is missing or not a mapping")
    if not dataclasses.is_dataclass(cls):
        return cls(**data)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        fail(f"{name}.{unknown[0]}", f"is not a known parameter (known: {', '.join(sorted(names))})")
    missing = sorted(names - set(data))
    if missing:
        fail(f"{name}.{missing[0]}", "is missing")
    return cls(**data)


@dataclass(frozen=True)
class FileSpec:
    name: str
    sha1: str


@dataclass(frozen=True)
class DownloadParams:
    """Where the two competition files come from, and what they must hash to."""

    sources: tuple[str, ...]
    files: dict[str, FileSpec]
    timeout_s: float
    max_file_mb: float
    deadline_s: float = 120.0

    def __post_init__(self):
        object.__setattr__(self, "sources", check_names("download.sources", self.sources))
        if not self.sources:
            fail("download.sources", "must list at least one source")
        for i, source in enumerate(self.sources):
            if len(source) > MAX_SOURCE_LENGTH:
                fail(f"download.sources[{i}]", f"is {len(source):,} characters long (at most "
                      f"{MAX_SOURCE_LENGTH:,}: a URL prefix or a folder), starting "
                      f"{source[:40]!r}")
        check_number("download.timeout_s", self.timeout_s, low=0, low_open=True, high=3600)
        check_number("download.deadline_s", self.deadline_s, low=0, low_open=True, high=86_400)
        check_number("download.max_file_mb", self.max_file_mb, low=0, low_open=True, high=10_000)
        files = {}
        if not isinstance(self.files, dict) or set(self.files) != {"train", "test"}:
            fail("download.files", "must have exactly the keys train and test")
        for role, spec in self.files.items():
            if isinstance(spec, FileSpec):
                files[role] = spec
                continue
            if not isinstance(spec, dict) or set(spec) != {"name", "sha1"}:
                fail(f"download.files.{role}", "must have exactly the keys name and sha1")
            sha1 = str(spec["sha1"]).lower()
            if len(sha1) != 40 or any(c not in "0123456789abcdef" for c in sha1):
                fail(f"download.files.{role}.sha1", f"must be 40 hex digits, got {spec['sha1']!r}")
            files[role] = FileSpec(name=str(spec["name"]), sha1=sha1)
        object.__setattr__(self, "files", files)


BLEND_METHODS = ("equal", "weights", "ridge")
RARE_SALES = ("comparable", "none")
SALE_CONDITIONS = ("Normal", "Abnorml", "AdjLand", "Alloca", "Family", "Partial")  # data_description


@dataclass(frozen=True)
class EnsembleParams:
    """How fold and seed models are averaged (in CV scoring and in the submission alike), and
    which members the submission blends and how (equal weights by default; fitted weights or a
    ridge meta-model on out-of-fold predictions are the options)."""

    average: str
    members: tuple[str, ...] = ("mlp",)
    blend: str = "equal"
    ridge_alpha: float = 1.0
    rare_sales: str = "none"
    rare_sale_min_gr_liv_area: float = 4000
    rare_sale_conditions: tuple[str, ...] = ("Partial",)

    def __post_init__(self):
        check_choice("ensemble.average", self.average, ("price", "log"))
        members = check_names("ensemble.members", self.members)
        if not members:
            fail("ensemble.members", "must name at least one member")
        if len(set(members)) != len(members):
            fail("ensemble.members", f"names a member twice: {members}")
        object.__setattr__(self, "members", members)
        check_choice("ensemble.blend", self.blend, BLEND_METHODS)
        check_number("ensemble.ridge_alpha", self.ridge_alpha, low=0, low_open=True)
        check_choice("ensemble.rare_sales", self.rare_sales, RARE_SALES)
        check_number("ensemble.rare_sale_min_gr_liv_area", self.rare_sale_min_gr_liv_area, low=0)
        conditions = check_names("ensemble.rare_sale_conditions", self.rare_sale_conditions)
        for name in conditions:
            check_choice("ensemble.rare_sale_conditions[]", name, SALE_CONDITIONS)
        object.__setattr__(self, "rare_sale_conditions", conditions)


@dataclass(frozen=True)
class KaggleParams:
    """The competition, and how patiently the Kaggle API is asked."""

    competition: str
    retries: int
    retry_backoff_s: float
    poll_interval_s: float
    poll_timeout_s: float
    timeout_s: float

    def __post_init__(self):
        if not isinstance(self.competition, str) or not self.competition:
            fail("kaggle.competition", f"must be a competition slug, got {self.competition!r}")
        check_number("kaggle.retries", self.retries, low=0, high=20, integer=True)
        check_number("kaggle.retry_backoff_s", self.retry_backoff_s, low=0, high=600)
        check_number("kaggle.poll_interval_s", self.poll_interval_s, low=0, low_open=True, high=3600)
        check_number("kaggle.poll_timeout_s", self.poll_timeout_s, low=0, high=86_400)
        check_number("kaggle.timeout_s", self.timeout_s, low=0, low_open=True, high=3600)


@dataclass(frozen=True)
class Params:
    download: DownloadParams
    preprocess: PreprocessParams
    train: TrainParams
    ensemble: EnsembleParams
    kaggle: KaggleParams
    members: MembersParams
    raw: dict = field(repr=False, compare=False, default_factory=dict)


SECTIONS = {
    "download": DownloadParams,
    "preprocess": PreprocessParams,
    "train": TrainParams,
    "ensemble": EnsembleParams,
    "kaggle": KaggleParams,
    "members": MembersParams,
}


def parse_params(raw: dict) -> Params:
    """Validate a params mapping (as read from params.yaml)."""
    if not isinstance(raw, dict):
        raise PipelineError("params.yaml: the top level must be a mapping of sections")
    sections = {name: _section(raw, name, cls) for name, cls in SECTIONS.items()}
    known = ("mlp", *sections["members"].names)  # the train stage's MLP, and each members.NAME
    for name in sections["ensemble"].members:
        if name not in known:
            fail("ensemble.members", f"names an unknown member {name!r} (known: {', '.join(known)})")
    return Params(**sections, raw=raw)


def load_params(path: str | Path = paths.PARAMS) -> Params:
    """Read and validate params.yaml."""
    from pipeline.common.inputs import read_yaml

    return parse_params(read_yaml(path, "run from the repository root or pass --params"))
