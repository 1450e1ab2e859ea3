"""lstm-engine: a fused LSTM with PyTorch's interface, on Numba CPU and CUDA kernels."""
from engine import baselines, datasets, windows
from engine.backends import get_backend
from engine.lstm import LSTM

__all__ = ["LSTM", "baselines", "datasets", "get_backend", "windows"]
__version__ = "0.1.0"
