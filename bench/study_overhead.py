"""The study's own cost: asks, tells and storage writes of a sweep, with trials that train nothing.

    python bench/study_overhead.py [--trials 200 1000] [--batch 8 200] [--storages memory sqlite journal]
                                   [--sampler tpe]

Each run is `pipeline.search.study.run_worker` exactly as `house-prices sweep` runs it (the space of
sweeps/cpu_study.yaml, heartbeats, the surplus check, the per-trial attributes), with an
evaluator that returns a fixed score at once: what is left is bookkeeping, the part that does not
shrink when the GPU trains a batch faster. Prints a table: seconds in all and milliseconds per
trial for each storage (in memory, SQLite in a temporary folder, Optuna's journal file) and
batch size.
"""

from __future__ import annotations

import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split

import argparse
import datetime
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from common import ROOT, markdown_table

from pipeline.search import study as studies
from pipeline.search.samplers import SAMPLERS
from pipeline.search.space import check_space
from pipeline.search.storage import open_storage


def instant(configs: list[dict]) -> list[tuple[dict, dict]]:
    """What score_configs returns, without training: the metrics and per-fold scores a trial
    stores (five folds), varying with the config so TPE has something to model."""
    out = []
    for config in configs:
        score = 0.12 + 0.01 * np.log10(config["lr"] / 0.001) ** 2 + 0.02 * config["dropout"]
        metrics = {"cv_rmse": score, "cv_rmse_std": 0.01, "cv_rmse_no_outliers": score - 0.01,
                   "cv_rmse_no_outliers_std": 0.01, "best_epoch_mean": 40.0}
        per_fold = {"cv_rmse": [score] * 5, "cv_rmse_no_outliers": [score - 0.01] * 5}
        out.append((metrics, per_fold))
    return out


def run(storage_kind: str, trials: int, batch: int, sampler: str) -> float:
    import optuna

    spec = yaml.safe_load((ROOT / "sweeps/cpu_study.yaml").read_text())
    spec = check_space({**spec, "trials": trials, "batch": batch, "sampler": sampler})
    with tempfile.TemporaryDirectory() as tmp:
        url = {"sqlite": f"sqlite:///{Path(tmp) / 'study.db'}",
               "journal": f"journal:///{Path(tmp) / 'study.log'}"}.get(storage_kind)
        storage = open_storage(url) if url else optuna.storages.InMemoryStorage()
        study = studies.open_study(storage, "overhead", spec, {"fixed": True})
        started = time.perf_counter()
        studies.run_worker(study, storage, spec, instant, log=lambda line: None)
        seconds = time.perf_counter() - started
        assert len(studies.completed_rows(study, spec)[0]) == trials
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 200])
    parser.add_argument("--storages", nargs="+", default=["memory", "sqlite", "journal"],
                        choices=["memory", "sqlite", "journal"])
    parser.add_argument("--sampler", default="tpe", choices=SAMPLERS)
    args = parser.parse_args()
    rows = []
    for trials in args.trials:
        for batch in args.batch:
            for kind in args.storages:
                seconds = run(kind, trials, batch, args.sampler)
                rows.append([trials, batch, kind, f"{seconds:.1f}", f"{1000 * seconds / trials:.0f}"])
                print(f"{trials} trials, batch {batch}, {kind}: {seconds:.1f} s", flush=True)
    print(f"\n# Study overhead ({args.sampler}), {platform.machine()} CPU, {datetime.date.today()}\n")
    print(markdown_table(["trials", "batch", "storage", "seconds", "ms per trial"], rows))


if __name__ == "__main__":
    main()
