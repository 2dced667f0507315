"""Typed, validated view of params.yaml: a bad parameter fails early with one clear line."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.common.errors import PipelineError

DEFAULT_PARAMS = "params.yaml"

# Stated maxima for sizes and counts: every value the check accepts must run to its end on an
# ordinary machine (a 2-core CPU with a few GB free, or one GPU) instead of exhausting memory or
# running for days. Each is far above any value a search has used (docs/parameters.md).
MAX_FOLDS = 100            # the competition has 1,460 training rows
MAX_SEED = 2**32 - 1       # numpy's and torch's seeds
MAX_N_SEEDS = 50           # models per fold and encoding
MAX_WIDTH = 4096           # units in one hidden layer
MAX_LAYERS = 8             # hidden layers
MAX_HIDDEN_WEIGHTS = 20_000_000  # weights between hidden layers, per model (15 models train at once)
MAX_EPOCHS = 10_000        # the default stops early at ~50
MAX_BATCH_SIZE = 65_536    # rows per optimiser step (more than the data is one full batch)
MAX_BINS = 64              # piecewise-linear bins per numeric column
MAX_VIEWS = 8              # encodings the MLP trains on
MAX_LR = 1.0               # Adam/SGD steps beyond this only diverge (the default is 0.00078)
MAX_SOURCE_LENGTH = 2048  # characters of one download source (URL prefix or folder)
MAX_LASSO_ALPHA = 0.1      # on standardized columns and log price, far less empties every Lasso


def _fail(key: str, message: str) -> None:
    raise PipelineError(f"params.yaml: {key} {message}; fix it in params.yaml or with -S {key}=... "
                        "(a failed `dvc exp run -S` leaves its value there: `git checkout "
                        "params.yaml` restores it)")


def _number(key: str, value: Any, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, integer: bool = False) -> float:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):
        _fail(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        _fail(key, f"must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        _fail(key, f"must be {'<' if high_open else '<='} {high}, got {value!r}")
    return value


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        _fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        _fail(key, f"must be true or false, got {value!r}")
    return value


def _str_list(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        _fail(key, f"must be a list of names, got {value!r}")
    return tuple(value)


def _section(raw: dict, name: str, cls: type) -> Any:
    """Build dataclass `cls` from raw[name], rejecting unknown and missing keys by name."""
    data = raw.get(name)
    if not isinstance(data, dict):
        raise PipelineError(f"params.yaml: section '{name}' is missing or not a mapping")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        _fail(f"{name}.{unknown[0]}", f"is not a known parameter (known: {', '.join(sorted(names))})")
    missing = sorted(names - set(data))
    if missing:
        _fail(f"{name}.{missing[0]}", "is missing")
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
        object.__setattr__(self, "sources", _str_list("download.sources", self.sources))
        if not self.sources:
            _fail("download.sources", "must list at least one source")
        for i, source in enumerate(self.sources):
            if len(source) > MAX_SOURCE_LENGTH:
                _fail(f"download.sources[{i}]", f"is {len(source):,} characters long (at most "
                      f"{MAX_SOURCE_LENGTH:,}: a URL prefix or a folder), starting "
                      f"{source[:40]!r}")
        _number("download.timeout_s", self.timeout_s, low=0, low_open=True, high=3600)
        _number("download.deadline_s", self.deadline_s, low=0, low_open=True, high=86_400)
        _number("download.max_file_mb", self.max_file_mb, low=0, low_open=True, high=10_000)
        files = {}
        if not isinstance(self.files, dict) or set(self.files) != {"train", "test"}:
            _fail("download.files", "must have exactly the keys train and test")
        for role, spec in self.files.items():
            if isinstance(spec, FileSpec):
                files[role] = spec
                continue
            if not isinstance(spec, dict) or set(spec) != {"name", "sha1"}:
                _fail(f"download.files.{role}", "must have exactly the keys name and sha1")
            sha1 = str(spec["sha1"]).lower()
            if len(sha1) != 40 or any(c not in "0123456789abcdef" for c in sha1):
                _fail(f"download.files.{role}.sha1", f"must be 40 hex digits, got {spec['sha1']!r}")
            files[role] = FileSpec(name=str(spec["name"]), sha1=sha1)
        object.__setattr__(self, "files", files)


PIECEWISE_BASES = ("none", "kinks")
# What may differ between the MLP's views: how features are encoded, not which rows are
# outliers or what the statistics are fitted on.
VIEW_KEYS = ("numeric_as_category", "ordinal_quality", "log1p_skewed", "skew_threshold",
             "skew_lambda", "engineered_features", "domain_fills", "scaler", "piecewise_linear",
             "piecewise_bins")


@dataclass(frozen=True)
class PreprocessParams:
    """Feature engineering switches; every one is judged by cross-validation only."""

    fit_on: str
    numeric_as_category: tuple[str, ...]
    ordinal_quality: bool
    log1p_skewed: bool
    skew_threshold: float
    skew_lambda: float
    engineered_features: bool
    domain_fills: bool
    scaler: str
    piecewise_linear: str
    piecewise_bins: int
    outlier_min_gr_liv_area: float
    outlier_max_sale_price: float
    # Further encodings the MLP also trains on, each the settings above with some changed:
    # (("scaler", "robust_clip"),) per view, as sorted (key, value) pairs (hashable).
    mlp_views: tuple = ()
    # The user's own columns, (name, expression) pairs in order (pipeline/dataset/expressions.py); every
    # encoding gets them
    features: tuple = ()

    def __post_init__(self):
        _choice("preprocess.fit_on", self.fit_on, ("train", "train+test"))
        object.__setattr__(self, "numeric_as_category",
                           _str_list("preprocess.numeric_as_category", self.numeric_as_category))
        _bool("preprocess.ordinal_quality", self.ordinal_quality)
        _bool("preprocess.log1p_skewed", self.log1p_skewed)
        _number("preprocess.skew_threshold", self.skew_threshold, low=0)
        _number("preprocess.skew_lambda", self.skew_lambda, low=0, high=1)
        _bool("preprocess.engineered_features", self.engineered_features)
        _bool("preprocess.domain_fills", self.domain_fills)
        _choice("preprocess.scaler", self.scaler, ("standard", "robust_clip"))
        _choice("preprocess.piecewise_linear", self.piecewise_linear, PIECEWISE_BASES)
        _number("preprocess.piecewise_bins", self.piecewise_bins, low=2, high=MAX_BINS, integer=True)
        _number("preprocess.outlier_min_gr_liv_area", self.outlier_min_gr_liv_area, low=0)
        _number("preprocess.outlier_max_sale_price", self.outlier_max_sale_price, low=0)
        from pipeline.dataset.expressions import parse

        object.__setattr__(self, "features", parse(self.features, None))
        object.__setattr__(self, "mlp_views", self._checked_views())

    def _checked_views(self) -> tuple:
        """mlp_views as sorted (key, value) pairs, each view validated as a full section."""
        key = "preprocess.mlp_views"
        raw = self.mlp_views
        if not isinstance(raw, list | tuple):
            _fail(key, f"must be a list of mappings such as {{scaler: robust_clip}}, got {raw!r}")
        if len(raw) > MAX_VIEWS:
            _fail(key, f"must list at most {MAX_VIEWS} views, got {len(raw)}")
        views = []
        for i, view in enumerate(raw):
            pairs = dict(view) if isinstance(view, tuple) else view
            if not isinstance(pairs, dict):
                _fail(f"{key}[{i}]", f"must be a mapping such as {{scaler: robust_clip}}, got {view!r}")
            unknown = sorted(set(pairs) - set(VIEW_KEYS))
            if unknown:
                _fail(f"{key}[{i}].{unknown[0]}", f"cannot differ between views (can: "
                      f"{', '.join(VIEW_KEYS)})")
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in sorted(pairs.items())}
            try:
                self.view(values)
            except PipelineError as exc:
                reason = str(exc).removeprefix("params.yaml: ").partition("; fix it")[0]
                _fail(f"{key}[{i}]", f"is not valid: {reason}")
            views.append(tuple(values.items()))
        return tuple(views)

    def view(self, changes: dict) -> PreprocessParams:
        """These settings with `changes` applied and no further views."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields.update({k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()},
                      mlp_views=())
        fields["numeric_as_category"] = list(fields["numeric_as_category"])
        return PreprocessParams(**fields)

    def encodings(self) -> list[PreprocessParams]:
        """The MLP's encodings: these settings (what the blend members see too), then each view."""
        return [self.view({}), *(self.view(dict(pairs)) for pairs in self.mlp_views)]


