"""Weights in and out of PyTorch and Keras.

- ``lstm_from_torch(module)`` (also ``LSTM.from_torch``): an ``engine.LSTM`` with a
  ``torch.nn.LSTM``'s configuration and weights.  The names and gate order (i, f, g, o) are the
  same, so the state dict is copied as is.
- ``to_torch_state_dict(lstm)`` (also ``lstm.to_torch_state_dict()``): CPU torch tensors that
  ``torch.nn.LSTM.load_state_dict`` accepts.
- ``lstm_from_keras(weights)`` (also ``LSTM.from_keras``): a Keras ``LSTM`` layer's
  ``get_weights()`` = [kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,)] with gate order
  i, f, c, o (= i, f, g, o).  PyTorch's layout is the transpose, and Keras's single bias
  becomes ``bias_ih`` with zeros in ``bias_hh``.  Keras's default activations (tanh, sigmoid
  recurrent activation) are assumed; Keras 1's ``hard_sigmoid`` is not supported.

torch is imported only inside these functions.
"""
import numpy as np

from engine.lstm import LSTM


def lstm_from_torch(module, backend=None):
    """Build an ``engine.LSTM`` equal to ``module`` (a ``torch.nn.LSTM``) on ``backend``."""
    import torch

    if not isinstance(module, torch.nn.LSTM):
        raise TypeError(f"module must be a torch.nn.LSTM, got {type(module).__name__}")
    dtype = next(iter(module.parameters())).dtype
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"module parameters must be float32 or float64, got {dtype}")
    lstm = LSTM(module.input_size, module.hidden_size, num_layers=module.num_layers,
                bias=module.bias, batch_first=module.batch_first, dropout=module.dropout,
                bidirectional=module.bidirectional, proj_size=module.proj_size,
                dtype=str(dtype).replace("torch.", ""), backend=backend)
    lstm.train(module.training)
    lstm.load_state_dict({k: v.detach().cpu().numpy() for k, v in module.state_dict().items()})
    return lstm


def to_torch_state_dict(lstm):
    """{name: torch.Tensor} copies of the parameters, for ``torch.nn.LSTM.load_state_dict``."""
    import torch

    return {k: torch.from_numpy(v) for k, v in lstm.state_dict().items()}


def lstm_from_keras(weights, batch_first=True, dtype="float32", backend=None):
    """Build a one-layer ``engine.LSTM`` from Keras ``get_weights()``.

    Args:
        weights: [kernel (I, 4H), recurrent_kernel (H, 4H)] plus optionally bias (4H,),
            gate order i, f, c, o.
        batch_first: Keras data is (B, T, I), so True by default.
        dtype, backend: of the new LSTM.
    """
    if not isinstance(weights, (list, tuple)) or len(weights) not in (2, 3):
        raise TypeError("weights must be [kernel, recurrent_kernel] or [kernel, "
                        "recurrent_kernel, bias] (a Keras LSTM's get_weights())")
    kernel, rec = np.asarray(weights[0]), np.asarray(weights[1])
    if kernel.ndim != 2 or kernel.shape[1] % 4 or kernel.shape[1] == 0:
        raise ValueError(f"kernel must have shape (I, 4H), got {kernel.shape}")
    I, G = kernel.shape
    H = G // 4
    if rec.shape != (H, G):
        raise ValueError(f"recurrent_kernel must have shape (H={H}, 4H={G}), got {rec.shape}")
    has_bias = len(weights) == 3
    lstm = LSTM(I, H, bias=has_bias, batch_first=batch_first, dtype=dtype, backend=backend)
    sd = {"weight_ih_l0": kernel.T, "weight_hh_l0": rec.T}
    if has_bias:
        bias = np.asarray(weights[2])
        if bias.shape != (G,):
            raise ValueError(f"bias must have shape (4H={G},), got {bias.shape}")
        sd["bias_ih_l0"], sd["bias_hh_l0"] = bias, np.zeros(G)
    lstm.load_state_dict(sd)
    return lstm


def to_keras_weights(lstm):
    """[kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,)] of a one-layer, one-direction
    LSTM, for a Keras ``LSTM.set_weights`` (the two PyTorch biases are summed)."""
    if lstm.num_layers != 1 or lstm.bidirectional:
        raise ValueError("only a one-layer unidirectional LSTM maps to one Keras LSTM layer")
    sd = lstm.state_dict()
    out = [np.ascontiguousarray(sd["weight_ih_l0"].T), np.ascontiguousarray(sd["weight_hh_l0"].T)]
    if lstm.bias:
        out.append(sd["bias_ih_l0"] + sd["bias_hh_l0"])
    return out
