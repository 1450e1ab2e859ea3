"""Thread counts: one number for Numba, both OpenBLAS builds and PyTorch, so that neither
contender oversubscribes the cores.

NumPy and SciPy each bundle their own OpenBLAS (NumPy's serves ``np.matmul``, SciPy's the
``np.dot`` inside Numba kernels) and PyTorch has its own OpenMP pool.  The environment
variables must be set before those libraries are loaded, so this module imports none of them.
"""
import ctypes
import os

THREAD_ENV = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

# Getter symbols of the OpenBLAS builds shipped in NumPy (64-bit ints) and SciPy wheels.
_OPENBLAS_GETTERS = ("openblas_get_num_threads", "scipy_openblas_get_num_threads64_",
                     "scipy_openblas_get_num_threads")


def available_cores():
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# OpenBLAS's idle workers spin about 2^28 cycles (a tenth of a second) after each call before
# they sleep, on the cores the next contender needs: measured on a 2-core Zen 3, the engine's
# 2048^2 GEMM run right after NumPy's reached 96-100 GFLOP/s, 141-155 with this, and NumPy's
# own rate was the same either way (155-175).  4 is OpenBLAS's shortest (2^4 cycles).
BLAS_THREAD_TIMEOUT = "4"


def pin_threads(n):
    """Set every thread-count variable to ``n``, and OpenBLAS's idle spin to its shortest
    unless the user set one; returns the names that were overridden.

    Effective only before NumPy, SciPy, Numba and torch are imported (call it first thing).
    """
    changed = [k for k in THREAD_ENV if os.environ.get(k) not in (None, str(n))]
    for k in THREAD_ENV:
        os.environ[k] = str(n)
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", BLAS_THREAD_TIMEOUT)
    return changed


def blas_threads():
    """{library file name: thread count} of every OpenBLAS loaded in this process."""
    found = {}
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return found
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sym in _OPENBLAS_GETTERS:
            getter = getattr(lib, sym, None)
            if getter is not None:
                found[os.path.basename(path)] = int(getter())
                break
    return found
