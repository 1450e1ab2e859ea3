"""CPU threading and BLAS policy: each core has one owner at a time, and how the time loops and
GEMMs split their work over the cores.

float32 GEMMs run on the engine's own kernel (``kernels.gemm``) over Numba's thread pool.
float64 ones run on BLAS: NumPy's OpenBLAS outside the time loop, and SciPy's, which Numba's
``np.dot`` calls, inside it.  A multi-threaded BLAS called from inside Numba's parallel loop
would oversubscribe the cores (OpenBLAS threads that spin-wait on a busy machine made a time
loop 30x slower in our measurements), so SciPy's OpenBLAS runs single-threaded and the sequence
kernels spread the work over Numba's threads instead (``parts``).

Figures here were measured on a 2-core AMD EPYC Zen 5 with AVX-512 (2026-11);
``python -m bench.kernels loops split`` re-runs the row/unit comparisons on the machine at hand.
"""
import os

import numba
import numpy as np
from numba import njit, prange

# The time loops split the batch into row blocks of at least this many rows (one tile of the
# float32 GEMM); smaller batches split the hidden units instead (kernels.seq_units).
# Row blocks run a whole sequence without meeting, so the split pays from two blocks of 4 rows
# (measured, 100 steps of H = 256 on 2 cores: B = 8 in 1.19 ms split by rows, 1.44 ms by
# units; B = 4 in 1.45 and 0.89 ms: 2 rows per block stream W_hh twice per step).
MIN_ROWS_PER_THREAD = 4
# A time step whose recurrent product has fewer multiply-adds runs on one thread.
MIN_STEP_WORK = 1 << 18
# A GEMM smaller than this many multiply-adds, or with fewer rows, runs on one thread.
MIN_GEMM_WORK = 1 << 21
MIN_GEMM_ROWS = 32

_configured = False

# OpenBLAS (0.3.30/0.3.31, as shipped in the SciPy and NumPy wheels) does not recognise AMD
# Zen 4/5 and falls back to its AVX2 "Haswell" kernels; its AVX-512 "SkylakeX" kernels run
# there and doubled SGEMM on a Zen 5 (235 -> 463 GFLOP/s).
_AVX512 = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}


def choose_blas_kernels(cpuinfo="/proc/cpuinfo"):
    """Set OPENBLAS_CORETYPE=SkylakeX on AMD CPUs with AVX-512, unless the user chose one.

    OpenBLAS reads it when the library loads.  ``engine/__init__`` calls this before any kernel
    runs, so SciPy's OpenBLAS (the BLAS of Numba's ``np.dot``: float64 products, loaded by
    ``configure``) gets it; NumPy's own OpenBLAS has loaded with NumPy already and keeps what it
    detected unless the variable was set before Python started.  Only AMD: OpenBLAS already
    picks the right (possibly newer) kernels on Intel AVX-512 parts.
    """
    if "OPENBLAS_CORETYPE" in os.environ:
        return
    try:
        with open(cpuinfo) as f:
            head = f.read(1 << 16)
    except OSError:
        return
    flags = next((line.split(":", 1)[1].split() for line in head.splitlines()
                  if line.startswith("flags")), [])
    if "AuthenticAMD" in head and _AVX512 <= set(flags):
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"


# libgomp's idle workers spin this many rounds (its default: 300,000, about a millisecond
# here) before they sleep.  The small-batch time loops (kernels.seq_units) open a parallel region
# per step, so a short spin keeps each step's fork/join cheap (0.8 us), while the default
# kept both cores busy for a millisecond after every call: measured, the next GEMM ran
# 3.7 -> 5.8 ms, and a PyTorch LSTM run next to the engine up to 1.5x slower.
GOMP_SPINCOUNT = "30000"


@njit(parallel=True, cache=True)
def _start_threads(x):
    for i in prange(x.shape[0]):
        x[i] = i


def _start_numba_threads():
    """Start Numba's OpenMP pool with a short spin (unless the user set one), leaving the
    environment as it was for any other OpenMP runtime loaded later (PyTorch's, say)."""
    before = {k: os.environ.get(k) for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    if before["GOMP_SPINCOUNT"] is None and before["OMP_WAIT_POLICY"] is None:
        os.environ["GOMP_SPINCOUNT"] = GOMP_SPINCOUNT
    try:
        _start_threads(np.zeros(numba.get_num_threads()))
    finally:
        if before["GOMP_SPINCOUNT"] is None:
            os.environ.pop("GOMP_SPINCOUNT", None)


def configure():
    """Pin the BLAS that Numba's np.dot calls to one thread and start Numba's thread pool
    (once per process)."""
    global _configured
    if _configured:
        return
    _start_numba_threads()
    import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS Numba links against)
    from threadpoolctl import ThreadpoolController

    for lib in ThreadpoolController().lib_controllers:
        if lib.user_api == "blas" and "scipy" in lib.filepath and "numpy" not in lib.filepath:
            lib.set_num_threads(1)
    _configured = True


def batch_parts(B):
    """How many row blocks a batch of B rows is split into for the parallel time loop."""
    return max(1, min(numba.get_num_threads(), B // MIN_ROWS_PER_THREAD))


def unit_parts(B, H, blocks):
    """Threads for the unit-split time loops (``kernels.seq_units``): one per
    core once a step's recurrent product is worth a fork/join (measured: 16x64x256 is)."""
    if B * H * 4 * H < MIN_STEP_WORK:
        return 1
    return max(1, min(numba.get_num_threads(), blocks))


def gemm_parts(M, K, N):
    """Threads for one (M,K) @ (K,N) GEMM outside the time loop."""
    if M * K * N < MIN_GEMM_WORK or M < MIN_GEMM_ROWS:
        return 1
    return numba.get_num_threads()
