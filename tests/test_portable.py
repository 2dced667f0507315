"""Same bits on every x86-64 CPU: the kernel pins (pipeline/common/portable.py) are in effect wherever the
project's code runs, and the documented opt-out lets each library choose."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT

from pipeline.common import portable

PINNED = portable.pins_wanted()  # opted out (HOUSE_PRICES_NATIVE_KERNELS=1): these skip
NO_PINS = pytest.mark.skipif(not PINNED, reason="not an x86-64 CPU with AVX2: nothing is pinned")

PROBE = ("import pipeline, json; from pipeline.common.portable import pins_in_effect; "
         "print(json.dumps(pins_in_effect()))")


def probe(env: dict) -> dict:
    import json

    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                          cwd=ROOT, check=True)
    return json.loads(proc.stdout)


@NO_PINS
def test_the_pins_are_in_effect_in_the_tests_themselves():
    """conftest imports pipeline before numpy: OpenBLAS runs its Haswell kernel, torch and numpy
    their AVX2 code at most, MKL its compatible path (what made dvc.lock)."""
    assert all(portable.pins_in_effect().values()), portable.pins_in_effect()


@NO_PINS
def test_a_stage_process_pins_even_over_the_machines_own_settings():
    """A machine's own OPENBLAS_CORETYPE (set on some processors) would pick another kernel and
    other bits; importing pipeline overrides it before numpy loads."""
    env = {**os.environ, "OPENBLAS_CORETYPE": "Sandybridge", "MKL_CBWR": "AUTO"}
    env.pop(portable.OPT_OUT, None)
    assert all(probe(env).values())


@NO_PINS
def test_the_opt_out_lets_each_library_choose():
    env = {k: v for k, v in os.environ.items() if k not in portable.PINS}
    env[portable.OPT_OUT] = "1"
    chosen = probe(env)
    assert not chosen["mkl_compatible"]  # nothing set: MKL picks its own path


def test_pins_are_wanted_only_on_x86_64_with_avx2(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx\n")
    assert not portable.has_avx2(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    assert portable.has_avx2(str(cpuinfo))
    assert not portable.has_avx2(str(tmp_path / "missing"))
    monkeypatch.setattr(portable.platform, "machine", lambda: "aarch64")
    assert portable.pin_kernels({}) == {}
    monkeypatch.setattr(portable.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(portable, "has_avx2", lambda: True)
    environ = {"OPENBLAS_CORETYPE": "Zen"}
    assert portable.pin_kernels(environ) == portable.PINS and environ == portable.PINS
    assert portable.pin_kernels({portable.OPT_OUT: "1"}) == {}
