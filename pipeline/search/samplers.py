"""A sweep space as Optuna distributions and samplers: each trial's draw seeded by its number,
so a batch's configs do not depend on which worker asked for them."""

from __future__ import annotations

import zlib

import numpy as np
import yaml

from pipeline.common.errors import PipelineError

SAMPLERS = ("tpe", "random", "grid", "cmaes")

def distributions(space: dict) -> tuple[dict, set]:
    """Optuna distributions for a space; lists of lists (e.g. hidden widths) become strings."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out, encoded = {}, set()
    for key, choice in space.items():
        if isinstance(choice, list):
            if any(isinstance(c, list | dict) for c in choice):
                encoded.add(key)
                choice = [yaml.safe_dump(c, default_flow_style=True).strip() for c in choice]
            out[key] = CategoricalDistribution(choice)
            continue
        kind, (low, high) = next(iter(choice.items()))
        if kind == "int_uniform":
            out[key] = IntDistribution(low, high)
        else:
            out[key] = FloatDistribution(float(low), float(high), log=kind == "log_uniform")
    return out, encoded


# A value drawn from a continuous range is rounded to this many significant digits before it is
# trained, so the config scored is the one the table shows and --apply writes (lr: 0.001554).
SIGNIFICANT_DIGITS = 4


def decode(params: dict, dists: dict, encoded: set) -> dict:
    """A trial's params as a config: list choices decoded, floats drawn from a range rounded
    (a listed choice stays as written)."""
    from optuna.distributions import FloatDistribution

    return {k: yaml.safe_load(v) if k in encoded
            else float(f"{v:.{SIGNIFICANT_DIGITS}g}")
            if isinstance(dists[k], FloatDistribution) else v
            for k, v in params.items()}


def _trial_seed(seed: int, number: int, name: str) -> int:
    return int(np.random.SeedSequence([seed, number, zlib.crc32(name.encode())])
               .generate_state(1)[0])


def number_seeded_random(seed: int):
    """Random search whose draws are a function of (seed, trial number, parameter): workers that
    start together with the same seed still propose different trials, and one worker's study is
    the same every time."""
    import optuna

    class NumberSeededRandomSampler(optuna.samplers.BaseSampler):
        def infer_relative_search_space(self, study, trial):
            return {}

        def sample_relative(self, study, trial, search_space):
            return {}

        def sample_independent(self, study, trial, param_name, param_distribution):
            draw = optuna.samplers.RandomSampler(seed=_trial_seed(seed, trial.number, param_name))
            return draw.sample_independent(study, trial, param_name, param_distribution)

    return NumberSeededRandomSampler()


def make_sampler(spec: dict):
    import optuna
    from optuna.trial import TrialState

    kind, seed = spec["sampler"], spec.get("seed", 0)
    random = number_seeded_random(seed)
    if kind == "tpe":

        class Tpe(optuna.samplers.TPESampler):
            """TPE whose random start-up trials are drawn per trial number (see above). Whether a
            trial is a start-up one is read once per trial, not once per parameter: each read of
            a database storage loads every trial."""

            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.starting: dict[int, bool] = {}

            def sample_independent(self, study, trial, param_name, param_distribution):
                if trial.number not in self.starting:
                    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    self.starting = {trial.number: len(complete) < self._n_startup_trials}
                if self.starting[trial.number]:
                    return random.sample_independent(study, trial, param_name,
                                                     param_distribution)
                return super().sample_independent(study, trial, param_name, param_distribution)

        return Tpe(seed=seed, constant_liar=True)
    if kind in ("random", "grid"):  # grid: the combinations are queued in open_study
        return random
    try:
        import cmaes  # noqa: F401
    except ImportError as exc:
        raise PipelineError("sweep: sampler cmaes needs the cmaes package: "
                            "python -m pip install cmaes") from exc
    return optuna.samplers.CmaEsSampler(seed=seed)



def decode_all(spec: dict) -> list[dict]:
    """Every listed choice of the space, one key at a time (to validate values before a run)."""
    out = []
    for key, choice in spec["space"].items():
        values = choice if isinstance(choice, list) else list(next(iter(choice.values())))
        out += [{key: v} for v in values]
    return out
