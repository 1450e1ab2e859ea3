"""CPU kernels: ``@numba.njit`` fused LSTM steps and whole-sequence loops.

Layout (time-major, C-contiguous, one layer and one direction):

    xproj   (T, B, G)  x_t @ W_ih^T + b_ih + b_hh for every step, one GEMM done by the caller
    w_hh_t  (H, G)     W_hh transposed, so the recurrent product is h_prev @ w_hh_t
    w_hh    (G, H)     W_hh as stored, for dh_prev = dz_t @ w_hh in the backward
    lengths (B,)       int64 valid steps per sequence, 1..T (all T for a full batch)
    h, c    (T, B, H)  hidden and cell state after every step (h is the layer output)
    w_hr_t  (H, P)     optional projection (LSTMP, ``proj_size=P``): h = (o * act(c)) @ W_hr^T;
                       then h is (T, B, P), w_hh_t is (P, G), and h_raw (T, B, H) keeps
                       o * act(c) for the backward.  None (the default) means no projection.
    gates   (T, B, G)  activated gates i, f, g, o: all the backward needs besides c.  The
                       forward also takes a (1, B, G) buffer: no backward follows, and the
                       row-split loop below stores no gates (a kernel may also use it as
                       scratch, step t in gates[min(t, len(gates) - 1)])
    dz      (T, B, G)  gate pre-activation gradients, input to the weight-gradient GEMMs

``reverse`` runs time from T-1 down to 0; results stay indexed by real time t.  Step t of
sequence b is valid when t < lengths[b].  Padded steps write zeros to h and c, get dz = 0, and
pass the state gradient through unchanged; the state entering a sequence's first valid step is
its h0/c0 (for ``reverse`` that is step lengths[b]-1).  This is pack_padded_sequence semantics.

The whole time loop lives inside one @njit function, so a step costs no Python overhead, and
nothing is allocated inside it: every buffer, scratch included, comes from the caller.

Threads: the batch is split into ``parts`` row blocks run by ``prange``; each block does its
own recurrent GEMM (``kernels.gemm`` on weights packed once for float32, single-threaded BLAS
for float64) and pointwise work.  A row of h_t depends only on the same row of h_{t-1}, so each
block runs all T steps on its own and the threads meet once per sequence, not once per step
(measured: M forward 8.2 -> 7.8 ms, S forward on 2 x 8 rows 1.5x faster than the unit-split
kernel of ``kernels.gemm`` with its per-step barrier).

Vectorisation: the pointwise work runs in 1-D row kernels (``lstm_row_*``) over one batch row.
LLVM vectorises those loops, but not the same loop written with 2-D indexing inside the batch
loop.  ``error_model="numpy"`` drops Numba's ZeroDivisionError check, whose early exit would
also block vectorisation.  The float32 forward (ACT_FAST) goes further: ``lstm_step_fwd_vec``
writes the cell on ``kernels.simd`` vectors, as LLVM's version of the row loop kept tests and
reloads that cost a quarter of its time.
"""
import numpy as np
from numba import njit, prange

from numba.core import types
from numba.extending import overload

from kernels import ACT_FAST, KERNEL
from kernels.gates import lstm_cell_bwd, lstm_cell_bwd_fast, lstm_cell_fwd, lstm_cell_fwd_fast
from kernels.gemm import matmul_into
from kernels.simd import LANES, load, load_n, prefetch, splat, store, store_n
from kernels.steps import (add_cpu, gather_prev_cpu, keep_valid_rows_cpu, part_rows,
                           step_index)


@njit(**KERNEL)
def lstm_row_fwd_cpu(xproj, rec, c_prev, act, h, c, gates):
    """One batch row of the fused forward: xproj, rec, gates (G,); c_prev, c, h (H,).  gates
    None stores no gates (Numba compiles that version without the test)."""
    H = c.shape[0]
    for j in range(H):
        i, f, g, o, c_new, h_new = lstm_cell_fwd(
            xproj[j] + rec[j], xproj[H + j] + rec[H + j], xproj[2 * H + j] + rec[2 * H + j],
            xproj[3 * H + j] + rec[3 * H + j], c_prev[j], act)
        if gates is not None:
            gates[j] = i
            gates[H + j] = f
            gates[2 * H + j] = g
            gates[3 * H + j] = o
        c[j] = c_new
        h[j] = h_new


