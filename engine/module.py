"""``ParamModule``: the parameter handling every layer shares (PyTorch's ``Module``/``RNNBase``
and Keras's ``get_config`` habits, once for ``LSTM``, ``Dense`` and ``Embedding``).

A layer sets ``dtype`` and ``backend`` and defines ``get_config()`` (the constructor arguments
that rebuild it) and ``shapes_of(config)`` (its parameters in order, with PyTorch's names, from
such a config alone: a checkpoint's entries are checked against it before the layer is built).
It then has ``params`` (name -> backend array), ``grads`` (same keys, overwritten by each backward),
``state_dict``/``load_state_dict`` exchanging NumPy copies, and ``from_config``.
"""
import numpy as np

from engine.checks import check_state_dict


class ParamModule:
    """Base of the layers; see the module docstring."""

    @classmethod
    def shapes_of(cls, config):
        """Ordered {name: shape} of every parameter of the layer ``config`` (``get_config()``
        output) describes, without building it; TypeError/ValueError for a bad config."""
        raise NotImplementedError

    def param_shapes(self):
        """Ordered {name: shape} of every parameter."""
        return self.shapes_of(self.get_config())

    def get_config(self):
        """{argument: value}: the constructor arguments (JSON values; backend and seed
        excluded) that rebuild this layer with ``from_config``.  Checkpoints store it."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config, backend=None):
        """A new layer of this type from ``get_config()`` output, on ``backend``."""
        return cls(**config, backend=backend)

    def _make_params(self, draw):
        """{name: backend array} for every parameter, in ``param_shapes`` order, each drawn as
        ``draw(shape)`` (a NumPy array, cast to the layer's dtype)."""
        return {name: self.backend.asarray(draw(shape).astype(self.dtype))
                for name, shape in self.param_shapes().items()}

    def state_dict(self):
        """{name: NumPy array} copies of the parameters."""
        return {name: np.array(self.backend.to_numpy(p)) for name, p in self.params.items()}

    def load_state_dict(self, state_dict):
        """Load parameters from any mapping of array-likes (NumPy, lists, CPU torch tensors).

        Missing, unexpected, misshapen and non-finite entries are all reported in one
        ValueError, and nothing changes unless every entry is valid.  Arrays are written in
        place, so optimizers holding references keep seeing the live parameters.
        """
        loaded = check_state_dict(type(self).__name__, state_dict, self.param_shapes(),
                                  self.dtype)
        for name, a in loaded.items():
            self.params[name][...] = self.backend.asarray(a)
