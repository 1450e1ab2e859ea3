"""lstm-engine: a fused LSTM with PyTorch's interface, on Numba CPU and CUDA kernels.

The library: ``LSTM`` (``engine.lstm``), ``Dense`` and ``Embedding`` (``engine.layers``), the
training stack (``Sequential``, losses, optimizers, checkpoints), the backends
(``engine.backends``) and their kernels (``engine.kernels``, the repository's ``kernels/``).
The applications (``python -m engine <command>``) live in ``engine.apps`` and are not imported
here.
"""
import importlib.util
import os
import sys


def _kernels_from_checkout():
    """Make ``engine.kernels`` importable when the project runs from a source checkout that
    was not installed (``PYTHONPATH=.``): the installers map the repository's ``kernels/``
    folder to ``engine.kernels`` (pyproject's package-dir), plain ``sys.path`` does not."""
    name = __name__ + ".kernels"
    if name in sys.modules or importlib.util.find_spec(name) is not None:
        return
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels")
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])
    if spec is None:
        raise ImportError(f"engine.kernels not found: no installed package and no {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_kernels_from_checkout()

from engine.backends.threads import choose_blas_kernels  # noqa: E402

choose_blas_kernels()  # before SciPy's OpenBLAS loads (see engine.backends.threads)

from engine.backends import get_backend  # noqa: E402
from engine.checkpoint import CheckpointError, load  # noqa: E402
from engine.grad import is_grad_enabled, no_grad  # noqa: E402
from engine.layers import Dense, Embedding  # noqa: E402
from engine.losses import ctc_loss, mse, softmax_cross_entropy  # noqa: E402
from engine.lstm import LSTM  # noqa: E402
from engine.model import Sequential, TrainingDiverged, set_forget_bias  # noqa: E402
from engine.optim import SGD, Adam, clip_grad_norm  # noqa: E402

__all__ = ["LSTM", "Adam", "CheckpointError", "Dense", "Embedding", "SGD", "Sequential",
           "TrainingDiverged", "clip_grad_norm", "ctc_loss", "get_backend", "is_grad_enabled",
           "load", "mse", "no_grad", "set_forget_bias", "softmax_cross_entropy"]
__version__ = "0.1.0"
