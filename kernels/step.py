"""The fused pointwise step on the CPU: one time step's cell update over a batch, forward
(``lstm_step_fwd``) and backward (``lstm_step_bwd``), called by both time loops' row blocks
(``kernels.seq_rows``).  Arrays as in the package docstring (``kernels``).

Two variants of each, chosen at compile time from the argument types and at run time from
``act``, the same results bit for bit:

- ``..._scalar``: row by row, one unit at a time with the scalar cell of ``kernels.gates``
  (any dtype and strides).  The pointwise work runs in 1-D row kernels over one batch row:
  LLVM vectorises those loops, but not the same loop written with 2-D indexing inside the
  batch loop.  ``error_model="numpy"`` drops Numba's ZeroDivisionError check, whose early exit
  would also block vectorisation.
- ``..._vec``: float32 with ACT_FAST, C layout: the same cell on ``kernels.simd``
  vectors, written out, as LLVM's version of the row loop kept tests and reloads that cost a
  quarter of its time.

``python -m bench.kernels step`` checks both against ``kernels.reference`` and times them.
"""
from numba import njit
from numba.core import types
from numba.extending import overload

from . import ACT_FAST, KERNEL
from .gates import lstm_cell_bwd, lstm_cell_bwd_fast, lstm_cell_fwd, lstm_cell_fwd_fast
from .simd import LANES, load, load_n, prefetch, store, store_n


@njit(**KERNEL)
def _row_fwd_scalar(xproj, rec, c_prev, act, h, c, gates, keep):
    """One batch row of the fused forward: xproj, rec, gates (G,); c_prev, c, h (H,).  Stores
    the gates when ``keep`` (a test LLVM takes out of the loop)."""
    H = c.shape[0]
    for j in range(H):
        i, f, g, o, c_new, h_new = lstm_cell_fwd(
            xproj[j] + rec[j], xproj[H + j] + rec[H + j], xproj[2 * H + j] + rec[2 * H + j],
            xproj[3 * H + j] + rec[3 * H + j], c_prev[j], act)
        if keep:
            gates[j] = i
            gates[H + j] = f
            gates[2 * H + j] = g
            gates[3 * H + j] = o
        c[j] = c_new
        h[j] = h_new


@njit(inline="always", **KERNEL)
def _load(a, i, j, n):
    """a[i, j:j+n] as a vector.  n == LANES (a constant after inlining, so no test is left in
    the loops) takes a plain load: a masked one that crosses a page is far slower
    (kernels.gemm)."""
    if n == LANES:
        return load(a, i, j)
    return load_n(a, i, j, n)


@njit(inline="always", **KERNEL)
def _store(a, i, j, v, n):
    if n == LANES:
        store(a, i, j, v)
    else:
        store_n(a, i, j, v, n)


@njit(inline="always", **KERNEL)
def _units_fwd_vec(x, r, c_prev, b, j, n, act, h, c, gates, keep):
    """Units j..j+n-1 (n <= LANES) of batch row b as one vector of ``lstm_cell_fwd_fast``."""
    H = c.shape[1]
    i, f, g, o, c_new, h_new = lstm_cell_fwd_fast(
        _load(x, b, j, n) + _load(r, b, j, n), _load(x, b, H + j, n) + _load(r, b, H + j, n),
        _load(x, b, 2 * H + j, n) + _load(r, b, 2 * H + j, n),
        _load(x, b, 3 * H + j, n) + _load(r, b, 3 * H + j, n), _load(c_prev, b, j, n), act)
    _store(c, b, j, c_new, n)
    _store(h, b, j, h_new, n)
    if keep:
        _store(gates, b, j, i, n)
        _store(gates, b, H + j, f, n)
        _store(gates, b, 2 * H + j, g, n)
        _store(gates, b, 3 * H + j, o, n)