@njit(**KERNEL)
def prev_rows(s, s0, p, lengths, lmin, lo, hi, out):
    """Rows [lo, hi) of the state entering a step whose previous step is p: s[p] where that
    step is valid, else s0.  A view of s[p] or s0 when every row agrees (every step of a
    full batch), so most steps copy nothing; otherwise gathered into ``out`` (rows lo..hi)."""
    if 0 <= p < lmin:
        return s[p][lo:hi]
    if p < 0 or p >= s.shape[0]:
        return s0[lo:hi]
    gather_prev_cpu(s[:, lo:hi], s0[lo:hi], p, lengths[lo:hi], out[lo:hi])
    return out[lo:hi]


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
def _units_fwd_vec(x, r, c_prev, b, j, n, act, h, c, gates):
    """Units j..j+n-1 (n <= 16) of batch row b as one vector of ``lstm_cell_fwd_fast``."""
    H = c.shape[1]
    i, f, g, o, c_new, h_new = lstm_cell_fwd_fast(
        _load(x, b, j, n) + _load(r, b, j, n), _load(x, b, H + j, n) + _load(r, b, H + j, n),
        _load(x, b, 2 * H + j, n) + _load(r, b, 2 * H + j, n),
        _load(x, b, 3 * H + j, n) + _load(r, b, 3 * H + j, n), _load(c_prev, b, j, n), act)
    _store(c, b, j, c_new, n)
    _store(h, b, j, h_new, n)
    if gates is not None:
        _store(gates, b, j, i, n)
        _store(gates, b, H + j, f, n)
        _store(gates, b, 2 * H + j, g, n)
        _store(gates, b, 3 * H + j, o, n)


@njit(**KERNEL)
def lstm_step_fwd_vec(xproj_t, rec, c_prev, t, lengths, act, h, c, gates):
    """``lstm_step_fwd_cpu`` for ACT_FAST on float32 arrays with contiguous rows, one 16-unit
    vector at a time with ``kernels.simd``; the same results bit for bit.  Measured at M (H =
    256, 32 rows, data in L2): 62 -> 48 cycles a vector, against LLVM's vectorisation of the
    scalar row loop (which kept a test of ``act`` and reloaded pointers from the stack).

    Each vector asks for the next row's input projection at its units, four lines (one per
    gate): xproj comes from memory, a row's four gate blocks are four streams 1 KB apart at
    M, and with the cell this fast their misses showed (M forward, input projection
    included, 1.1-5.3% faster side by side over 9 runs; prefetchnta measured the same)."""
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
            _units_fwd_vec(xproj_t, rec, c_prev, b, j, LANES, act, h, c, gates)
            j += LANES
        if j < H:
            _units_fwd_vec(xproj_t, rec, c_prev, b, j, H - j, act, h, c, gates)


@njit(**KERNEL)
def lstm_step_fwd_cpu(xproj_t, rec, c_prev, t, lengths, act, h, c, gates):
    """Fused pointwise forward of one step.

    xproj_t (B,G) input projection with biases; rec (B,G) recurrent product h_prev @ W_hh^T;
    c_prev (B,H).  Writes h (B,H), c (B,H), gates (B,G) unless None; rows with
    t >= lengths[b] get zeros in h and c.
    """
    step_fwd(xproj_t, rec, c_prev, t, lengths, act, h, c, gates)


@njit(**KERNEL)
def lstm_step_fwd_rows(xproj_t, rec, c_prev, t, lengths, act, h, c, gates):
    """``lstm_step_fwd_cpu`` row by row with ``lstm_row_fwd_cpu`` (any dtype and strides)."""
    for b in range(c.shape[0]):
        if t < lengths[b]:
            lstm_row_fwd_cpu(xproj_t[b], rec[b], c_prev[b], act, h[b], c[b],
                             None if gates is None else gates[b])
        else:
            h[b] = 0.0
            c[b] = 0.0


