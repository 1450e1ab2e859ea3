"""Backends: the device behind every layer, chosen once by the ``backend`` flag.

- ``base``: the ``Backend`` protocol, every method with its arrays' shapes and what it writes;
- ``cpu``: ``CPUBackend``, Numba ``@njit`` kernels and the engine's own float32 GEMM;
- ``gpu``: ``GPUBackend``, ``numba.cuda`` kernels, CuPy buffers and cuBLAS (imported only when
  asked for: CuPy and a CUDA driver are optional);
- ``threads``: the CPU's thread and BLAS policy, and how work is split over the cores.

Selection: the ``backend=`` argument, else the ``ENGINE_BACKEND`` environment variable, else
``"cpu"``.  ``"auto"`` picks ``"gpu"`` when CUDA and CuPy are usable, else ``"cpu"`` (never the
CUDA simulator: that is a test tool).  A ``Backend`` instance, e.g.
``engine.backends.gpu.GPUBackend(fwd_variant="gemm")``, is used as given.
"""
import os

from engine.backends.base import Backend
from engine.backends.cpu import CPUBackend

BACKENDS = ("cpu", "gpu", "auto")


def get_backend(name=None):
    """Resolve a backend name (or None: ``ENGINE_BACKEND``, default ``"cpu"``) to an instance."""
    if isinstance(name, Backend):
        return name
    if name is None:
        name = os.environ.get("ENGINE_BACKEND", "cpu") or "cpu"
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    name = name.lower()
    if name == "cpu":
        return CPUBackend()
    from engine.backends import gpu

    if name == "auto":
        return gpu.GPUBackend() if gpu.gpu_available(allow_simulator=False)[0] else CPUBackend()
    return gpu.GPUBackend()


__all__ = ["BACKENDS", "Backend", "CPUBackend", "get_backend"]