@njit(**KERNEL)
def lstm_step_fwd_vec(xproj_t, rec, c_prev, t, lengths, act, h, c, gates, keep):
    """``lstm_step_fwd`` for ACT_FAST on float32 arrays with contiguous rows, one LANES-unit
    vector at a time with ``kernels.simd``; the same results bit for bit.  Measured at M (H =
    256, 32 rows, data in L2) on a Zen 5 (AVX-512): 62 -> 48 cycles a vector, against LLVM's
    vectorisation of the scalar row loop (which kept a test of ``act`` and reloaded pointers
    from the stack).  ``python -m bench.kernels step`` times both: on a Zen 3 (AVX2, 8-lane
    vectors, 2026-12-03) the scalar loop took 40 ns a vector, this one 27.

    Each vector asks for the next row's input projection at its units, four lines (one per
    gate): xproj comes from memory, a row's four gate blocks are four streams 1 KB apart at
    M, and with the cell this fast their misses showed (Zen 5: M forward, input projection
    included, 1.1-5.3% faster side by side over 9 runs; prefetchnta measured the same).  With
    8-lane vectors each 64-byte line is asked for twice; not measured apart."""
    H = c.shape[1]
    B = c.shape[0]
    for b in range(B):
        if t >= lengths[b]:
            h[b] = 0.0
            c[b] = 0.0
            continue
        j = 0
        while j + LANES <= H:
            if b + 1 < B:
                for q in range(4):
                    prefetch(xproj_t, b + 1, q * H + j, 0)
            _units_fwd_vec(xproj_t, rec, c_prev, b, j, LANES, act, h, c, gates, keep)
            j += LANES
        if j < H:
            _units_fwd_vec(xproj_t, rec, c_prev, b, j, H - j, act, h, c, gates, keep)


@njit(**KERNEL)
def lstm_step_fwd(xproj_t, rec, c_prev, t, lengths, act, h, c, gates, keep):
    """Fused pointwise forward of one step.

    xproj_t (B,G) input projection with biases; rec (B,G) recurrent product h_prev @ W_hh^T;
    c_prev (B,H).  Writes h (B,H), c (B,H), and gates (B,G) when ``keep`` (a forward with no
    backward after it keeps none); rows with t >= lengths[b] get zeros in h and c.  ``keep``
    is a run-time flag, not a None ``gates``, so that both uses share one compiled version
    (each version of this kernel and of its scalar fallback took 3.5 s to compile on an Intel
    Xeon; skipping the stores saved 1.8% of M's forward on a Zen 5).
    """
    _step_fwd_variant(xproj_t, rec, c_prev, t, lengths, act, h, c, gates, keep)


@njit(**KERNEL)
def lstm_step_fwd_scalar(xproj_t, rec, c_prev, t, lengths, act, h, c, gates, keep):
    """``lstm_step_fwd`` row by row with ``_row_fwd_scalar`` (any dtype and strides)."""
    for b in range(c.shape[0]):
        if t < lengths[b]:
            _row_fwd_scalar(xproj_t[b], rec[b], c_prev[b], act, h[b], c[b], gates[b], keep)
        else:
            h[b] = 0.0
            c[b] = 0.0


def _step_fwd_variant(xproj_t, rec, c_prev, t, lengths, act, h, c, gates, keep):
    """``lstm_step_fwd_vec`` for ACT_FAST where kernels.simd takes the arrays (float32, C
    layout), else ``lstm_step_fwd_scalar``; the choice of code is made at compile time (overload
    below), the ACT_FAST test at run time."""
    lstm_step_fwd_scalar(xproj_t, rec, c_prev, t, lengths, act, h, c, gates, keep)


def _simd_ready(*arrays):
    """At compile time, from Numba types: whether ``kernels.simd`` takes all these arrays
    (float32, C layout)."""
    return all(a.dtype == types.float32 and a.layout == "C" for a in arrays)


@overload(_step_fwd_variant, jit_options=KERNEL)
def _step_fwd_variant_impl(xproj_t, rec, c_prev, t, lengths, act, h, c, gates, keep):
    if not _simd_ready(xproj_t, rec, c_prev, h, c, gates):
        return lambda xproj_t, rec, c_prev, t, lengths, act, h, c, gates, keep: \
            lstm_step_fwd_scalar(xproj_t, rec, c_prev, t, lengths, act, h, c, gates, keep)

    def vec(xproj_t, rec, c_prev, t, lengths, act, h, c, gates, keep):
        if act & ACT_FAST:
            lstm_step_fwd_vec(xproj_t, rec, c_prev, t, lengths, act, h, c, gates, keep)
        else:
            lstm_step_fwd_scalar(xproj_t, rec, c_prev, t, lengths, act, h, c, gates, keep)
    return vec