def step_fwd(xproj_t, rec, c_prev, t, lengths, act, h, c, gates):
    """``lstm_step_fwd_vec`` for ACT_FAST where kernels.simd takes the arrays (float32, C
    layout), else ``lstm_step_fwd_rows``; the choice of code is made at compile time (overload
    below), the ACT_FAST test at run time."""
    lstm_step_fwd_rows(xproj_t, rec, c_prev, t, lengths, act, h, c, gates)


def _simd_ready(*arrays):
    """At compile time, from Numba types: whether ``kernels.simd`` takes all these arrays
    (float32, C layout); None arguments are skipped."""
    return all(isinstance(a, types.NoneType) or (a.dtype == types.float32 and a.layout == "C")
               for a in arrays)


@overload(step_fwd, jit_options=KERNEL)
def _step_fwd(xproj_t, rec, c_prev, t, lengths, act, h, c, gates):
    if not _simd_ready(xproj_t, rec, c_prev, h, c, gates):
        return lambda xproj_t, rec, c_prev, t, lengths, act, h, c, gates: lstm_step_fwd_rows(
            xproj_t, rec, c_prev, t, lengths, act, h, c, gates)

    def vec(xproj_t, rec, c_prev, t, lengths, act, h, c, gates):
        if act & ACT_FAST:
            lstm_step_fwd_vec(xproj_t, rec, c_prev, t, lengths, act, h, c, gates)
        else:
            lstm_step_fwd_rows(xproj_t, rec, c_prev, t, lengths, act, h, c, gates)
    return vec


@njit(**KERNEL)
def lstm_row_bwd_cpu(gates, c, c_prev, dh, act, dc, dz):
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
def lstm_step_bwd_cpu(gates, c, c_prev, dh, t, lengths, act, dc, dz):
    """Fused pointwise backward of one step.

    gates (B,G), c, c_prev (B,H) saved by the forward; dh (B,H) the total gradient on
    o * act(c_t) (output and recurrent parts); dc (B,H) gradient on c_t from the step after,
    overwritten in place with the gradient on c_prev.  Writes dz (B,G).
    Padded rows (t >= lengths[b]) get dz = 0 and leave dc unchanged.
    """
    step_bwd(gates, c, c_prev, dh, t, lengths, act, dc, dz)


@njit(**KERNEL)
def lstm_step_bwd_rows(gates, c, c_prev, dh, t, lengths, act, dc, dz):
    """``lstm_step_bwd_cpu`` row by row with ``lstm_row_bwd_cpu`` (any dtype and strides)."""
    for b in range(c.shape[0]):
        if t < lengths[b]:
            lstm_row_bwd_cpu(gates[b], c[b], c_prev[b], dh[b], act, dc[b], dz[b])
        else:
            dz[b] = 0.0


@njit(inline="always", **KERNEL)
def _units_bwd_vec(gates, c, c_prev, dh, b, j, n, dc, dz):
    """Units j..j+n-1 (n <= 16) of batch row b as one vector of ``lstm_cell_bwd_fast``."""
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
    """``lstm_step_bwd_cpu`` for act == ACT_FAST (tanh) on float32 arrays with contiguous rows,
    one 16-unit vector at a time, as ``lstm_step_fwd_vec``; the same results bit for bit."""
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


def step_bwd(gates, c, c_prev, dh, t, lengths, act, dc, dz):
    """``lstm_step_bwd_vec`` for act == ACT_FAST where kernels.simd takes the arrays, else
    ``lstm_step_bwd_rows`` (chosen as in ``step_fwd``)."""
    lstm_step_bwd_rows(gates, c, c_prev, dh, t, lengths, act, dc, dz)


@overload(step_bwd, jit_options=KERNEL)
def _step_bwd(gates, c, c_prev, dh, t, lengths, act, dc, dz):
    if not _simd_ready(gates, c, c_prev, dh, dc, dz):
        return lambda gates, c, c_prev, dh, t, lengths, act, dc, dz: lstm_step_bwd_rows(
            gates, c, c_prev, dh, t, lengths, act, dc, dz)

    def vec(gates, c, c_prev, dh, t, lengths, act, dc, dz):
        if act == ACT_FAST:
            lstm_step_bwd_vec(gates, c, c_prev, dh, t, lengths, act, dc, dz)
        else:
            lstm_step_bwd_rows(gates, c, c_prev, dh, t, lengths, act, dc, dz)
    return vec


