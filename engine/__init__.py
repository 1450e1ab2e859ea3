"""lstm-engine: a fused LSTM with PyTorch's interface, on Numba CPU and CUDA kernels."""
from engine.backends import get_backend
from engine.lstm import LSTM

__all__ = ["LSTM", "get_backend"]
__version__ = "0.1.0"
