"""The preprocess section: how the raw columns become the models' matrices, the encodings (views)
of the MLP, and the user's features."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipeline.common.errors import PipelineError
from pipeline.config.checks import (
    MAX_BINS,
    MAX_VIEWS,
    check_bool,
    check_choice,
    check_names,
    check_number,
    fail,
)

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
        check_choice("preprocess.fit_on", self.fit_on, ("train", "train+test"))
        object.__setattr__(self, "numeric_as_category",
                           check_names("preprocess.numeric_as_category", self.numeric_as_category))
        check_bool("preprocess.ordinal_quality", self.ordinal_quality)
        check_bool("preprocess.log1p_skewed", self.log1p_skewed)
        check_number("preprocess.skew_threshold", self.skew_threshold, low=0)
        check_number("preprocess.skew_lambda", self.skew_lambda, low=0, high=1)
        check_bool("preprocess.engineered_features", self.engineered_features)
        check_bool("preprocess.domain_fills", self.domain_fills)
        check_choice("preprocess.scaler", self.scaler, ("standard", "robust_clip"))
        check_choice("preprocess.piecewise_linear", self.piecewise_linear, PIECEWISE_BASES)
        check_number("preprocess.piecewise_bins", self.piecewise_bins, low=2, high=MAX_BINS, integer=True)
        check_number("preprocess.outlier_min_gr_liv_area", self.outlier_min_gr_liv_area, low=0)
        check_number("preprocess.outlier_max_sale_price", self.outlier_max_sale_price, low=0)
        from pipeline.dataset.expressions import parse

        object.__setattr__(self, "features", parse(self.features, None))
        object.__setattr__(self, "mlp_views", self._checked_views())

    def _checked_views(self) -> tuple:
        """mlp_views as sorted (key, value) pairs, each view validated as a full section."""
        key = "preprocess.mlp_views"
        raw = self.mlp_views
        if not isinstance(raw, list | tuple):
            fail(key, f"must be a list of mappings such as {{scaler: robust_clip}}, got {raw!r}")
        if len(raw) > MAX_VIEWS:
            fail(key, f"must list at most {MAX_VIEWS} views, got {len(raw)}")
        views = []
        for i, view in enumerate(raw):
            pairs = dict(view) if isinstance(view, tuple) else view
            if not isinstance(pairs, dict):
                fail(f"{key}[{i}]", f"must be a mapping such as {{scaler: robust_clip}}, got {view!r}")
            unknown = sorted(set(pairs) - set(VIEW_KEYS))
            if unknown:
                fail(f"{key}[{i}].{unknown[0]}", f"cannot differ between views (can: "
                      f"{', '.join(VIEW_KEYS)})")
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in sorted(pairs.items())}
            try:
                self.view(values)
            except PipelineError as exc:
                reason = str(exc).removeprefix("params.yaml: ").partition("; fix it")[0]
                fail(f"{key}[{i}]", f"is not valid: {reason}")
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