@njit(**KERNEL)
def lstm_rows_fwd_cpu(xproj, w_hh_t, h0, c0, lengths, lmin, act, h, c, gates, h_prev, c_prev,
                      rec, t, p, lo, hi, w_hr_t, h_raw):
    """Step t for rows [lo, hi).  Slicing a C-contiguous (B, n) array's rows keeps it
    C-contiguous, which BLAS and the vectorised row kernels need."""
    L = lengths[lo:hi]
    hp = prev_rows(h, h0, p, lengths, lmin, lo, hi, h_prev)
    cp = prev_rows(c, c0, p, lengths, lmin, lo, hi, c_prev)
    r = rec[lo:hi]
    matmul_into(hp, w_hh_t, r)
    out = h[t][lo:hi] if w_hr_t is None else h_raw[t][lo:hi]
    if gates.shape[0] == xproj.shape[0]:
        lstm_step_fwd_cpu(xproj[t][lo:hi], r, cp, t, L, act, out, c[t][lo:hi], gates[t][lo:hi])
    else:  # a (1, B, G) buffer: no backward follows (measured: M forward 7.77 -> 7.63 ms)
        lstm_step_fwd_cpu(xproj[t][lo:hi], r, cp, t, L, act, out, c[t][lo:hi], None)
    if w_hr_t is not None:
        matmul_into(h_raw[t][lo:hi], w_hr_t, h[t][lo:hi])


@njit(parallel=True, **KERNEL)
def lstm_seq_fwd_cpu(xproj, w_hh_t, h0, c0, lengths, act, reverse, h, c, gates,
                     h_prev, c_prev, rec, parts=1, w_hr_t=None, h_raw=None):
    """Forward through all T steps.

    h0 (B,P), c0 (B,H) read; h, c, gates (and h_raw) written.  Scratch: h_prev (B,P),
    c_prev (B,H), rec (B,G).  P = H without projection.  parts: row blocks run in parallel.
    """
    T, B = xproj.shape[0], xproj.shape[1]
    lmin = lengths.min()
    for part in prange(parts):  # row blocks never read each other's state: no per-step join
        lo, hi = part_rows(part, parts, B)
        for s in range(T):
            t, p = step_index(s, T, reverse)
            lstm_rows_fwd_cpu(xproj, w_hh_t, h0, c0, lengths, lmin, act, h, c, gates, h_prev,
                              c_prev, rec, t, p, lo, hi, w_hr_t, h_raw)


@njit(**KERNEL)
def lstm_rows_bwd_cpu(dout, gates, c, c0, w_hh, lengths, lmin, act, dh, dc, dz, c_prev, rec,
                      dh_tot, t, p, lo, hi, w_hr, dh_proj):
    """BPTT step t for rows [lo, hi) (row slices stay C-contiguous, as in the forward)."""
    L = lengths[lo:hi]
    dht, dhr, dcr, dzt = dh_tot[lo:hi], dh[lo:hi], dc[lo:hi], dz[t][lo:hi]
    cp = prev_rows(c, c0, p, lengths, lmin, lo, hi, c_prev)
    if w_hr is None:
        add_cpu(dout[t][lo:hi], dhr, dht)
    else:
        add_cpu(dout[t][lo:hi], dhr, dh_proj[t][lo:hi])
        matmul_into(dh_proj[t][lo:hi], w_hr, dht)
    lstm_step_bwd_cpu(gates[t][lo:hi], c[t][lo:hi], cp, dht, t, L, act, dcr, dzt)
    r = rec[lo:hi]
    matmul_into(dzt, w_hh, r)
    keep_valid_rows_cpu(r, t, L, dhr)


