"""Losses that return their gradient: ``softmax_cross_entropy`` and ``mse``.

Both average over the valid positions (mask weight > 0), like PyTorch's ``reduction="mean"``,
and return ``(loss, grad)`` with ``loss`` a 0-d array on the input's backend (``float(loss)``
reads it) and ``grad`` shaped and typed like the prediction.  Work stays on the array module of
the inputs (NumPy or CuPy).
"""
import numpy as np

from engine.checks import array_module, check_ids


def softmax_cross_entropy(logits, targets, mask=None):
    """Fused softmax + negative log-likelihood, stable through log-sum-exp.

    Args:
        logits: (..., C) float32/float64 scores.
        targets: (...) integer class ids in [0, C).
        mask: optional (...) weights (bool or float, >= 0); positions with weight 0 do not count.
            The loss is sum(w * nll) / sum(w).

    Returns:
        (loss, grad_logits): 0-d array of the logits' dtype, and (..., C)
        (softmax - onehot) * w / sum(w).
    """
    xp = _check_float("logits", logits, min_ndim=1)
    C = logits.shape[-1]
    targets = _check_targets(targets, logits.shape[:-1], C, xp)
    w = _check_mask(mask, logits.shape[:-1], logits.dtype, xp)
    shifted = (logits - logits.max(axis=-1, keepdims=True)).reshape(-1, C)
    rows, cols = xp.arange(shifted.shape[0]), targets.reshape(-1)
    e = xp.exp(shifted)
    sum_e = e.sum(axis=-1)
    nll = (xp.log(sum_e) - shifted[rows, cols]).reshape(targets.shape)
    grad = e / sum_e[:, None]
    grad[rows, cols] -= 1
    grad = grad.reshape(logits.shape)
    if w is None:
        n = nll.size
        return nll.sum() / n, grad / logits.dtype.type(n)
    denom = _mask_total(w, xp)
    return (nll * w).sum() / denom, grad * (w / denom)[..., None]


def mse(pred, target, mask=None):
    """Mean squared error.

    Args:
        pred: (...) float32/float64 predictions.
        target: same shape and dtype as pred.
        mask: optional weights over a leading part of pred's shape (e.g. (B, T) for pred
            (B, T, F)), bool or float >= 0.  The loss is sum(w * (pred - target)^2) divided by
            sum(w) times the number of elements each mask entry covers.

    Returns:
        (loss, grad_pred): 0-d array of pred's dtype and the gradient shaped like pred.
    """
    xp = _check_float("pred", pred, min_ndim=0)
    _check_float("target", target, min_ndim=0)
    if target.dtype != pred.dtype or target.shape != pred.shape:
        raise ValueError(f"target must match pred: shape {tuple(pred.shape)} dtype "
                         f"{pred.dtype}, got shape {tuple(target.shape)} dtype {target.dtype}")
    diff = pred - target
    if mask is None:
        n = pred.dtype.type(max(diff.size, 1))
        return (diff * diff).sum() / n, diff * (2 / n)
    k = getattr(mask, "ndim", np.ndim(mask))
    w = _check_mask(mask, pred.shape[:k], pred.dtype, xp)
    w = w.reshape(w.shape + (1,) * (pred.ndim - k))
    per_entry = int(np.prod(pred.shape[k:], dtype=np.int64))
    denom = _mask_total(w, xp) * pred.dtype.type(per_entry)
    return (w * diff * diff).sum() / denom, diff * (w * (2 / denom))


def _check_float(name, a, min_ndim):
    if not hasattr(a, "dtype") or not hasattr(a, "shape"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    if a.ndim < min_ndim or any(s == 0 for s in a.shape):
        raise ValueError(f"{name} must be a non-empty array with at least {min_ndim} axes, "
                         f"got shape {tuple(a.shape)}")
    return array_module(a)


def _check_targets(targets, shape, C, xp):
    """The targets as an array of ``xp`` (lists accepted), checked against the logits."""
    targets = check_ids("targets", targets, C, "class ids")
    if tuple(targets.shape) != tuple(shape):
        raise ValueError(f"targets must have shape {tuple(shape)} (logits' shape without the "
                         f"class axis), got {tuple(targets.shape)}")
    return xp.asarray(targets)


def _check_mask(mask, shape, dtype, xp):
    """Validate a (shape) mask of bools or non-negative floats; returns it as dtype or None."""
    if mask is None:
        return None
    if not hasattr(mask, "dtype") or not hasattr(mask, "shape"):
        raise TypeError(f"mask must be an array, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"mask must have shape {tuple(shape)}, got {tuple(mask.shape)}")
    if mask.dtype != np.bool_ and not np.issubdtype(np.dtype(mask.dtype), np.number):
        raise TypeError(f"mask must be bool or numeric, got dtype {mask.dtype}")
    w = xp.asarray(mask).astype(dtype)
    if not bool(xp.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError("mask weights must be finite and >= 0")
    return w


def _mask_total(w, xp):
    total = w.sum()
    if not bool(total > 0):
        raise ValueError("mask selects no position: the loss would be 0/0")
    return total
