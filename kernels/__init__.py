"""Kernels of lstm-engine.

- ``gates``: the scalar LSTM cell math, written once and called from CPU and CUDA kernels.
- ``reference``: plain NumPy float64 forward/backward of one layer, the oracle for every kernel.
- ``cpu``: ``@numba.njit`` kernels (fused step, whole-sequence loops).
- ``simd``, ``gemm``: 16-lane float32 vectors, the float32 GEMM and the small-batch time loops.
- ``steps``: helpers shared by the CPU time loops.
- ``cuda``: the ``@cuda.jit`` kernels of the GPU backend.

Gate order everywhere is PyTorch's: i, f, g, o, stacked along the G = 4H axis.
Dimension letters: T time, B batch, I input, H hidden, G = 4H gates.
"""
import contextlib
import hashlib
import os

# Activation codes passed to kernels (Numba kernels take plain ints, not strings); see
# kernels.gates.  ACT_FAST is or-ed in by a backend for float32 work.
ACT_TANH = 0
ACT_RELU = 1
ACT_FAST = 2
ACTIVATIONS = {"tanh": ACT_TANH, "relu": ACT_RELU}

# Options of every CPU @njit kernel: cached compilation, NumPy's error model (Numba's
# ZeroDivisionError check would keep LLVM from vectorising the pointwise loops), and of the
# fast-math flags only "contract": a * b + c may become one fused multiply-add (one rounding
# instead of two, never less exact).  The rational tanh's polynomials then take half the
# instructions (measured: the forward cell update at M 11.4 -> 9.2 us a step).  No flag that
# assumes finite values or reorders sums.
KERNEL = dict(cache=True, error_model="numpy", fastmath={"contract"})


def drop_stale_cache(package_dir):
    """Delete Numba's cached machine code in ``package_dir/__pycache__`` unless it was written
    from the package's ``*.py`` files as they are now.  Returns whether it was deleted.

    Numba checks only the timestamp of the file that defines a cached function, not of the
    files it calls into: after an edit to ``gates.py`` the cached kernels of ``cpu.py`` would
    keep running the old cell math (``tests/test_kernel_cache.py`` shows it on a two-file
    package).  Here the cache is keyed on every source of the package instead.  It must run
    before the first kernel call (loading from the cache happens then, not at import).  Only
    the in-tree cache is kept fresh: where the package directory is read-only, or
    ``NUMBA_CACHE_DIR`` is set, Numba caches elsewhere and nothing here touches that.
    """
    cache = os.path.join(package_dir, "__pycache__")
    digest = hashlib.sha256()
    for name in sorted(f for f in os.listdir(package_dir) if f.endswith(".py")):
        with open(os.path.join(package_dir, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read() + b"\0")
    stamp = os.path.join(cache, "sources.sha256")
    try:
        with open(stamp) as f:
            if f.read() == digest.hexdigest():
                return False
    except OSError:
        pass
    try:
        os.makedirs(cache, exist_ok=True)
        for name in os.listdir(cache):
            if name.endswith((".nbi", ".nbc")):
                with contextlib.suppress(FileNotFoundError):  # another process got there first
                    os.remove(os.path.join(cache, name))
        tmp = f"{stamp}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(digest.hexdigest())
        os.replace(tmp, stamp)  # atomic: a concurrent import reads the old or the new stamp
    except OSError:  # not ours to write (a read-only install)
        return False
    return True


drop_stale_cache(os.path.dirname(os.path.abspath(__file__)))
