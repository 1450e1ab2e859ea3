"""CTC loss on the CPU: forward-backward in log space fused with log-softmax, one ``@njit``
kernel parallel over the batch (Graves et al. 2006, "Connectionist Temporal Classification").

Layout (time-major, as ``torch.nn.functional.ctc_loss``):

    logits         (T, B, C)  float32/float64 raw scores; the kernel applies log-softmax
    labels         (B, S)     int64 extended labels l' = blank, y1, blank, y2, ..., blank;
                              the first 2 L_b + 1 entries of row b are used
    input_lengths  (B,)       int64 frames of each sequence, 0..T
    target_lengths (B,)       int64 labels L_b of each sequence, >= 0
    scale          (B,)       float64 factor applied to each sequence's gradient (the
                              reduction's weight: 1, or 1 / (max(L_b, 1) B) for "mean")
    nll            (B,)       float64 out: -log p(y_b | x_b); +inf where no alignment exists
    grad           (T, B, C)  out, logits' dtype: scale_b * d nll_b / d logits;
                              0 for t >= input_lengths[b]

Every sum over paths accumulates in float64 whatever the logits' dtype.  Notation: alpha[t, s]
is the log probability of all prefixes of alignments that emit l'_s at frame t (emission at t
included); beta[t, s] that of all suffixes after frame t given l'_s at t (emission at t
excluded), so alpha + beta is the log probability of the paths through (t, s) and the gradient
of nll with respect to the logits is softmax - occupancy / p (Graves 2012, eq. 7.30).

A sequence with no alignment (fewer frames than its labels need) gets nll = +inf and a NaN
gradient, as PyTorch gives; with ``zero_infinity`` both are 0.
"""
import math

import numpy as np
from numba import njit, prange

NEG_INF = -np.inf


@njit(cache=True, inline="always")
def log_add(a, b):
    """log(exp(a) + exp(b)) without overflow; exact when either is -inf.  Numba compiles
    it for the CUDA kernels too (``kernels.ctc_cuda``)."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


@njit(cache=True, inline="always")
def skips(s, label, label_before):
    """Whether a path may jump from l'_{s-2} to l'_s (s >= 2): l'_s is a label (odd s, not
    blank) that differs from the label before it.  Scalars only, so that the CUDA simulator
    can call it too."""
    return s % 2 == 1 and label != label_before


@njit(cache=True, parallel=True)
def ctc_loss_kernel(logits, labels, input_lengths, target_lengths, scale, blank,
                    zero_infinity, nll, grad):
    """Loss and gradient of every sequence (layout in the module docstring).  Each thread
    owns whole sequences; its float64 work arrays (Tb, C) and (Tb, 2 L + 1) are made once per
    sequence, outside its time loops."""
    T, B, C = logits.shape
    for b in prange(B):
        Tb = input_lengths[b]
        S = 2 * target_lengths[b] + 1
        for t in range(Tb, T):
            for k in range(C):
                grad[t, b, k] = 0.0
        logp = _log_softmax_rows(logits, b, Tb)
        alpha = _ctc_alpha(logp, labels, b, S)
        beta = _ctc_beta(logp, labels, b, S)
        log_p = _log_total(alpha, Tb, S)
        if log_p == NEG_INF:
            nll[b] = 0.0 if zero_infinity else np.inf
            fill = 0.0 if zero_infinity else np.nan
            for t in range(Tb):
                for k in range(C):
                    grad[t, b, k] = fill
            continue
        nll[b] = -log_p
        _ctc_grad_rows(logp, labels, alpha, beta, log_p, scale[b], b, S, grad)


@njit(cache=True, inline="always")
def _log_softmax_rows(logits, b, Tb):
    """(Tb, C) float64 log-softmax of sequence b's frames."""
    C = logits.shape[2]
    logp = np.empty((Tb, C))
    for t in range(Tb):
        m = -np.inf
        for k in range(C):
            m = max(m, float(logits[t, b, k]))
        total = 0.0
        for k in range(C):
            total += math.exp(float(logits[t, b, k]) - m)
        lse = m + math.log(total)
        for k in range(C):
            logp[t, k] = float(logits[t, b, k]) - lse
    return logp


@njit(cache=True, inline="always")
def _ctc_alpha(logp, labels, b, S):
    Tb = logp.shape[0]
    alpha = np.full((Tb, S), NEG_INF)
    if Tb == 0:
        return alpha
    alpha[0, 0] = logp[0, labels[b, 0]]
    if S > 1:
        alpha[0, 1] = logp[0, labels[b, 1]]
    for t in range(1, Tb):
        for s in range(S):
            a = alpha[t - 1, s]
            if s >= 1:
                a = log_add(a, alpha[t - 1, s - 1])
            if s >= 2 and skips(s, labels[b, s], labels[b, s - 2]):
                a = log_add(a, alpha[t - 1, s - 2])
            alpha[t, s] = a + logp[t, labels[b, s]]
    return alpha


@njit(cache=True, inline="always")
def _ctc_beta(logp, labels, b, S):
    Tb = logp.shape[0]
    beta = np.full((Tb, S), NEG_INF)
    if Tb == 0:
        return beta
    beta[Tb - 1, S - 1] = 0.0
    if S > 1:
        beta[Tb - 1, S - 2] = 0.0
    for t in range(Tb - 2, -1, -1):
        for s in range(S):
            a = beta[t + 1, s] + logp[t + 1, labels[b, s]]
            if s + 1 < S:
                a = log_add(a, beta[t + 1, s + 1] + logp[t + 1, labels[b, s + 1]])
            if s + 2 < S and skips(s + 2, labels[b, s + 2], labels[b, s]):
                a = log_add(a, beta[t + 1, s + 2] + logp[t + 1, labels[b, s + 2]])
            beta[t, s] = a
    return beta


@njit(cache=True, inline="always")
def _log_total(alpha, Tb, S):
    """log p(y | x): paths end on the last label or the blank after it.  With no frames only
    the empty labelling has an alignment (the empty one)."""
    if Tb == 0:
        return 0.0 if S == 1 else NEG_INF
    total = alpha[Tb - 1, S - 1]
    if S > 1:
        total = log_add(total, alpha[Tb - 1, S - 2])
    return total


@njit(cache=True, inline="always")
def _ctc_grad_rows(logp, labels, alpha, beta, log_p, w, b, S, grad):
    """grad[t, b] = w (softmax - occupancy) for the sequence's frames, summed in float64."""
    Tb, C = logp.shape
    row = np.empty(C)
    for t in range(Tb):
        for k in range(C):
            row[k] = math.exp(logp[t, k])
        for s in range(S):
            ab = alpha[t, s] + beta[t, s]
            if ab != NEG_INF:
                row[labels[b, s]] -= math.exp(ab - log_p)
        for k in range(C):
            grad[t, b, k] = w * row[k]