ACTIVATIONS = ("relu", "gelu", "tanh", "silu")
OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class TrainParams:
    """K-fold cross-validation of an MLP on log price."""

    folds: int
    fold_seed: int
    seed: int
    n_seeds: int
    exclude_outliers: bool
    hidden: tuple[int, ...]
    linear_skip: bool
    skip_init: str
    lasso_input_power: float
    activation: str
    dropout: float
    weight_decay: float
    l1: float
    l1_skip: float
    huber_delta: float
    optimizer: str
    lr: float
    batch_size: int
    max_epochs: int
    patience: int
    early_stopping_holdout: float
    device: str
    compile: bool
    lasso_alpha: float
    lasso_max_iter: int
    lasso_tol: float
    clip_to_train_range: bool = True  # the test houses' features clamped to the training range

    def __post_init__(self):
        _number("train.folds", self.folds, low=2, high=MAX_FOLDS, integer=True)
        _number("train.fold_seed", self.fold_seed, low=0, high=MAX_SEED, integer=True)
        _number("train.seed", self.seed, low=0, high=MAX_SEED, integer=True)
        _number("train.n_seeds", self.n_seeds, low=1, high=MAX_N_SEEDS, integer=True)
        _bool("train.exclude_outliers", self.exclude_outliers)
        hidden = list(self.hidden) if isinstance(self.hidden, list | tuple) else self.hidden
        if not isinstance(hidden, list):
            _fail("train.hidden", f"must be a list of layer widths ([] = linear model), got {hidden!r}")
        if len(hidden) > MAX_LAYERS:
            _fail("train.hidden", f"must have at most {MAX_LAYERS} layers, got {len(hidden)}")
        for width in hidden:
            _number("train.hidden", width, low=1, high=MAX_WIDTH, integer=True)
        if sum(a * b for a, b in itertools.pairwise(hidden)) > MAX_HIDDEN_WEIGHTS:
            _fail("train.hidden", f"has more than {MAX_HIDDEN_WEIGHTS:,} weights between its "
                  f"layers, got {hidden!r}")
        object.__setattr__(self, "hidden", tuple(hidden))
        _bool("train.linear_skip", self.linear_skip)
        _choice("train.skip_init", self.skip_init, ("zeros", "lasso"))
        if self.skip_init == "lasso" and not self.linear_skip:
            _fail("train.skip_init", "lasso warm-starts the linear skip path; set "
                  "train.linear_skip=true or train.skip_init=zeros")
        _number("train.lasso_input_power", self.lasso_input_power, low=0)
        _choice("train.activation", self.activation, ACTIVATIONS)
        _number("train.dropout", self.dropout, low=0, high=1, high_open=True)
        _number("train.weight_decay", self.weight_decay, low=0)
        _number("train.l1", self.l1, low=0)
        _number("train.l1_skip", self.l1_skip, low=0)
        _number("train.huber_delta", self.huber_delta, low=0)
        _choice("train.optimizer", self.optimizer, OPTIMIZERS)
        _number("train.lr", self.lr, low=0, low_open=True, high=MAX_LR)
        _number("train.batch_size", self.batch_size, low=1, high=MAX_BATCH_SIZE, integer=True)
        _number("train.max_epochs", self.max_epochs, low=1, high=MAX_EPOCHS, integer=True)
        _number("train.patience", self.patience, low=0, high=MAX_EPOCHS, integer=True)
        _number("train.early_stopping_holdout", self.early_stopping_holdout, low=0, high=0.5)
        _choice("train.device", self.device, ("auto", "cpu", "cuda"))
        _bool("train.compile", self.compile)
        _number("train.lasso_alpha", self.lasso_alpha, low=0, low_open=True, high=MAX_LASSO_ALPHA)
        _number("train.lasso_max_iter", self.lasso_max_iter, low=1, high=1_000_000, integer=True)
        _number("train.lasso_tol", self.lasso_tol, low=0, low_open=True)
        _bool("train.clip_to_train_range", self.clip_to_train_range)


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
        _fail(key, "must be a mapping of settings")
    unknown = sorted(set(value) - set(expected))
    if unknown:
        _fail(f"{key}.{unknown[0]}", f"is not a known setting (known: {', '.join(sorted(expected))})")
    missing = sorted(set(expected) - set(value))
    if missing:
        _fail(f"{key}.{missing[0]}", "is missing")
    for name, setting in expected.items():
        if setting.kind is bool:
            _bool(f"{key}.{name}", value[name])
        else:
            _number(f"{key}.{name}", value[name], low=setting.low, low_open=setting.low_open,
                    high=setting.high, integer=setting.kind is int)


