"""Which computation makes other bits on another CPU: md5s of the pipeline's pieces, from the
numeric libraries' kernels up to the train stage's member file, to compare across machines.

    python bench/portable_bits.py [--epochs 1 5]

Run it on two machines (same commit, same `constraints.txt`); the first line that differs names
the piece whose kernels round differently there (preprocessing is redone from data/bundled as
params.yaml says). Prints the pins in effect (pipeline/common/portable.py) and the CPU first. No output
files.
"""

from __future__ import annotations

import pipeline  # noqa: F401  first: its CPU kernel pins must precede numpy and torch

# isort: split

import argparse
import hashlib
import platform
from pathlib import Path

import numpy as np
import torch
from common import load_data

from pipeline.common.portable import pins_in_effect
from pipeline.members._lasso import fit_lasso, lasso_settings
from pipeline.scoring.folds import plan_folds


def md5(*arrays) -> str:
    h = hashlib.md5()
    for a in arrays:
        a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pieces(epochs: list[int]) -> list[tuple[str, str]]:
    """(piece, md5) from the kernels up: each piece uses the ones above it."""
    rng = np.random.default_rng(0)
    a32 = torch.tensor(rng.normal(size=(15, 64, 400)), dtype=torch.float32)
    w32 = torch.tensor(rng.normal(size=(15, 400, 128)), dtype=torch.float32)
    b32 = torch.tensor(rng.normal(size=(15, 1, 128)), dtype=torch.float32)
    v = torch.tensor(rng.normal(size=100_003), dtype=torch.float32)
    out = [("torch bmm float32 (MKL)", md5(torch.bmm(a32, w32))),
           ("torch baddbmm float32", md5(torch.baddbmm(b32, a32, w32))),
           ("torch exp/log1p/tanh/sqrt float32", md5(torch.exp(v), torch.log1p(v.abs()),
                                                      torch.tanh(v), torch.sqrt(v.abs()))),
           ("torch sum float32/float64", md5(v.sum(), v.double().sum(), a32.sum(1))),
           ("numpy matmul float64 (OpenBLAS)", md5(a32[0].double().numpy() @
                                                   w32[0].double().numpy())),
           ("numpy log1p/exp float64", md5(np.log1p(np.abs(v.double().numpy())),
                                           np.exp(v.double().numpy())))]
    params, data = load_data()
    x, y = data.x_train.astype(np.float64), data.y_train
    out.append(("preprocessed train matrix", md5(x, y, data.mlp_train.x)))
    out.append(("Lasso on train.npz (scikit-learn, scipy BLAS)",
                md5(fit_lasso(x, y, lasso_settings(params.train), "bits").coef_)))
    from pipeline.members.mlp.configs import lasso_starts
    from pipeline.members.mlp.fit import fit_mlp_configs

    views = data.mlp_train
    plan = plan_folds(len(y), data.outlier, params.train, len(views))
    start, scale = lasso_starts(views, y, [params.train], [plan.train_mask], plan.view_of_model)
    out.append(("the MLP's Lasso starts and input scales", md5(start[0], start[1], scale)))
    import dataclasses

    for n in epochs:
        config = dataclasses.replace(params.train, max_epochs=n, device="cpu")
        result = fit_mlp_configs(views, y, plan, [config], torch.device("cpu"))[0]
        out.append((f"the MLP after {n} epoch(s), every weight",
                    md5(*result.models.weights, *result.models.biases)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 5],
                        help="the MLP's weights after these many epochs")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, numpy {np.__version__}; "
          f"threads {torch.get_num_threads()}")
    print(f"pins in effect: {pins_in_effect()}")
    print("| piece | md5 |\n|---|---|")
    for name, digest in pieces(args.epochs):
        print(f"| {name} | {digest} |", flush=True)


if __name__ == "__main__":
    main()