@njit(parallel=True, **KERNEL)
def lstm_seq_bwd_cpu(dout, gates, c, c0, w_hh, lengths, act, reverse, dh, dc, dz,
                     c_prev, rec, dh_tot, parts=1, w_hr=None, dh_proj=None):
    """BPTT through all T steps, in the opposite order of the forward.

    dout (T,B,P) gradient on the outputs.  dh (B,P), dc (B,H): on entry the gradients on the
    final state, on exit those on h0 and c0 (updated in place).  Writes dz (T,B,G), and with a
    projection w_hr (P,H) also dh_proj (T,B,P), the total gradient on each step's h, from which
    the caller forms dW_hr.  Scratch: c_prev, dh_tot (B,H), rec (B,P).
    parts: row blocks run in parallel.
    """
    T, B = dout.shape[0], dout.shape[1]
    lmin = lengths.min()
    for part in prange(parts):  # as in the forward: each row block runs all T steps
        lo, hi = part_rows(part, parts, B)
        for s in range(T - 1, -1, -1):
            t, p = step_index(s, T, reverse)
            lstm_rows_bwd_cpu(dout, gates, c, c0, w_hh, lengths, lmin, act, dh, dc, dz, c_prev,
                              rec, dh_tot, t, p, lo, hi, w_hr, dh_proj)


# ---------------------------------------------------------------------------- GEMMs
# float64 GEMMs run on the single-threaded BLAS that Numba links (see engine.threads); large
# ones are split over Numba's threads, so one pool owns the cores.  (float32: kernels.gemm.)

@njit(parallel=True, **KERNEL)
def gemm_rows_cpu(a, b, out, parts):
    """out = a @ b, row blocks of ``a`` (C-contiguous (M,K)) over ``parts`` threads.

    b (K,N) C- or F-contiguous; out (M,N) C-contiguous, written.
    """
    if parts == 1:
        np.dot(a, b, out)
        return
    M = a.shape[0]
    for part in prange(parts):
        lo, hi = part_rows(part, parts, M)
        np.dot(a[lo:hi], b, out[lo:hi])


@njit(parallel=True, **KERNEL)
def gemm_tn_cpu(a, b, out, parts):
    """out = a.T @ b, the sum over M split in ``parts`` blocks (weight gradients).

    a (M,K), b (M,N) C-contiguous; out (K,N) C-contiguous, written.
    """
    if parts == 1:
        np.dot(a.T, b, out)
        return
    M = a.shape[0]
    partial = np.empty((parts,) + out.shape, out.dtype)
    for part in prange(parts):
        lo, hi = part_rows(part, parts, M)
        np.dot(a[lo:hi].T, b[lo:hi], partial[part])
    out[:] = partial[0]
    for part in range(1, parts):
        out += partial[part]


# ---------------------------------------------------------------------------- input checks

@njit(parallel=True, **KERNEL)
def all_finite_f32(a, parts):
    """Whether every value of ``a`` ((1, n) float32, a flat view) is finite, its columns split
    into ``parts`` ranges run by prange.  x - x is 0 for a finite x and NaN for NaN and +-Inf,
    and a NaN survives any sum, so four vector sums of x - x tell.  One read of ``a`` where
    ``np.isfinite(a).all()`` reads it, writes a mask and reads that (M's input, 3.3 MB from
    memory: 99 -> 37 us)."""
    n = a.shape[1]
    sums = np.empty((parts, LANES), np.float32)
    for part in prange(parts):
        lo, hi = part_rows(part, parts, n)
        s0 = s1 = s2 = s3 = splat(0.0)
        j = lo
        while j + 4 * LANES <= hi:
            v0, v1 = load(a, 0, j), load(a, 0, j + LANES)
            v2, v3 = load(a, 0, j + 2 * LANES), load(a, 0, j + 3 * LANES)
            s0, s1, s2, s3 = s0 + (v0 - v0), s1 + (v1 - v1), s2 + (v2 - v2), s3 + (v3 - v3)
            j += 4 * LANES
        while j < hi:
            v = load_n(a, 0, j, min(LANES, hi - j))  # lanes past n read as 0
            s0 = s0 + (v - v)
            j += LANES
        store(sums, part, 0, s0 + s1 + s2 + s3)
    return not (sums != 0.0).any()
