"""Row-split time loops: a whole sequence's forward and BPTT inside one ``@njit`` function,
threads owning blocks of batch rows (``lstm_seq_fwd_rows`` / ``lstm_seq_bwd_rows``).

Arrays as in the package docstring (``kernels``).  Per step and row block: the recurrent
product (``kernels.gemm.matmul_into``: the engine's GEMM on weights packed once for float32,
single-threaded BLAS for float64), then the fused pointwise step of ``kernels.step``.

A row of h_t depends only on the same row of h_{t-1}, so each block runs all T steps on its own
and the threads meet once per sequence, not once per step (Zen 5 AVX-512: M forward 8.2 ->
7.8 ms against a per-step join, S forward on 2 x 8 rows 1.5x faster than the unit-split loop
of ``kernels.seq_units`` with its per-step barrier; ``python -m bench.kernels loops``).
Slicing a C-contiguous (B, n) array's rows keeps it C-contiguous, which BLAS and the vector
step kernels need.

Plain loop nest of the forward, for reading (the kernel adds row blocks, padded batches,
the projection and scratch reuse)::

    for t in range(T):                                # reversed for reverse
        rec = h[t - 1] @ w_hh_t                       # h0 at the first step
        h[t], c[t], gates[t] = cell(xproj[t] + rec, c[t - 1])
"""
from numba import njit, prange

from . import KERNEL
from .common import add_rows, cut_rows, gather_prev, keep_valid_rows, step_index
from .gemm import matmul_into, six_row_tiles
from .isa import TILE_ROWS
from .step import lstm_step_bwd, lstm_step_fwd


@njit(**KERNEL)
def prev_rows(s, s0, p, lengths, lmin, lo, hi, out):
    """Rows [lo, hi) of the state entering a step whose previous step is p: s[p] where that
    step is valid, else s0.  A view of s[p] or s0 when every row agrees (every step of a
    full batch), so most steps copy nothing; otherwise gathered into ``out`` (rows lo..hi)."""
    if 0 <= p < lmin:
        return s[p][lo:hi]
    if p < 0 or p >= s.shape[0]:
        return s0[lo:hi]
    gather_prev(s[:, lo:hi], s0[lo:hi], p, lengths[lo:hi], out[lo:hi])
    return out[lo:hi]


@njit(**KERNEL)
def lstm_block_fwd_rows(xproj, w_hh_t, h0, c0, lengths, lmin, act, h, c, gates, h_prev,
                        c_prev, rec, t, p, lo, hi, w_hr_t, h_raw):
    """Forward step t for rows [lo, hi) (p: the step before it, ``common.step_index``)."""
    L = lengths[lo:hi]
    hp = prev_rows(h, h0, p, lengths, lmin, lo, hi, h_prev)
    cp = prev_rows(c, c0, p, lengths, lmin, lo, hi, c_prev)
    r = rec[lo:hi]
    matmul_into(hp, w_hh_t, r)
    out = h[t][lo:hi] if w_hr_t is None else h_raw[t][lo:hi]
    # A (1, B, G) buffer: no backward follows, and the step stores no gates (Zen 5 AVX-512: M
    # forward 7.77 -> 7.63 ms).
    keep = gates.shape[0] == xproj.shape[0]
    lstm_step_fwd(xproj[t][lo:hi], r, cp, t, L, act, out, c[t][lo:hi],
                  gates[t if keep else 0][lo:hi], keep)
    if w_hr_t is not None:
        matmul_into(h_raw[t][lo:hi], w_hr_t, h[t][lo:hi])


# A row block's recurrent product costs about its rows plus this many rows for each pass of
# its GEMM tiles over W_hh (each tile streams all the packed weights).  Fitted to
# ``python -m bench.kernels split`` on a 2-core Zen 3 (AVX2), H = 256: 12 rows as 6 + 6
# (one tile a block) ran 1.41x faster than 4 + 8 (two tiles), and 64 rows as 30 + 34 ran 0.95x
# the speed of 32 + 32 (six tiles a block either way).
TILE_PASS_ROWS = 0.8


