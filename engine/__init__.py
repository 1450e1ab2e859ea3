"""lstm-engine: a fused LSTM with PyTorch's interface, on Numba CPU and CUDA kernels."""
from engine.threads import choose_blas_kernels

choose_blas_kernels()  # before any OpenBLAS loads (see engine.threads)

from engine import baselines, datasets, windows  # noqa: E402
from engine.backends import get_backend
from engine.checkpoint import load
from engine.grad import is_grad_enabled, no_grad
from engine.layers import Dense, Embedding
from engine.losses import mse, softmax_cross_entropy
from engine.lstm import LSTM
from engine.model import Sequential, set_forget_bias
from engine.optim import SGD, Adam, clip_grad_norm

__all__ = ["LSTM", "Adam", "Dense", "Embedding", "SGD", "Sequential", "baselines",
           "clip_grad_norm", "datasets", "get_backend", "is_grad_enabled", "load", "mse",
           "no_grad", "set_forget_bias",
           "softmax_cross_entropy", "windows"]
__version__ = "0.1.0"
