"""Model families of the blend, one module each, every one a scikit-learn estimator.

Each module has `make_model(settings, train) -> estimator`: an unfitted scikit-learn estimator
(`BaseEstimator`, settings as keyword arguments; fit(x, y) / predict(x) on the preprocessed matrix
and log price) that the member stage clones for each fold. `train` (params.yaml's train section)
gives train.lasso_*, the project's one Lasso setting, to the families that fit one. The keys
each `members.NAME` section of params.yaml takes are here, in SETTINGS, each a `Setting` with
its type and allowed range (params.py checks them without importing any model library). A
family whose fits use several cores says how many in a `threads` setting (the member stage fits
folds at once where the cores allow). The MLP is not here: it is the train stage, whose batched
trainer fits every fold at once.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """One setting of a family: its type and range (low < value by default; <= with
    low_open=False; value <= high when high is given)."""

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

SETTINGS = {
    # LightGBM needs at least two leaves per tree and caps them at 131072.
    "lgbm": {"n_estimators": Setting(int, low=1, low_open=False, high=100_000),
             "learning_rate": Setting(high=1),
             "num_leaves": Setting(int, low=2, low_open=False, high=131_072),
             "min_child_samples": COUNT, "subsample": FRACTION, "colsample_bytree": FRACTION,
             "reg_lambda": Setting(), "seed": SEED, "threads": THREADS,
             "exclude_outliers": EXCLUDE_OUTLIERS},
    "lasso_svr": {"C": Setting(), "epsilon": Setting(low_open=False), "gamma": Setting(),
                  "power": Setting(low_open=False), "exclude_outliers": EXCLUDE_OUTLIERS},
}
FAMILIES = tuple(SETTINGS)


def family(name: str):
    """The module of model family `name`."""
    import importlib

    return importlib.import_module(f"pipeline.members.{name}")


def settings_of(name: str) -> dict:
    return SETTINGS[name]


def model_settings(settings: dict) -> dict:
    """A family's settings as its estimator takes them: the fold plan's own key left out."""
    return {k: v for k, v in settings.items() if k != "exclude_outliers"}
