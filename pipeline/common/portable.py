"""Same bits on every x86-64 CPU: pin the numeric libraries to one kernel family before they load.

Each library picks its kernels by the CPU it finds (AVX-512 on one Xeon, AVX2 on an EPYC), and the
kernels round differently, so dvc.lock's md5s would hold on one CPU model only. Set before numpy,
scipy, torch or LightGBM load (importing `pipeline` does it), these make them take the AVX2
kernels everywhere: MKL's conditional numerical reproducibility (torch's matmuls), PyTorch's and
oneDNN's vectorised code, OpenBLAS's kernel (numpy's and scipy's BLAS: the Lasso fits) and numpy's
SIMD loops. Set HOUSE_PRICES_NATIVE_KERNELS=1 to let each library choose (faster, machine bits).
"""

from __future__ import annotations

import os
import platform

OPT_OUT = "HOUSE_PRICES_NATIVE_KERNELS"
PINS = {
    "MKL_CBWR": "COMPATIBLE",                 # MKL: one code path on Intel and AMD alike
    "ATEN_CPU_CAPABILITY": "avx2",            # PyTorch's vectorised kernels
    "ONEDNN_MAX_CPU_ISA": "AVX2",             # oneDNN (torch's mkldnn), where it is used
    "OPENBLAS_CORETYPE": "Haswell",           # numpy's and scipy's OpenBLAS: the AVX2 kernel
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",  # numpy's SIMD: AVX2 at most
}


def has_avx2(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU runs the AVX2 kernels the pins name (every x86-64 CPU since 2013-2015)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            return any(line.startswith("flags") and " avx2" in line for line in f)
    except OSError:
        return False


def pins_wanted(environ=os.environ) -> bool:
    """Pin on x86-64 with AVX2 unless the user opted out; elsewhere the pins name no kernel."""
    if environ.get(OPT_OUT, "").strip().lower() in ("1", "true", "yes"):
        return False
    return platform.machine().lower() in ("x86_64", "amd64") and has_avx2()


def pin_kernels(environ=os.environ) -> dict[str, str]:
    """Set the pins in `environ` (overriding other values: a machine's own OPENBLAS_CORETYPE
    would make other bits); returns what was set. A library already loaded keeps its choice."""
    if not pins_wanted(environ):
        return {}
    environ.update(PINS)
    return dict(PINS)


def pins_in_effect() -> dict[str, bool]:
    """Each loaded library's kernel choice against the pins (for the tests and bug reports)."""
    import numpy as np
    import threadpoolctl
    import torch

    blas = [i.get("architecture") for i in threadpoolctl.threadpool_info()
            if i.get("internal_api") == "openblas"]
    features = np._core._multiarray_umath.__cpu_features__
    return {"openblas_haswell": bool(blas) and all(a == "Haswell" for a in blas),
            "torch_avx2": torch.backends.cpu.get_cpu_capability() in ("AVX2", "DEFAULT"),
            "numpy_no_avx512": not any(features.get(f) for f in PINS["NPY_DISABLE_CPU_FEATURES"].split()),
            "mkl_compatible": os.environ.get("MKL_CBWR") == "COMPATIBLE"}
