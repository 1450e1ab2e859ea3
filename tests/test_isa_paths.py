"""The next narrower x86 vector path of the kernels, beside this machine's own.

Numba compiles for another target when ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` are set, and
``kernels.isa`` reads the same target, so a subprocess with them set builds and runs the
kernels of that path: on an AVX-512 machine the AVX2 path, on an AVX2 machine the generic one
(SSE2, float32 products on BLAS).  One path below the native one, not every narrower one: each
path compiles every kernel anew, and two paths beside the suite took ``make test`` from a
fresh clone past its 10 minutes on an AVX-512 machine (634 s, against 434 s with one).  In
that subprocess the kernel tests and the parity tests against PyTorch run, and the report
header of that run names the path; the other paths show as skipped, with the reason.  Numba
keys its on-disk cache on the same CPU name and features, so the paths' machine code never
mixes: the last test runs the native path again after the other has filled the cache.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.kernels import isa

REPO = Path(__file__).resolve().parents[1]
# (NUMBA_CPU_NAME, NUMBA_CPU_FEATURES) of each path; an empty feature string means the CPU
# name's own features (haswell: AVX2 and FMA, no AVX-512).
TARGETS = {"avx512": ("skylake-avx512", ""), "avx2": ("haswell", ""), "other": ("generic", "")}
# The path run beside the native one: the next narrower (see the module doc).
NEXT = {"avx512": "avx2", "avx2": "other", "other": None}[isa.ISA]
# What each path runs: the kernels against the reference, and the layer against PyTorch in
# float32, the dtype whose code the vector path shapes (float64 runs on BLAS and scalar loops
# on every path: hence "not float64", and no tests/kernels/test_seq_rows.py, whose loops it
# checks in float64 only).  Not the CUDA kernels or the cache mechanics, which no CPU path
# changes.  On a target without the engine GEMM (the generic path) the GEMM's tests and the
# unit-split loops built on it skip themselves: nothing calls them there.
SUITE = ["tests/kernels", "tests/test_lstm_torch.py", "tests/backends/test_cpu.py",
         "--ignore=tests/kernels/test_cuda.py", "--ignore=tests/kernels/test_cuda_persistent.py",
         "--ignore=tests/kernels/test_cache.py", "--ignore=tests/kernels/test_seq_rows.py",
         "-k", "not float64"]


def _env(path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    if path is not None:
        env["NUMBA_CPU_NAME"], env["NUMBA_CPU_FEATURES"] = TARGETS[path]
    return env


def _isa_of(path):
    code = "from engine.kernels import isa; print(isa.ISA)"
    return subprocess.run([sys.executable, "-c", code], env=_env(path), cwd=REPO,
                          capture_output=True, text=True, check=True).stdout.strip()


def _why_not(path):
    if path == NEXT:
        return None
    if list(TARGETS).index(path) < list(TARGETS).index(isa.ISA):
        return f"the {path} path needs a CPU with {path}; this one runs {isa.ISA}"
    return f"this {isa.ISA} machine runs the {NEXT} path; the {path} path runs on {NEXT} machines"


@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.skipif(_why_not(p) is not None, reason=str(_why_not(p))))
    for p in TARGETS if p != isa.ISA])
def test_suite_passes_on_another_vector_path(path):
    assert _isa_of(path) == path  # kernels.isa sees the target Numba compiles for
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                          *SUITE], env=_env(path), cwd=REPO, capture_output=True, text=True)
    header = next((line for line in run.stdout.splitlines() if line.startswith("kernels:")), "")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert header.startswith(f"kernels: {path}:"), header
    assert " passed" in run.stdout.splitlines()[-1], run.stdout[-500:]


def test_native_path_after_the_others():
    """After other paths have cached their machine code beside the sources, the native path
    still finds its own (or compiles it) and computes right."""
    code = ("import numpy as np, engine; from engine.kernels import isa; "
            "m = engine.LSTM(5, 24, seed=0); "
            "x = np.random.default_rng(1).standard_normal((6, 9, 5)).astype(np.float32); "
            "m64 = engine.LSTM(5, 24, seed=0, dtype='float64'); "
            "print(isa.ISA, float(np.abs(m(x)[0] - m64(x.astype(np.float64))[0]).max()))")
    out = subprocess.run([sys.executable, "-c", code], env=_env(None), cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == isa.ISA and float(out[1]) < 1e-5, out
