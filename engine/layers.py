"""Non-recurrent layers for the training stack: ``Dense`` (linear + activation) and ``Embedding``.

Both follow ``engine.LSTM``'s conventions (``engine.module.ParamModule``): parameters in
``params`` (name -> backend array, with ``torch.nn.Linear`` / ``torch.nn.Embedding`` names),
gradients in ``grads`` (same keys, overwritten by each ``backward``), ``backward`` runs through
the latest ``forward``, and ``state_dict`` / ``load_state_dict`` exchange NumPy copies.
"""
import math

import numpy as np

from engine.backends import get_backend
from engine.checks import (MAX_SIZE, as_array, check_array, check_choice, check_dtype, check_ids,
                           check_int)
from engine.grad import private, protect
from engine.module import ParamModule

DENSE_ACTIVATIONS = (None, "tanh", "relu", "sigmoid")


class Dense(ParamModule):
    """Affine map on the last axis, ``y = act(x @ W^T + b)``, like ``torch.nn.Linear``.

    Args:
        in_features (F_in), out_features (F_out): sizes of the last axis.
        activation: None (identity), "tanh", "relu" or "sigmoid".
        bias: learn b when True.
        dtype: "float32" or "float64"; inputs must already have it.
        backend: "cpu", "gpu", "auto" or None (``ENGINE_BACKEND``).
        seed: seed of PyTorch's U(-1/sqrt(F_in), 1/sqrt(F_in)) initialisation.

    Parameters: ``weight`` (F_out, F_in), ``bias`` (F_out,).
    """

    def __init__(self, in_features, out_features, activation=None, bias=True, dtype="float32",
                 backend=None, seed=None):
        self.in_features = check_int("in_features", in_features, 1, MAX_SIZE)
        self.out_features = check_int("out_features", out_features, 1, MAX_SIZE)
        self.activation = check_choice("activation", activation, DENSE_ACTIVATIONS)
        self.bias = bool(bias)
        self.dtype = check_dtype(dtype)
        self.backend = get_backend(backend)
        rng = np.random.default_rng(seed)
        k = 1.0 / math.sqrt(self.in_features)
        self.params = self._make_params(lambda shape: rng.uniform(-k, k, shape))
        self.grads = {}
        self._saved = None

    @classmethod
    def shapes_of(cls, config):
        out_f = check_int("out_features", config["out_features"], 1, MAX_SIZE)
        shapes = {"weight": (out_f, check_int("in_features", config["in_features"], 1, MAX_SIZE))}
        if config.get("bias", True):
            shapes["bias"] = (out_f,)
        return shapes

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "activation": self.activation, "bias": self.bias, "dtype": self.dtype.name}

    def forward(self, x):
        """x: (..., F_in) of the layer's dtype, any rank >= 1.  Returns y: (..., F_out),
        read-only (the backward reads it; see ``engine.grad``)."""
        x_user = x
        x = as_array("input", x, self.dtype)
        ndim = x.ndim
        if ndim < 1:
            raise ValueError(f"input must have shape (..., in_features={self.in_features}), "
                             f"got a scalar")
        x = self.backend.asarray(check_array(
            "input", x, self.dtype, (None,) * (ndim - 1) + (self.in_features,),
            f"(..., in_features={self.in_features})", self.backend))
        x2 = x.reshape(-1, self.in_features)
        y = self.backend.matmul(x2, self.params["weight"].T)
        if self.bias:
            y += self.params["bias"]
        y = _activate(self.backend.xp, self.activation, y)
        self._saved = {"x2": private(x2, x_user), "y": y, "shape": x.shape}
        return protect(y).reshape(x.shape[:-1] + (self.out_features,))

    __call__ = forward

    def backward(self, grad):
        """grad: dL/dy, shaped like forward's output.  Returns dL/dx shaped like x and writes
        ``grads['weight']`` (F_out, F_in) and ``grads['bias']`` (F_out,)."""
        if self._saved is None:
            raise ValueError("backward() needs a forward() first")
        s = self._saved
        out_shape = s["shape"][:-1] + (self.out_features,)
        g = self.backend.asarray(check_array("grad", grad, self.dtype, out_shape,
                                             f"{out_shape} (the shape of forward's output)",
                                             self.backend))
        dz = _activate_grad(self.activation, g.reshape(-1, self.out_features), s["y"])
        self.grads = {"weight": self.backend.matmul(dz.T, s["x2"])}
        if self.bias:
            self.grads["bias"] = dz.sum(axis=0)
        return self.backend.matmul(dz, self.params["weight"]).reshape(s["shape"])

    def __repr__(self):
        return (f"Dense({self.in_features}, {self.out_features}, activation={self.activation!r}"
                f", bias={self.bias}, dtype={self.dtype.name!r}, "
                f"backend={self.backend.name!r})")


def _activate(xp, name, z):
    """Apply the activation in place on a fresh array z."""
    if name == "tanh":
        xp.tanh(z, out=z)
    elif name == "relu":
        xp.maximum(z, 0, out=z)
    elif name == "sigmoid":
        # 1 / (1 + exp(-z)) overflows harmlessly to 0 for very negative z (exp -> inf).
        with np.errstate(over="ignore"):
            xp.negative(z, out=z)
            xp.exp(z, out=z)
            z += 1
            xp.reciprocal(z, out=z)
    return z


