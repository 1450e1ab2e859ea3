"""Losses that return their gradient: ``softmax_cross_entropy``, ``mse`` and ``ctc_loss``.

The first two average over the valid positions (mask weight > 0), like PyTorch's
``reduction="mean"``; ``ctc_loss`` has PyTorch's reductions.  All return ``(loss, grad)``
with ``loss`` a 0-d array on the input's backend (``float(loss)`` reads it) and ``grad``
shaped and typed like the prediction.  Work stays on the array module of the inputs (NumPy
or CuPy).
"""
import numpy as np

from engine.checks import array_module, check_choice, check_ids, check_int


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


CTC_REDUCTIONS = ("mean", "sum", "none")


def ctc_loss(logits, targets, input_lengths, target_lengths, blank=0, reduction="mean",
             zero_infinity=False, backend=None):
    """Connectionist temporal classification (Graves et al. 2006), fused with log-softmax:
    ``torch.nn.functional.ctc_loss(logits.log_softmax(2), ...)`` and its gradient with respect
    to the raw scores, from one forward-backward pass in log space accumulated in float64
    (``kernels.ctc``; ``kernels.ctc_cuda`` on the GPU backend).

    Args:
        logits: (T, B, C) float32/float64 raw scores, time-major, class ``blank`` included.
        targets: (B, S) padded labels (row b's first target_lengths[b] entries are used), or
            1-D, all sequences' labels concatenated (length sum(target_lengths)).  Integers in
            [0, C), never ``blank``.  Host or backend array.
        input_lengths: (B,) frames of each sequence, 0..T.
        target_lengths: (B,) labels of each sequence, >= 0 (0: the empty transcript).
        blank: the blank class, in [0, C).
        reduction: "mean" (each sequence's loss divided by its target length, at least 1, then
            averaged over the batch, as torch does), "sum", or "none" (the (B,) losses).
        zero_infinity: a sequence with no alignment (fewer frames than its labels need: L plus
            the number of adjacent repeats) gets loss 0 and gradient 0 instead of +inf and NaN.
        backend: "cpu", "gpu" or a Backend; None takes the GPU for CuPy logits, else the CPU.

    Returns:
        (loss, grad_logits): loss a 0-d array of the logits' dtype ((B,) for "none"); grad
        (T, B, C) of the logits' dtype, the gradient of the loss (of its sum for "none"),
        zero at frames t >= input_lengths[b].  Both in the logits' array type: NumPy for
        NumPy logits (on the GPU backend too), CuPy for CuPy logits.
    """
    _check_float("logits", logits, min_ndim=0)
    if logits.ndim != 3:
        raise ValueError(f"logits must be (T, B, C) scores, got shape {tuple(logits.shape)}")
    T, B, C = logits.shape
    backend = _ctc_backend(backend, logits)
    blank = check_int("blank", blank, 0, C - 1)
    reduction = check_choice("reduction", reduction, CTC_REDUCTIONS)
    input_lengths = _check_counts("input_lengths", input_lengths, B, backend)
    if input_lengths.max() > T:
        raise ValueError(f"input_lengths must lie in 0..T={T}, got {input_lengths.max()}")
    target_lengths = _check_counts("target_lengths", target_lengths, B, backend)
    flat = _flat_targets(targets, target_lengths, B, C, blank, backend)
    labels = _extended_labels(flat, target_lengths, blank)
    per_sequence = reduction == "mean"
    scale = 1.0 / (np.maximum(target_lengths, 1) * B) if per_sequence else np.ones(B)
    nll, grad = backend.ctc(backend.asarray(logits), labels, input_lengths, target_lengths,
                            scale, blank, bool(zero_infinity))
    if per_sequence:
        nll = nll * backend.asarray(scale)
    loss = nll.astype(logits.dtype) if reduction == "none" else nll.sum().astype(logits.dtype)
    # NumPy logits give NumPy results on every backend; device logits stay on the device.
    return backend.to_user(loss, logits), backend.to_user(grad, logits)


def _ctc_backend(backend, logits):
    from engine.backends import get_backend

    if backend is None:
        backend = "gpu" if array_module(logits) is not np else "cpu"
    return get_backend(backend)


def _check_counts(name, a, B, backend):
    """(B,) int64 host array of counts >= 0."""
    a = np.asarray(backend.to_numpy(a) if hasattr(a, "shape") else a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.shape != (B,):
        raise ValueError(f"{name} must have shape (B={B},), got {a.shape}")
    if B and a.min() < 0:
        raise ValueError(f"{name} must be >= 0, got {a.min()}")
    return a.astype(np.int64)


def _flat_targets(targets, target_lengths, B, C, blank, backend):
    """All sequences' labels concatenated (int64 host array), from the padded or 1-D form,
    checked: in [0, C) and not blank."""
    t = np.asarray(backend.to_numpy(targets) if hasattr(targets, "shape") else targets)
    if t.size and t.dtype.kind not in "iu":
        raise TypeError(f"targets must hold integers, got dtype {t.dtype}")
    total = int(target_lengths.sum())
    if t.ndim == 2:
        if t.shape[0] != B or target_lengths.max(initial=0) > t.shape[1]:
            raise ValueError(f"targets (B, S) must have B={B} rows and S >= max(target_lengths)"
                             f"={target_lengths.max(initial=0)} columns, got {t.shape}")
        t = t[np.arange(t.shape[1])[None, :] < target_lengths[:, None]]
    elif t.ndim != 1 or t.shape[0] != total:
        raise ValueError(f"targets must be (B={B}, S) padded or 1-D of length "
                         f"sum(target_lengths)={total}, got shape {t.shape}")
    t = t.astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= C):
        raise ValueError(f"targets must lie in 0..C-1={C - 1}, got values from {t.min()} to "
                         f"{t.max()}")
    if (t == blank).any():
        raise ValueError(f"targets must not contain the blank class {blank}")
    return t


def _extended_labels(flat, target_lengths, blank):
    """(B, 2 max(L) + 1) rows blank, y1, blank, ..., yL, blank (padded with blank)."""
    B = len(target_lengths)
    labels = np.full((B, 2 * int(target_lengths.max(initial=0)) + 1), blank, dtype=np.int64)
    starts = np.cumsum(target_lengths) - target_lengths
    rows = np.repeat(np.arange(B), target_lengths)
    pos = np.arange(flat.size) - np.repeat(starts, target_lengths)
    labels[rows, 1 + 2 * pos] = flat
    return labels


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