@njit(**KERNEL)
def _row_bwd_scalar(gates, c, c_prev, dh, act, dc, dz):
    """One batch row of the fused backward: gates, dz (G,); c, c_prev, dh, dc (H,)."""
    H = c.shape[0]
    for j in range(H):
        di, df, dg, do, dc_prev = lstm_cell_bwd(
            gates[j], gates[H + j], gates[2 * H + j], gates[3 * H + j], c[j], c_prev[j], dh[j],
            dc[j], act)
        dz[j] = di
        dz[H + j] = df
        dz[2 * H + j] = dg
        dz[3 * H + j] = do
        dc[j] = dc_prev


@njit(**KERNEL)
def lstm_step_bwd(gates, c, c_prev, dh, t, lengths, act, dc, dz):
    """Fused pointwise backward of one step.

    gates (B,G), c, c_prev (B,H) saved by the forward; dh (B,H) the total gradient on
    o * act(c_t) (output and recurrent parts); dc (B,H) gradient on c_t from the step after,
    overwritten in place with the gradient on c_prev.  Writes dz (B,G).
    Padded rows (t >= lengths[b]) get dz = 0 and leave dc unchanged.
    """
    _step_bwd_variant(gates, c, c_prev, dh, t, lengths, act, dc, dz)


@njit(**KERNEL)
def lstm_step_bwd_scalar(gates, c, c_prev, dh, t, lengths, act, dc, dz):
    """``lstm_step_bwd`` row by row with ``_row_bwd_scalar`` (any dtype and strides)."""
    for b in range(c.shape[0]):
        if t < lengths[b]:
            _row_bwd_scalar(gates[b], c[b], c_prev[b], dh[b], act, dc[b], dz[b])
        else:
            dz[b] = 0.0


@njit(inline="always", **KERNEL)
def _units_bwd_vec(gates, c, c_prev, dh, b, j, n, dc, dz):
    """Units j..j+n-1 (n <= LANES) of batch row b as one vector of ``lstm_cell_bwd_fast``."""
    H = c.shape[1]
    di, df, dg, do, dcp = lstm_cell_bwd_fast(
        _load(gates, b, j, n), _load(gates, b, H + j, n), _load(gates, b, 2 * H + j, n),
        _load(gates, b, 3 * H + j, n), _load(c, b, j, n), _load(c_prev, b, j, n),
        _load(dh, b, j, n), _load(dc, b, j, n))
    _store(dz, b, j, di, n)
    _store(dz, b, H + j, df, n)
    _store(dz, b, 2 * H + j, dg, n)
    _store(dz, b, 3 * H + j, do, n)
    _store(dc, b, j, dcp, n)


@njit(**KERNEL)
def lstm_step_bwd_vec(gates, c, c_prev, dh, t, lengths, act, dc, dz):
    """``lstm_step_bwd`` for act == ACT_FAST (tanh) on float32 arrays with contiguous rows,
    one LANES-unit vector at a time, as ``lstm_step_fwd_vec``; the same results bit for bit."""
    H = c.shape[1]
    for b in range(c.shape[0]):
        if t >= lengths[b]:
            dz[b] = 0.0
            continue
        j = 0
        while j + LANES <= H:
            _units_bwd_vec(gates, c, c_prev, dh, b, j, LANES, dc, dz)
            j += LANES
        if j < H:
            _units_bwd_vec(gates, c, c_prev, dh, b, j, H - j, dc, dz)


def _step_bwd_variant(gates, c, c_prev, dh, t, lengths, act, dc, dz):
    """``lstm_step_bwd_vec`` for act == ACT_FAST where kernels.simd takes the arrays, else
    ``lstm_step_bwd_scalar`` (chosen as in ``_step_fwd_variant``)."""
    lstm_step_bwd_scalar(gates, c, c_prev, dh, t, lengths, act, dc, dz)


@overload(_step_bwd_variant, jit_options=KERNEL)
def _step_bwd_variant_impl(gates, c, c_prev, dh, t, lengths, act, dc, dz):
    if not _simd_ready(gates, c, c_prev, dh, dc, dz):
        return lambda gates, c, c_prev, dh, t, lengths, act, dc, dz: lstm_step_bwd_scalar(
            gates, c, c_prev, dh, t, lengths, act, dc, dz)

    def vec(gates, c, c_prev, dh, t, lengths, act, dc, dz):
        if act == ACT_FAST:
            lstm_step_bwd_vec(gates, c, c_prev, dh, t, lengths, act, dc, dz)
        else:
            lstm_step_bwd_scalar(gates, c, c_prev, dh, t, lengths, act, dc, dz)
    return vec