def _activate_grad(name, g, y):
    """dL/dz from dL/dy = g and the saved activation output y (derivatives from outputs)."""
    if name is None:
        return g
    if name == "tanh":
        return g * (1 - y * y)
    if name == "relu":
        return g * (y > 0)
    return g * y * (1 - y)


class Embedding(ParamModule):
    """Lookup table for integer tokens, like ``torch.nn.Embedding``.

    Args:
        num_embeddings (V): vocabulary size; indices must lie in [0, V).
        embedding_dim (E): size of each vector.
        dtype, backend: as for ``Dense``.
        seed: seed of PyTorch's N(0, 1) initialisation.

    Parameter: ``weight`` (V, E).  The input is not differentiable, so ``backward`` returns None.
    """

    def __init__(self, num_embeddings, embedding_dim, dtype="float32", backend=None, seed=None):
        self.num_embeddings = check_int("num_embeddings", num_embeddings, 1, MAX_SIZE)
        self.embedding_dim = check_int("embedding_dim", embedding_dim, 1, MAX_SIZE)
        self.dtype = check_dtype(dtype)
        self.backend = get_backend(backend)
        rng = np.random.default_rng(seed)
        self.params = self._make_params(rng.standard_normal)
        self.grads = {}
        self._saved = None

    @classmethod
    def shapes_of(cls, config):
        return {"weight": (check_int("num_embeddings", config["num_embeddings"], 1, MAX_SIZE),
                           check_int("embedding_dim", config["embedding_dim"], 1, MAX_SIZE))}

    def get_config(self):
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "dtype": self.dtype.name}

    def forward(self, idx):
        """idx: integer array of any shape (...), values in [0, V).  Returns (..., E)."""
        given = idx
        idx = self.backend.asarray(check_ids("input", idx, self.num_embeddings, "token ids"))
        self._saved = private(idx, given)
        return self.params["weight"][idx]

    __call__ = forward

    def backward(self, grad):
        """grad: (..., E) like forward's output.  Writes ``grads['weight']`` (V, E), summing the
        rows of repeated tokens; returns None."""
        if self._saved is None:
            raise ValueError("backward() needs a forward() first")
        idx = self._saved
        shape = tuple(idx.shape) + (self.embedding_dim,)
        g = self.backend.asarray(check_array("grad", grad, self.dtype, shape,
                                             f"{shape} (the shape of forward's output)",
                                             self.backend))
        gw = self.backend.xp.zeros((self.num_embeddings, self.embedding_dim), self.dtype)
        self.backend.scatter_add(gw, idx.reshape(-1), g.reshape(-1, self.embedding_dim))
        self.grads = {"weight": gw}
        return None

    def __repr__(self):
        return (f"Embedding({self.num_embeddings}, {self.embedding_dim}, "
                f"dtype={self.dtype.name!r}, backend={self.backend.name!r})")


class Subsample(ParamModule):
    """Frame subsampling by stacking: every ``factor`` adjacent steps become one step with
    their features side by side, (B, T, F) -> (B, ceil(T / factor), factor * F), the pyramid
    of Listen-Attend-Spell (Chan et al. 2016) and of Deep Speech 2's strided layers.  The last
    step is completed with zeros when T does not divide.  Sequential maps ``lengths`` through
    it (``out_lengths``), so later LSTMs and the loss see each sequence's own steps.

    Args:
        in_features (F): size of the last axis.
        factor (k): steps stacked into one, >= 1.
        dtype, backend: as for ``Dense``.  No parameters.
    """

    def __init__(self, in_features, factor=2, dtype="float32", backend=None):
        self.in_features = check_int("in_features", in_features, 1, MAX_SIZE)
        self.factor = check_int("factor", factor, 1, 64)
        self.out_features = self.in_features * self.factor
        self.dtype = check_dtype(dtype)
        self.backend = get_backend(backend)
        self.params, self.grads, self._saved = {}, {}, None

    @classmethod
    def shapes_of(cls, config):
        check_int("in_features", config["in_features"], 1, MAX_SIZE)
        check_int("factor", config["factor"], 1, 64)
        return {}

    def get_config(self):
        return {"in_features": self.in_features, "factor": self.factor,
                "dtype": self.dtype.name}

    def out_lengths(self, lengths):
        """Steps each sequence keeps: ceil(lengths / factor) (any integer array)."""
        return -(-np.asarray(lengths) // self.factor)

    def forward(self, x):
        """x: (B, T, F).  Returns (B, ceil(T / k), k F)."""
        x = self.backend.asarray(check_array(
            "input", x, self.dtype, (None, None, self.in_features),
            f"(B, T, in_features={self.in_features})", self.backend))
        B, T, F = x.shape
        k = self.factor
        pad = -T % k
        if pad:
            x = self.backend.xp.concatenate([x, self.backend.xp.zeros((B, pad, F), x.dtype)], 1)
        self._saved = (B, T, F)
        return x.reshape(B, (T + pad) // k, k * F)

    __call__ = forward

    def backward(self, grad):
        """grad: (B, ceil(T / k), k F).  Returns dL/dx, (B, T, F)."""
        if self._saved is None:
            raise ValueError("backward() needs a forward() first")
        B, T, F = self._saved
        g = self.backend.asarray(grad)
        return g.reshape(B, -1, F)[:, :T]

    def __repr__(self):
        return (f"Subsample({self.in_features}, factor={self.factor}, "
                f"dtype={self.dtype.name!r}, backend={self.backend.name!r})")
