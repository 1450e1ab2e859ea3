"""Optimizers that update parameters in place on their backend: ``SGD``, ``Adam`` (decoupled
weight decay, i.e. ``torch.optim.AdamW``) and ``clip_grad_norm``.

An optimizer is given two dicts with the same keys, ``params`` and ``grads`` (name -> array on
the backend, NumPy or CuPy), and keeps its per-parameter buffers under the same names.  Updates
use only array operations with host scalars, so nothing is copied to the host.
"""
import math
import numbers

import numpy as np

from engine.checks import array_module, check_real


class Optimizer:
    """Base class: learning rate, optional schedule, step counter and state (de)serialisation.

    ``schedule``: optional callable ``schedule(step) -> lr`` with ``step`` the number of updates
    already taken (0 for the first); it overrides ``lr`` when given.  It is not saved by
    ``state_dict``: set it again after loading a checkpoint.
    """

    buffer_names = ()

    def __init__(self, lr, schedule=None):
        self.lr = _check_positive("lr", lr, allow_zero=True)
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be a callable step -> lr, got "
                            f"{type(schedule).__name__}")
        self.schedule = schedule
        self.steps = 0
        self.state = {}  # name -> {buffer name: array}

    def current_lr(self):
        """The learning rate the next ``step`` uses."""
        if self.schedule is None:
            return self.lr
        return _check_positive("schedule(step)", self.schedule(self.steps), allow_zero=True)

    def step(self, params, grads):
        """Update every ``params[name]`` in place from ``grads[name]``.

        params, grads: dicts with the same keys; each gradient has its parameter's shape and
        dtype.  Raises before any update when keys or shapes disagree.
        """
        _check_pairs(params, grads)
        lr = self.current_lr()
        self.steps += 1
        for name, p in params.items():
            self._update(name, p, grads[name], lr)

    def state_dict(self):
        """{"config": JSON-able dict, "steps": int, "buffers": {"name/buf": NumPy array}}."""
        buffers = {f"{name}/{b}": np.array(_to_numpy(a))
                   for name, st in self.state.items() for b, a in st.items()}
        return {"config": self.get_config(), "steps": self.steps, "buffers": buffers}

    def load_state_dict(self, state, params):
        """Restore ``steps`` and buffers saved by ``state_dict``; ``params`` (the live
        parameters) give each buffer's backend and dtype.  Everything is checked before
        anything changes: the optimizer type, a step count >= 0, each buffer matching a
        parameter's shape with finite values of its kind (``_check_buffer``), and after any
        step every buffer this optimizer keeps present for every parameter."""
        if not isinstance(state, dict) or not isinstance(state.get("buffers"), dict):
            raise TypeError("optimizer state must be a dict with 'config', 'steps' and "
                            f"'buffers', got {type(state).__name__}")
        kind = state.get("config", {}).get("type") if isinstance(state.get("config"), dict) \
            else None
        if kind != type(self).__name__:
            raise ValueError(f"optimizer state is for {kind!r}, not {type(self).__name__}")
        steps = state.get("steps")
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
            raise ValueError(f"optimizer steps must be an integer >= 0, got {steps!r}")
        xp_state = {}
        for key, a in state["buffers"].items():
            name, _, buf = str(key).rpartition("/")
            if name not in params or buf not in self.buffer_names:
                raise ValueError(f"optimizer buffer {key!r} matches no parameter")
            p = params[name]
            a = np.asarray(_to_numpy(a))
            if a.dtype.kind not in "fiu" or tuple(a.shape) != tuple(p.shape):
                raise ValueError(f"optimizer buffer {key!r} is {a.dtype} {tuple(a.shape)}, "
                                 f"parameter is {p.dtype} {tuple(p.shape)}")
            problem = self._check_buffer(buf, a)
            if problem:
                raise ValueError(f"optimizer buffer {key!r} {problem}")
            xp_state.setdefault(name, {})[buf] = array_module(p).asarray(a, dtype=p.dtype)
        missing = [f"{name}/{b}" for name in params for b in self.kept_buffers()
                   if steps and b not in xp_state.get(name, {})]
        if missing:
            raise ValueError(f"optimizer state after {steps} steps lacks buffers {missing[:4]}"
                             + (f" and {len(missing) - 4} more" if len(missing) > 4 else ""))
        self.steps = int(steps)
        self.state = xp_state

    def kept_buffers(self):
        """The buffers every parameter has after a step."""
        return self.buffer_names

    def _check_buffer(self, buf, a):
        """What is wrong with buffer values ``a`` (a NumPy array), or None."""
        return None if np.isfinite(a).all() else "contains NaN or Inf"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``
    (dampening 0): buf = momentum * buf + g (buf = g at the first step);
    p -= lr * (g + momentum * buf if nesterov else buf)."""

    buffer_names = ("momentum",)

    def __init__(self, lr, momentum=0.0, nesterov=False, schedule=None):
        super().__init__(lr, schedule)
        self.momentum = _check_positive("momentum", momentum, allow_zero=True)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")

    def kept_buffers(self):
        return self.buffer_names if self.momentum else ()

    def _update(self, name, p, g, lr):
        if self.momentum == 0:
            p -= lr * g
            return
        st = self.state.setdefault(name, {})
        buf = st.get("momentum")
        if buf is None:
            buf = st["momentum"] = g.copy()
        else:
            buf *= self.momentum
            buf += g
        p -= lr * (g + self.momentum * buf) if self.nesterov else lr * buf

    def get_config(self):
        return {"type": "SGD", "lr": self.lr, "momentum": self.momentum,
                "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam with decoupled weight decay (``torch.optim.AdamW``; plain Adam when
    weight_decay=0).  Per step t (1-based):

        p *= 1 - lr * weight_decay
        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    buffer_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, schedule=None):
        super().__init__(lr, schedule)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = tuple(float(b) for b in betas)
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
        self.eps = _check_positive("eps", eps, allow_zero=False)
        self.weight_decay = _check_positive("weight_decay", weight_decay, allow_zero=True)

    def _check_buffer(self, buf, a):
        problem = super()._check_buffer(buf, a)
        if problem is None and buf == "exp_avg_sq" and (a < 0).any():
            problem = "has negative values (a running mean of squares)"
        return problem

    def _update(self, name, p, g, lr):
        b1, b2 = self.betas
        st = self.state.get(name)
        if st is None:
            xp = array_module(p)
            st = self.state[name] = {"exp_avg": xp.zeros_like(p), "exp_avg_sq": xp.zeros_like(p)}
        m, v = st["exp_avg"], st["exp_avg_sq"]
        if self.weight_decay:
            p *= 1 - lr * self.weight_decay
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        t = self.steps  # already incremented by step()
        step_size = lr / (1 - b1 ** t)
        denom = array_module(v).sqrt(v)
        denom /= math.sqrt(1 - b2 ** t)
        denom += self.eps
        p -= step_size * m / denom

    def get_config(self):
        return {"type": "Adam", "lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay}


OPTIMIZERS = {"SGD": SGD, "Adam": Adam}


def optimizer_from_config(config):
    """Rebuild an optimizer from ``get_config()`` output (the schedule is not restored)."""
    config = dict(config)
    kind = config.pop("type", None)
    if kind not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer type {kind!r}; expected one of {tuple(OPTIMIZERS)}")
    return OPTIMIZERS[kind](**config)


def clip_grad_norm(grads, max_norm):
    """Scale all gradients in place so that their global L2 norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: coef = min(1, max_norm / (norm + 1e-6)), applied
    without a host round trip.  grads: dict name -> array, or an iterable of arrays.
    Returns the norm before clipping as a 0-d array.
    """
    max_norm = _check_positive("max_norm", max_norm, allow_zero=False)
    if isinstance(grads, (str, bytes)) or not hasattr(grads, "__iter__"):
        raise TypeError(f"grads must be a dict name -> array or an iterable of arrays, got "
                        f"{type(grads).__name__}")
    arrays = list(grads.values()) if hasattr(grads, "values") else list(grads)
    if not arrays:
        raise ValueError("grads must contain at least one array")
    kinds = {type(g).__name__ for g in arrays
             if not (hasattr(g, "dtype") and hasattr(g, "shape") and g.dtype.kind == "f")}
    if kinds:
        raise TypeError(f"grads must be floating-point arrays, got {sorted(kinds)}")
    xp = array_module(arrays[0])
    total = xp.sqrt(sum(xp.sum(g * g) for g in arrays))
    coef = xp.minimum(max_norm / (total + 1e-6), 1.0)
    for g in arrays:
        g *= coef.astype(g.dtype)
    return total


def _check_positive(name, value, allow_zero):
    value = check_real(name, value)
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, "
                         f"got {value}")
    return value


def _check_pairs(params, grads):
    if not hasattr(params, "items") or not hasattr(grads, "items"):
        raise TypeError("params and grads must be dicts name -> array")
    if params.keys() != grads.keys():
        missing = sorted(params.keys() - grads.keys())
        extra = sorted(grads.keys() - params.keys())
        raise ValueError(f"grads must have the keys of params: missing {missing}, "
                         f"unexpected {extra}")
    for name, p in params.items():
        g = grads[name]
        if tuple(g.shape) != tuple(p.shape) or g.dtype != p.dtype:
            raise ValueError(f"grads[{name!r}] must have shape {tuple(p.shape)} and dtype "
                             f"{p.dtype}, got {tuple(g.shape)} {g.dtype}")


def _to_numpy(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)
