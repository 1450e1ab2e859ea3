"""Shared test settings.

The CUDA simulator must be chosen before numba.cuda is first imported, so it is set here, at
collection time: on a machine without an NVIDIA driver every GPU-backend test runs its
@cuda.jit kernels in Numba's simulator (NumPy stands in for CuPy).  On a machine with a GPU the
same tests run on the device; NUMBA_ENABLE_CUDASIM=1 in the environment forces the simulator.
"""
import os
import zlib

if not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Tolerances per dtype, used as np.testing.assert_allclose(actual, expected, **TOL[dtype]).
# float32: rounding of ~1e-7 amplified through T steps and GEMM sums; float64: exact to ~1e-10.
TOL = {
    np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5),
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
}

# Kernel against reference (both float64, same operation order up to BLAS summation).
KERNEL_TOL = dict(rtol=1e-10, atol=1e-12)


def tol(dtype):
    return TOL[np.dtype(dtype)]


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name, so every test draws its own reproducible data."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)
