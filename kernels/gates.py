"""Scalar LSTM cell math, written once and used by the CPU (@njit) and GPU (@cuda.jit) kernels.

Every function here is a ``numba.njit`` scalar function: Numba inlines it into CPU kernels and
numba-cuda compiles it for the device when a ``@cuda.jit`` kernel calls it.  Derivatives are
taken from the saved *outputs* of the activations (haste's ``inline_ops.h`` habit), so the
backward pass never recomputes an exponential.

``act`` is an activation code from ``kernels.ACTIVATIONS``: 0 tanh, 1 relu.  It applies to the
candidate gate g and to the cell before the output gate; i, f, o always use the sigmoid.
"""
import math

from numba import njit


@njit(cache=True, inline="always")
def sigmoid(x):
    # Split on the sign so exp never overflows (exp(-x) for x << 0 would be inf).
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@njit(cache=True, inline="always")
def cell_act(x, act):
    """The cell activation: tanh (act=0) or relu (act=1)."""
    if act == 1:
        return max(x, 0.0)
    return math.tanh(x)


@njit(cache=True, inline="always")
def cell_act_grad(y, act):
    """d act(x)/dx written in terms of y = act(x)."""
    if act == 1:
        return 1.0 if y > 0 else 0.0
    return 1.0 - y * y


@njit(cache=True, inline="always")
def lstm_cell_fwd(i_pre, f_pre, g_pre, o_pre, c_prev, act):
    """One hidden unit of one step, from gate pre-activations to (i, f, g, o, c, h)."""
    i = sigmoid(i_pre)
    f = sigmoid(f_pre)
    g = cell_act(g_pre, act)
    o = sigmoid(o_pre)
    c = f * c_prev + i * g
    h = o * cell_act(c, act)
    return i, f, g, o, c, h


@njit(cache=True, inline="always")
def lstm_cell_bwd(i, f, g, o, c, c_prev, dh, dc, act):
    """Backward of ``lstm_cell_fwd`` for one hidden unit.

    dh: total gradient reaching h_t (from the output and from step t+1);
    dc: gradient reaching c_t from step t+1.
    Returns the gradients of the four gate pre-activations and of c_{t-1}.
    """
    a = cell_act(c, act)
    dc_total = dc + dh * o * cell_act_grad(a, act)
    di_pre = dc_total * g * i * (1.0 - i)
    df_pre = dc_total * c_prev * f * (1.0 - f)
    dg_pre = dc_total * i * cell_act_grad(g, act)
    do_pre = dh * a * o * (1.0 - o)
    return di_pre, df_pre, dg_pre, do_pre, dc_total * f