@njit(**KERNEL)
def block_cost(rows):
    """Rows of work in a block's recurrent product, tile passes included: ``six_row_tiles``
    6-row tiles, then 4-row tiles, then single rows (``kernels.gemm.gemm_packed``)."""
    six = six_row_tiles(rows)
    rest = rows - 6 * six
    return rows + TILE_PASS_ROWS * (six + rest // 4 + rest % 4)


@njit(**KERNEL)
def step_rows(part, parts, B):
    """Rows [lo, hi) of row block ``part`` of the time loops: cut at multiples of 4 or of the
    big tile's rows (``isa.TILE_ROWS[0]``), whichever leaves the slowest block less work
    (``block_cost``; ties cut at 4).  B = 12 on 2 threads: 6 + 6, not 4 + 8."""
    four = six = 0.0
    for p in range(parts):
        lo, hi = cut_rows(p, parts, B, 4)
        four = max(four, block_cost(hi - lo))
        lo, hi = cut_rows(p, parts, B, TILE_ROWS[0])
        six = max(six, block_cost(hi - lo))
    return cut_rows(part, parts, B, TILE_ROWS[0] if six < four else 4)


@njit(parallel=True, **KERNEL)
def lstm_seq_fwd_rows(xproj, w_hh_t, h0, c0, lengths, act, reverse, h, c, gates,
                      h_prev, c_prev, rec, parts=1, w_hr_t=None, h_raw=None):
    """Forward through all T steps.

    xproj (T,B,G), lengths (B,) read; w_hh_t (P,G) as a plain matrix (BLAS) or packed
    (``kernels.gemm.pack_weights``); h0 (B,P), c0 (B,H) read; h (T,B,P), c (T,B,H), gates
    (T,B,G) or a (1,B,G) buffer (nothing stored), and with a projection h_raw (T,B,H),
    written.  Scratch: h_prev (B,P), c_prev (B,H), rec (B,G).  P = H without projection.
    parts: row blocks run in parallel (``step_rows``).
    """
    T, B = xproj.shape[0], xproj.shape[1]
    lmin = lengths.min()
    for part in prange(parts):  # row blocks never read each other's state: no per-step join
        lo, hi = step_rows(part, parts, B)
        for s in range(T):
            t, p = step_index(s, T, reverse)
            lstm_block_fwd_rows(xproj, w_hh_t, h0, c0, lengths, lmin, act, h, c, gates, h_prev,
                                c_prev, rec, t, p, lo, hi, w_hr_t, h_raw)


@njit(**KERNEL)
def lstm_block_bwd_rows(dout, gates, c, c0, w_hh, lengths, lmin, act, dh, dc, dz, c_prev,
                        dh_tot, rec, t, p, lo, hi, w_hr, dh_proj):
    """BPTT step t for rows [lo, hi) (row slices stay C-contiguous, as in the forward)."""
    L = lengths[lo:hi]
    dht, dhr, dcr, dzt = dh_tot[lo:hi], dh[lo:hi], dc[lo:hi], dz[t][lo:hi]
    cp = prev_rows(c, c0, p, lengths, lmin, lo, hi, c_prev)
    if w_hr is None:
        add_rows(dout[t][lo:hi], dhr, dht)
    else:
        add_rows(dout[t][lo:hi], dhr, dh_proj[t][lo:hi])
        matmul_into(dh_proj[t][lo:hi], w_hr, dht)
    lstm_step_bwd(gates[t][lo:hi], c[t][lo:hi], cp, dht, t, L, act, dcr, dzt)
    r = rec[lo:hi]
    matmul_into(dzt, w_hh, r)
    keep_valid_rows(r, t, L, dhr)


@njit(parallel=True, **KERNEL)
def lstm_seq_bwd_rows(dout, gates, c, c0, w_hh, lengths, act, reverse, dh, dc, dz,
                      c_prev, dh_tot, rec, parts=1, w_hr=None, dh_proj=None):
    """BPTT through all T steps, in the opposite order of the forward.

    dout (T,B,P) gradient on the outputs; gates, c saved by the forward; w_hh (G,P) plain or
    packed.  dh (B,P), dc (B,H): on entry the gradients on the final state, on exit those on
    h0 and c0 (updated in place).  Writes dz (T,B,G), and with a projection w_hr (P,H) also
    dh_proj (T,B,P), the total gradient on each step's h, from which the caller forms dW_hr.
    Scratch: c_prev, dh_tot (B,H), rec (B,P).  parts: row blocks run in parallel.
    """
    T, B = dout.shape[0], dout.shape[1]
    lmin = lengths.min()
    for part in prange(parts):  # as in the forward: each row block runs all T steps
        lo, hi = step_rows(part, parts, B)
        for s in range(T - 1, -1, -1):
            t, p = step_index(s, T, reverse)
            lstm_block_bwd_rows(dout, gates, c, c0, w_hh, lengths, lmin, act, dh, dc, dz,
                                c_prev, dh_tot, rec, t, p, lo, hi, w_hr, dh_proj)
