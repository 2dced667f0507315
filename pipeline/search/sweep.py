"""Hyperparameter sweep on an Optuna study, every trial scored by the train stage's own K-fold CV.

Optuna's sampler (TPE by default, seeded) proposes trials; a worker asks for a batch of them,
trains the trials that share an architecture together (trials x folds x seeds models in one
batched run) and tells each trial its CV score. The folds, seeds and averaging are the train
stage's, so a trial's number is the number `dvc repro` would report for its params, bit for bit
on the CPU. The study is kept in a database (default sweeps/results/NAME.db, SQLite), so a rerun
of the same command resumes it, and workers on many machines can share one (--storage URL).

Space file (YAML):

    sampler: tpe            # tpe | random | grid (every combination) | cmaes
    trials: 40              # completed trials the study aims at, all workers together
    batch: 8                # trials a worker asks for and trains at once
    seed: 0                 # the sampler's seed
    rank_by: blend_cv_rmse  # blend_cv_rmse(_no_outliers): the blend dvc repro would submit (the
                            # other members' predictions from the last dvc repro); or cv_rmse,
                            # cv_rmse_no_outliers: the MLP alone; lower is better
    heartbeat_s: 30         # a worker silent for 2x this long is presumed dead; its trials re-run
    space:                  # train.* keys; a list is a set of choices
      lr: [0.0003, 0.001]
      hidden: [[64], [256, 128]]
      weight_decay: {log_uniform: [0.01, 1.0]}   # also uniform, int_uniform

A value drawn from a range is rounded to 4 significant digits before it is trained, so the
table, `--apply` and the score all hold the same short number. The current params (params.yaml)
are scored too, as the baseline row, and every trial gets the house-level verdict against it
(pipeline/scoring/compare.py), so a tie is visible before `--apply` writes it.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from pathlib import Path

import pandas as pd

from pipeline.common import paths
from pipeline.common.cli_support import add_params_option, run_cli, stage_parser
from pipeline.common.errors import PipelineError
from pipeline.config.params import Params, load_params
from pipeline.dataset.processed import load_train
from pipeline.engine.device import make_deterministic, resolve_device
from pipeline.search import storage as study_storage
from pipeline.search import study as studies
from pipeline.search.apply import apply_to_params, queue_experiments
from pipeline.search.samplers import decode_all
from pipeline.search.scores import inputs_digest, other_members, score_configs
from pipeline.search.space import as_train_params, check_space, load_space
from pipeline.search.tables import (
    best_overrides,
    ranked_table,
    show_value,
    terminal_table,
    with_baseline,
    write_tables,
)


def run_sweep(params: Params, spec: dict, data_dir: str | os.PathLike = paths.PROCESSED,
              storage: str | None = None, study_name: str = "sweep",
              plots_dir: str | os.PathLike | None = None, space_path="sweep space",
              members_dir: str | os.PathLike = paths.MEMBERS,
              raw_train: str | os.PathLike | None = None) -> pd.DataFrame:
    """Run (or resume, or join) the study until it holds its trials; return the ranked table,
    each trial's verdict against the baseline (params.yaml's config) in `vs_baseline` and the
    baseline's row in `table.attrs["baseline"]`.

    Without `storage` the study is kept in memory (nothing to resume). `raw_train` (default:
    data_dir's sibling raw/train.csv) names the houses ensemble.rare_sales prices."""
    import optuna

    spec = check_space(spec, space_path)
    for override in decode_all(spec):
        # A bad value fails here, before any training, naming the space file, not params.yaml.
        try:
            as_train_params(params.train, override)
        except PipelineError as exc:
            (key, value), = override.items()
            reason = str(exc).removeprefix("params.yaml: ").partition("; fix it")[0]
            raise PipelineError(f"{space_path}: space key '{key}' value {value!r} is not "
                                f"valid ({reason}); fix it in the space file") from exc
    data = load_train(data_dir)
    raw_train = raw_train or Path(data_dir).parent / "raw" / "train.csv"  # data/raw beside it
    others = other_members(params, members_dir, data, raw_train)
    if others is None and spec["rank_by"].startswith("blend_"):
        raise PipelineError(f"{space_path}: rank_by {spec['rank_by']} scores each trial in the "
                            f"blend, which needs the other members' predictions ({members_dir}/"
                            "NAME/predictions.npz): run dvc repro first, or set rank_by: cv_rmse "
                            "to rank the MLP alone")
    device = resolve_device(params.train.device)
    make_deterministic(device)
    store = (study_storage.open_storage(storage) if storage
             else optuna.storages.InMemoryStorage())
    fixed = {k: v for k, v in dataclasses.asdict(params.train).items() if k not in spec["space"]}
    fixed["average"] = params.ensemble.average
    fixed["inputs"] = inputs_digest(params, data, others)
    with study_storage.lost_storage_is_one_line(storage or "in memory"):
        study = studies.open_study(store, study_name, spec, fixed)
        studies.run_worker(study, store, spec,
                           lambda overrides: score_configs(params, overrides, data, device, others))
        baseline = studies.cached_baseline(
            study, {**dataclasses.asdict(params.train), "average": params.ensemble.average},
            lambda: score_configs(params, [{}], data, device, others)[0])
        rows, folds = studies.completed_rows(study, spec)
        if plots_dir is not None:
            for path in studies.write_plots(study, plots_dir, study_name):
                print(f"sweep: wrote {path}")
    if not rows:
        raise PipelineError(f"sweep: study '{study_name}' has no completed trial")
    table = ranked_table(rows, folds, spec, baseline, data["outlier"].astype(bool))
    current = {k: show_value(getattr(params.train, k)) for k in spec["space"]}
    table.attrs["baseline"] = {"config": "params.yaml", **current, **baseline[0]}
    return table


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser("sweep", __doc__)
    parser.add_argument("space", help="YAML file with the search space (e.g. sweeps/example.yaml)")
    parser.add_argument("--name", help="table name (default: the space file's stem)")
    add_params_option(parser)
    parser.add_argument("--data", default=paths.PROCESSED, help="the preprocess stage's output")
    parser.add_argument("--members", default=paths.MEMBERS,
                        help="the other blend members' predictions (members/NAME/predictions.npz, "
                             "from dvc repro), which each trial is blended with")
    parser.add_argument("--out", default=paths.SWEEPS,
                        help="directory for the ranked tables and the default study database")
    parser.add_argument("--storage",
                        help="Optuna storage URL shared by workers (default: sqlite:///OUT/NAME.db)")
    parser.add_argument("--study", help="study name to create, resume or join (default: NAME)")
    parser.add_argument("--apply", action="store_true", help="write the best config to params.yaml")
    parser.add_argument("--queue", type=int, default=0, metavar="N",
                        help="queue the best N configs as DVC experiments")
    args = parser.parse_args(argv)

    def stage() -> None:
        params = load_params(args.params)
        spec = load_space(args.space)
        name = args.name or Path(args.space).stem
        storage = args.storage
        if storage is None:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            storage = f"sqlite:///{Path(args.out) / name}.db"
        table = run_sweep(params, spec, args.data, storage, args.study or name, args.out,
                          args.space, members_dir=args.members)
        rank_by = spec["rank_by"]
        csv_path, md_path = write_tables(table, args.out, name, rank_by)
        import textwrap

        print(textwrap.fill(f"Sweep {name}: {len(table)} configs ranked by {rank_by} (lower is "
                            "better); rank 0 is params.yaml's config, vs_baseline each one's "
                            "verdict against it on houses", 120))
        print(terminal_table(with_baseline(table), spec))
        print(f"sweep: wrote {csv_path} and {md_path} (every column)")
        if "tie_with_best" in table and (table["tie_with_best"] == "tie").any():
            tied = table.loc[table["tie_with_best"] == "tie", "rank"].tolist()
            print(f"sweep: note: rank(s) {', '.join(map(str, tied))} tie with rank 1 (within "
                  "noise); re-score them on other fold seeds before trusting the order")
        if args.apply:
            best = best_overrides(table, spec)
            apply_to_params(args.params, best)
            print(f"sweep: wrote the best config into {args.params}: {best}; run dvc repro")
            verdict = str(table.loc[table["rank"] == 1, "vs_baseline"].iloc[0])
            if not verdict.startswith("better"):
                print(f"sweep: note: it is no win over the baseline ({args.params}'s config "
                      f"before --apply) by the house-level rule: {verdict}; a tie keeps the "
                      f"simpler option: undo it with git checkout -- "
                      f"{shlex.quote(str(args.params))}")
        if args.queue:
            queue_experiments(table, spec, args.queue, name=name)
            print("sweep: next: 'dvc exp run --run-all' runs them; 'house-prices experiments' "
                  "judges them against HEAD by the tie rule")

    run_cli(stage)


if __name__ == "__main__":
    sys.exit(main())