class MembersParams:
    """The members section: one mapping of settings per model family besides the MLP (the train
    section), `params.members.NAME`. Which families exist and what each takes is the families'
    own business (pipeline/members/, each module's SETTINGS): pipeline.members.check_settings
    checks the sections against them (the check_params stage and the member stage run it)."""

    def __init__(self, **sections: dict):
        for name, value in sections.items():
            if not isinstance(value, dict):
                _fail(f"members.{name}", "must be a mapping of settings")
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
        _choice("ensemble.average", self.average, ("price", "log"))
        members = _str_list("ensemble.members", self.members)
        if not members:
            _fail("ensemble.members", "must name at least one member")
        if len(set(members)) != len(members):
            _fail("ensemble.members", f"names a member twice: {members}")
        object.__setattr__(self, "members", members)
        _choice("ensemble.blend", self.blend, BLEND_METHODS)
        _number("ensemble.ridge_alpha", self.ridge_alpha, low=0, low_open=True)
        _choice("ensemble.rare_sales", self.rare_sales, RARE_SALES)
        _number("ensemble.rare_sale_min_gr_liv_area", self.rare_sale_min_gr_liv_area, low=0)
        conditions = _str_list("ensemble.rare_sale_conditions", self.rare_sale_conditions)
        for name in conditions:
            _choice("ensemble.rare_sale_conditions[]", name, SALE_CONDITIONS)
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
            _fail("kaggle.competition", f"must be a competition slug, got {self.competition!r}")
        _number("kaggle.retries", self.retries, low=0, high=20, integer=True)
        _number("kaggle.retry_backoff_s", self.retry_backoff_s, low=0, high=600)
        _number("kaggle.poll_interval_s", self.poll_interval_s, low=0, low_open=True, high=3600)
        _number("kaggle.poll_timeout_s", self.poll_timeout_s, low=0, high=86_400)
        _number("kaggle.timeout_s", self.timeout_s, low=0, low_open=True, high=3600)


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
    sections = {name: _section(raw, name, cls) for name, cls in SECTIONS.items() if name != "members"}
    members = raw.get("members")
    if not isinstance(members, dict):
        raise PipelineError("params.yaml: section 'members' is missing or not a mapping")
    sections["members"] = MembersParams(**members)
    known = ("mlp", *sections["members"].names)  # the train stage's MLP, and each members.NAME
    for name in sections["ensemble"].members:
        if name not in known:
            _fail("ensemble.members", f"names an unknown member {name!r} (known: {', '.join(known)})")
    return Params(**sections, raw=raw)


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate params.yaml."""
    from pipeline.common.inputs import read_yaml

    return parse_params(read_yaml(path, "run from the repository root or pass --params"))
