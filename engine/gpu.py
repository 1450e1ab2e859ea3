"""GPU backend (numba.cuda kernels with CuPy buffers): filled in by the GPU work."""

INSTALL_HINT = ("install the GPU extra: pip install 'lstm-engine[gpu]' (CUDA 12 drivers) or "
                "'lstm-engine[gpu-cuda13]' (CUDA 13 drivers)")


def gpu_available():
    """(usable, reason): whether the GPU backend can run here, and if not, why."""
    return False, "the GPU backend is not built yet; " + INSTALL_HINT


class GPUBackend:
    def __init__(self):
        ok, why = gpu_available()
        if not ok:
            raise RuntimeError(f"backend='gpu' is not usable: {why}")
