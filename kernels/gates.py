"""Scalar LSTM cell math, written once and used by the CPU (@njit) and GPU (@cuda.jit) kernels.

Every function here is a ``numba.njit`` scalar function: Numba inlines it into CPU kernels and
numba-cuda compiles it for the device when a ``@cuda.jit`` kernel calls it.  Derivatives are
taken from the saved *outputs* of the activations (haste's ``inline_ops.h`` habit), so the
backward pass never recomputes an exponential.

``act`` is an activation code (``kernels.ACT_*``): bit 0 chooses the cell activation, tanh (0)
or relu (1), applied to the candidate gate g and to the cell before the output gate; i, f, o
always use the sigmoid.  Bit 1 (``ACT_FAST``) asks for the float32 rational tanh below instead
of libm's: it is branch-free, so LLVM vectorises the CPU pointwise loops, which it cannot do
with calls to ``tanhf``/``expf`` (llvmlite's wheels have no SVML).  ``act`` is loop-invariant,
so LLVM unswitches the test out of the kernels' inner loops.

Each product that feeds a sum is written as ``muladd`` (``kernels.simd``): one rounding on
CPUs with FMA, chosen by the target and not by the code around it, so the kernels that inline
these functions and a call from Python round alike (``kernels.KERNEL``).

Constants are float32 values exactly representable in float64 (1, 0.5, 0): float32 arithmetic
stays float32 and float64 arithmetic is unchanged (a float64 literal would silently promote
float32 math to float64).
"""
import math

import numpy as np
from numba import njit

from . import KERNEL
from .simd import muladd

_0 = np.float32(0.0)
_1 = np.float32(1.0)
_HALF = np.float32(0.5)
# Eigen's generic_fast_tanh_float: tanh(x) = x * P(x^2) / Q(x^2) on [-7.905, 7.905], where
# float32 tanh is already +-1 outside; max error about 3 float32 ulps (tested).
_CLAMP = np.float32(7.90531110763549805)
_P = tuple(np.float32(v) for v in (-2.76076847742355e-16, 2.00018790482477e-13,
                                   -8.60467152213735e-11, 5.12229709037114e-08,
                                   1.48572235717979e-05, 6.37261928875436e-04,
                                   4.89352455891786e-03))
_Q = tuple(np.float32(v) for v in (1.19825839466702e-06, 1.18534705686654e-04,
                                   2.26843463243900e-03, 4.89352518554385e-03))
P0, P1, P2, P3, P4, P5, P6 = _P
Q0, Q1, Q2, Q3 = _Q


@njit(inline="always", **KERNEL)
def tanh_fast(x):
    """float32 tanh as a branch-free rational function (for ACT_FAST)."""
    x = max(min(x, _CLAMP), -_CLAMP)
    x2 = x * x
    p = muladd(P0, x2, P1)  # Horner's rule, one rounding a step
    p = muladd(p, x2, P2)
    p = muladd(p, x2, P3)
    p = muladd(p, x2, P4)
    p = muladd(p, x2, P5)
    p = muladd(p, x2, P6)
    q = muladd(Q0, x2, Q1)
    q = muladd(q, x2, Q2)
    q = muladd(q, x2, Q3)
    return p * x / q


@njit(inline="always", **KERNEL)
def sigmoid_fast(x):
    return muladd(_HALF, tanh_fast(_HALF * x), _HALF)  # exact identity, fast tanh


@njit(inline="always", **KERNEL)
def cell_act_fast(x, act):
    """The cell activation with the fast tanh: relu when bit 0 of ``act`` is set."""
    if act & 1:
        return max(x, _0)
    return tanh_fast(x)


@njit(inline="always", **KERNEL)
def sigmoid(x, act):
    if act & 2:
        return sigmoid_fast(x)
    # Split on the sign so exp never overflows (exp(-x) for x << 0 would be inf).
    if x >= _0:
        return _1 / (_1 + math.exp(-x))
    z = math.exp(x)
    return z / (_1 + z)


@njit(inline="always", **KERNEL)
def cell_act(x, act):
    """The cell activation: tanh, or relu when bit 0 of ``act`` is set."""
    if act & 1:
        return max(x, _0)
    if act & 2:
        return tanh_fast(x)
    return math.tanh(x)


@njit(inline="always", **KERNEL)
def cell_act_grad(y, act):
    """d act(x)/dx written in terms of y = act(x)."""
    if act & 1:
        return _1 if y > _0 else _0
    return muladd(-y, y, _1)


@njit(inline="always", **KERNEL)
def lstm_cell_fwd_fast(i_pre, f_pre, g_pre, o_pre, c_prev, act):
    """``lstm_cell_fwd`` with ACT_FAST: only arithmetic, min and max, so it also runs on the
    16-unit vectors of ``kernels.simd`` (``kernels.step``'s vector step and the fused GEMM
    epilogue of ``kernels.seq_units``)."""
    i = sigmoid_fast(i_pre)
    f = sigmoid_fast(f_pre)
    g = cell_act_fast(g_pre, act)
    o = sigmoid_fast(o_pre)
    c = muladd(f, c_prev, i * g)
    h = o * cell_act_fast(c, act)
    return i, f, g, o, c, h


@njit(inline="always", **KERNEL)
def lstm_cell_fwd(i_pre, f_pre, g_pre, o_pre, c_prev, act):
    """One hidden unit of one step, from gate pre-activations to (i, f, g, o, c, h)."""
    if act & 2:
        return lstm_cell_fwd_fast(i_pre, f_pre, g_pre, o_pre, c_prev, act)
    i = sigmoid(i_pre, act)
    f = sigmoid(f_pre, act)
    g = cell_act(g_pre, act)
    o = sigmoid(o_pre, act)
    c = muladd(f, c_prev, i * g)
    h = o * cell_act(c, act)
    return i, f, g, o, c, h


@njit(inline="always", **KERNEL)
def _cell_bwd(i, f, g, o, a, a_grad, g_grad, c_prev, dh, dc):
    """The backward's arithmetic, given a = act(c), a_grad = act'(c) and g_grad = act'(g_pre)
    (both written in terms of the activation's output)."""
    dc_total = muladd(dh * o, a_grad, dc)
    di_pre = dc_total * g * i * (_1 - i)
    df_pre = dc_total * c_prev * f * (_1 - f)
    dg_pre = dc_total * i * g_grad
    do_pre = dh * a * o * (_1 - o)
    return di_pre, df_pre, dg_pre, do_pre, dc_total * f


@njit(inline="always", **KERNEL)
def lstm_cell_bwd_fast(i, f, g, o, c, c_prev, dh, dc):
    """``lstm_cell_bwd`` for act == ACT_FAST (tanh cell, fast tanh): only arithmetic, so it also
    runs on ``kernels.simd`` vectors."""
    a = tanh_fast(c)
    return _cell_bwd(i, f, g, o, a, muladd(-a, a, _1), muladd(-g, g, _1), c_prev, dh, dc)


@njit(inline="always", **KERNEL)
def lstm_cell_bwd(i, f, g, o, c, c_prev, dh, dc, act):
    """Backward of ``lstm_cell_fwd`` for one hidden unit.

    dh: total gradient reaching h_t (from the output and from step t+1);
    dc: gradient reaching c_t from step t+1.
    Returns the gradients of the four gate pre-activations and of c_{t-1}.
    """
    a = cell_act(c, act)
    return _cell_bwd(i, f, g, o, a, cell_act_grad(a, act), cell_act_grad(g, act), c_prev, dh,
                     dc)
