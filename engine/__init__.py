"""lstm-engine: a fused LSTM with PyTorch's interface, on Numba CPU and CUDA kernels."""
from engine.backends import get_backend
from engine.lstm import LSTM
from engine.layers import Dense, Embedding
from engine.losses import mse, softmax_cross_entropy
from engine.optim import SGD, Adam, clip_grad_norm
from engine.model import Sequential, set_forget_bias
from engine.checkpoint import load
from engine import interop as _interop

_interop.attach()

__all__ = ["LSTM", "get_backend",
           "Dense", "Embedding", "Sequential", "set_forget_bias", "softmax_cross_entropy",
           "mse", "SGD", "Adam", "clip_grad_norm", "load"]
__version__ = "0.1.0"
