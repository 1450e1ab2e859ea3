"""CTC loss on the GPU: three ``@cuda.jit`` kernels with the layout and semantics of
``kernels.ctc`` (read its docstring first), and float64 work arrays the host allocates:

    logp   (T, B, C)  float64 log-softmax of the logits; overwritten by the gradient before
                      it is scaled and cast into ``grad``
    alpha  (B, T, S)  float64 forward variables, S = 2 max(L) + 1 (row b uses 2 L_b + 1)
    beta   (B, T, S)  float64 backward variables (emission at t excluded)
    log_p  (B,)       float64 log p(y_b | x_b)

1. ``ctc_log_softmax_kernel``: one thread per (t, b) frame.
2. ``ctc_alpha_beta_kernel``: one block per sequence; its threads split the positions s and
   the block synchronises after every frame, since alpha[t] needs all of alpha[t - 1].
3. ``ctc_grad_kernel``: one thread per (t, b) frame: softmax minus the occupancy of every
   position, summed in float64 in ``logp`` (each frame has one owner, so no atomics).

``log_add`` and ``skips`` are the CPU kernel's own functions, compiled for the device.
"""
import math

from numba import cuda

from .ctc import log_add, skips

# Threads per block of the per-frame kernels (x: frames t, y: sequences b) and of the
# alpha/beta kernel (positions s; a longer label row loops).
FRAME_BLOCK = (32, 4)
POSITION_THREADS = 64


def frame_launch(T, B):
    """(grid, block) of the per-frame kernels for T frames and B sequences; the block shrinks
    to the problem when it is smaller (no idle threads, and the simulator runs one Python
    thread per CUDA thread)."""
    block = (max(1, min(FRAME_BLOCK[0], T)), max(1, min(FRAME_BLOCK[1], B)))
    return (math.ceil(T / block[0]), math.ceil(B / block[1])), block


@cuda.jit
def ctc_log_softmax_kernel(logits, input_lengths, logp):
    t, b = cuda.grid(2)
    T, B, C = logits.shape
    if t >= T or b >= B or t >= input_lengths[b]:
        return
    m = -math.inf
    for k in range(C):
        m = max(m, float(logits[t, b, k]))
    total = 0.0
    for k in range(C):
        total += math.exp(float(logits[t, b, k]) - m)
    lse = m + math.log(total)
    for k in range(C):
        logp[t, b, k] = float(logits[t, b, k]) - lse


@cuda.jit
def ctc_alpha_beta_kernel(logp, labels, input_lengths, target_lengths, alpha, beta, log_p):
    b = cuda.blockIdx.x
    first, stride = cuda.threadIdx.x, cuda.blockDim.x
    Tb = input_lengths[b]
    S = 2 * target_lengths[b] + 1
    if Tb == 0:
        if first == 0:
            log_p[b] = 0.0 if S == 1 else -math.inf
        return
    for s in range(first, S, stride):
        alpha[b, 0, s] = logp[0, b, labels[b, s]] if s < 2 else -math.inf
        beta[b, Tb - 1, s] = 0.0 if s >= S - 2 else -math.inf
    cuda.syncthreads()
    for t in range(1, Tb):
        for s in range(first, S, stride):
            a = alpha[b, t - 1, s]
            if s >= 1:
                a = log_add(a, alpha[b, t - 1, s - 1])
            if s >= 2 and skips(s, labels[b, s], labels[b, s - 2]):
                a = log_add(a, alpha[b, t - 1, s - 2])
            alpha[b, t, s] = a + logp[t, b, labels[b, s]]
        cuda.syncthreads()
    for t in range(Tb - 2, -1, -1):
        for s in range(first, S, stride):
            a = beta[b, t + 1, s] + logp[t + 1, b, labels[b, s]]
            if s + 1 < S:
                a = log_add(a, beta[b, t + 1, s + 1] + logp[t + 1, b, labels[b, s + 1]])
            if s + 2 < S and skips(s + 2, labels[b, s + 2], labels[b, s]):
                a = log_add(a, beta[b, t + 1, s + 2] + logp[t + 1, b, labels[b, s + 2]])
            beta[b, t, s] = a
        cuda.syncthreads()
    if first == 0:
        total = alpha[b, Tb - 1, S - 1]
        if S > 1:
            total = log_add(total, alpha[b, Tb - 1, S - 2])
        log_p[b] = total


@cuda.jit
def ctc_grad_kernel(logp, labels, input_lengths, target_lengths, alpha, beta, log_p, scale,
                    zero_infinity, grad):
    t, b = cuda.grid(2)
    T, B, C = grad.shape
    if t >= T or b >= B:
        return
    if t >= input_lengths[b]:
        for k in range(C):
            grad[t, b, k] = 0.0
        return
    lp = log_p[b]
    if lp == -math.inf:
        fill = 0.0 if zero_infinity else math.nan
        for k in range(C):
            grad[t, b, k] = fill
        return
    for k in range(C):
        logp[t, b, k] = math.exp(logp[t, b, k])
    for s in range(2 * target_lengths[b] + 1):
        ab = alpha[b, t, s] + beta[b, t, s]
        if ab != -math.inf:
            logp[t, b, labels[b, s]] -= math.exp(ab - lp)
    w = scale[b]
    for k in range(C):
        grad[t, b, k] = w * logp[t, b, k]
