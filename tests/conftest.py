"""Shared test settings (fixtures only; helpers and tolerance tables are in ``tests.helpers``).

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


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name, so every test draws its own reproducible data."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


def pytest_report_header(config):
    """Which vector path the kernels run on here (and so which path these tests check); the
    other x86 paths this machine can run are checked by tests/test_isa_paths.py."""
    from engine.kernels import isa

    return f"kernels: {isa.describe()} (NUMBA_CPU_NAME={os.environ.get('NUMBA_CPU_NAME')})"
