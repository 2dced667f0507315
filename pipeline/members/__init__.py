"""Model families of the blend, one module each, sharing scikit-learn's contract.

Each module has `make_model(settings) -> estimator` (fit(x, y) / predict(x) on the preprocessed
matrix and log price) and `SETTINGS`, the keys its `members.NAME` section of params.yaml takes.
The MLP is not here: it is the train stage, whose batched trainer fits every fold at once.
"""

FAMILIES = ("lasso", "lgbm", "svr")


def family(name: str):
    """The module of model family `name`."""
    import importlib

    return importlib.import_module(f"pipeline.members.{name}")


def settings_of(name: str) -> dict:
    return family(name).SETTINGS
