"""CUDA kernels: ``@cuda.jit`` fused LSTM steps, one layer and one direction per launch.

Same layout and semantics as the CPU kernels (the package docstring: time-major, C-contiguous,
G = 4H, gate order i, f, g, o; ``lengths`` masking with pack_padded_sequence semantics).  The
host-side time loop lives in ``engine.backends.gpu``; every kernel here does one step and takes
the whole (T, B, .) arrays plus the step's time index t and the index p of the step before it
(t-1, or t+1 in reverse), so the loop launches kernels without slicing arrays.

    xproj   (T, B, G)  x_t @ W_ih^T + b_ih + b_hh for every step (one GEMM by the caller)
    w_hh_t  (H, G)     W_hh transposed: the recurrent product is h_prev @ w_hh_t
    h0, c0  (B, H)     initial state of every sequence
    lengths (B,)       int64 valid steps per sequence, 1..T
    h, c    (T, B, H)  hidden and cell state after every step
    gates   (T, B, G)  activated gates, saved for the backward
    dz      (T, B, G)  gate pre-activation gradients

The state entering step t of sequence b is s[p, b] when 0 <= p < lengths[b], else s0[b]
(``prev_state``), exactly as ``kernels.common.gather_prev``.  The scalar cell math comes from
``kernels.gates``, shared with the CPU kernels.

Every kernel is dtype-generic (float32 or float64: the arrays decide), and correct for any B
and H: threads past the edge clamp their reads and skip their writes.  All launch shapes come
from ``launch_config``.
"""
import math
from collections import namedtuple

from numba import cuda

from .gates import lstm_cell_bwd, lstm_cell_fwd

# ----------------------------------------------------------------------------- launch config
# Thread block: TILE_H hidden units (x, one warp wide so gate-row reads are coalesced) by
# TILE_B batch rows (y).  Each thread owns one (b, j) pair and all four of its gates.
TILE_H = 32
TILE_B = 4
# Depth of the k-slices of W_hh^T and h_prev staged in shared memory by the fused kernel:
# (TILE_K, 4, TILE_H) weights + (TILE_B, TILE_K) states, 33 KiB in float64, 17 KiB in float32.
TILE_K = 32

LaunchConfig = namedtuple("LaunchConfig", "grid block")


def launch_config(B, H):
    """Grid and block of every kernel in this module for a batch of B rows and H units.

    All kernels share the (TILE_H, TILE_B) block over (units, batch rows); the grid rounds up,
    so the last blocks hold idle threads when H or B do not divide the tile.  The fused
    kernel's shared-memory tiles are the compile-time (TILE_K, 4, TILE_H) and (TILE_B, TILE_K).
    """
    grid = (math.ceil(H / TILE_H), math.ceil(B / TILE_B))
    return LaunchConfig(grid=grid, block=(TILE_H, TILE_B))


# ----------------------------------------------------------------------------- helpers
@cuda.jit(device=True, inline="always")
def prev_state(s, s0, p, lengths, b, k):
    """s[p, b, k] if step p is valid for sequence b, else its initial state s0[b, k]."""
    if 0 <= p < lengths[b]:
        return s[p, b, k]
    return s0[b, k]


@cuda.jit
def gather_prev_kernel(s, s0, p, lengths, out):
    """out[b] = s[p, b] if step p is valid for sequence b, else s0[b].

    s (T,B,H) read; s0 (B,H) read; out (B,H) written (must not alias s or s0).
    The GEMM variant's h_prev, gathered before the cuBLAS recurrent product.
    """
    j, b = cuda.grid(2)
    if b < out.shape[0] and j < out.shape[1]:
        out[b, j] = prev_state(s, s0, p, lengths, b, j)


@cuda.jit(device=True, inline="always")
def _cell_fwd_store(i_pre, f_pre, g_pre, o_pre, c_prev, act, t, b, j, H, h, c, gates):
    i, f, g, o, c_new, h_new = lstm_cell_fwd(i_pre, f_pre, g_pre, o_pre, c_prev, act)
    tg = min(t, gates.shape[0] - 1)  # a one-step gates buffer when no backward follows
    gates[tg, b, j] = i
    gates[tg, b, H + j] = f
    gates[tg, b, 2 * H + j] = g
    gates[tg, b, 3 * H + j] = o
    c[t, b, j] = c_new
    h[t, b, j] = h_new


# ----------------------------------------------------------------------------- forward
@cuda.jit
def lstm_step_fwd_kernel(xproj, w_hh_t, h0, c0, lengths, t, p, act, h, c, gates):
    """Fused forward of step t: recurrent product, gate math and cell update in one launch.

    xproj (T,B,G), w_hh_t (H,G), h0, c0 (B,H), lengths (B,) read; h[t], c[t] (B,H) and
    gates[t] (B,G) written; h[p] and c[p] read (h and c are read at p and written at t != p,
    so no block reads what another writes).  Padded rows (t >= lengths[b]) get h = c = 0.

    Block (TILE_H, TILE_B) owns units j0..j0+TILE_H and rows b0..b0+TILE_B.  The product
    h_prev[b, :] @ w_hh_t[:, gate*H + j] for its four gate columns runs over k in TILE_K
    slices: the block stages w_hh_t[k-slice, 4 gates x its units] and h_prev[its rows,
    k-slice] (gathered from h/h0 on the fly) in shared memory, then each thread accumulates
    its four dot products from there.  Each weight is read from global memory once per
    batch tile; the accumulators start from xproj, so they carry the arrays' dtype.
    """
    H = c.shape[2]
    B = c.shape[1]
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    j0, b0 = cuda.blockIdx.x * TILE_H, cuda.blockIdx.y * TILE_B
    j, b = j0 + tx, b0 + ty
    jr, br = min(j, H - 1), min(b, B - 1)  # clamped: edge threads compute, never store
    w_s = cuda.shared.array((TILE_K, 4, TILE_H), dtype=h.dtype)
    h_s = cuda.shared.array((TILE_B, TILE_K), dtype=h.dtype)
    acc_i = xproj[t, br, jr]
    acc_f = xproj[t, br, H + jr]
    acc_g = xproj[t, br, 2 * H + jr]
    acc_o = xproj[t, br, 3 * H + jr]
    tid = ty * TILE_H + tx
    for k0 in range(0, H, TILE_K):
        for e in range(tid, TILE_K * 4 * TILE_H, TILE_H * TILE_B):
            x, gate, kk = e % TILE_H, (e // TILE_H) % 4, e // (4 * TILE_H)
            if k0 + kk < H and j0 + x < H:
                w_s[kk, gate, x] = w_hh_t[k0 + kk, gate * H + j0 + x]
            else:
                w_s[kk, gate, x] = 0
        for e in range(tid, TILE_B * TILE_K, TILE_H * TILE_B):
            kk, y = e % TILE_K, e // TILE_K
            if k0 + kk < H and b0 + y < B:
                h_s[y, kk] = prev_state(h, h0, p, lengths, b0 + y, k0 + kk)
            else:
                h_s[y, kk] = 0
        cuda.syncthreads()
        for kk in range(TILE_K):
            hk = h_s[ty, kk]
            acc_i += hk * w_s[kk, 0, tx]
            acc_f += hk * w_s[kk, 1, tx]
            acc_g += hk * w_s[kk, 2, tx]
            acc_o += hk * w_s[kk, 3, tx]
        cuda.syncthreads()  # the next slice overwrites the tiles
    if j >= H or b >= B:
        return
    if t >= lengths[b]:
        h[t, b, j] = 0
        c[t, b, j] = 0
        return
    _cell_fwd_store(acc_i, acc_f, acc_g, acc_o, prev_state(c, c0, p, lengths, b, j), act,
                    t, b, j, H, h, c, gates)


@cuda.jit
def lstm_step_pointwise_fwd_kernel(xproj, rec, c0, lengths, t, p, act, h, c, gates):
    """Pointwise forward of step t after a cuBLAS recurrent product (the cuDNN/haste split).

    xproj (T,B,G), rec (B,G) = h_prev @ W_hh^T, c0 (B,H), lengths (B,) read; c[p] read;
    h[t], c[t] (B,H) and gates[t] (B,G) written.  Padded rows get h = c = 0.
    One thread per (b, j), computing all four gates of unit j.
    """
    H = c.shape[2]
    j, b = cuda.grid(2)
    if j >= H or b >= c.shape[1]:
        return
    if t >= lengths[b]:
        h[t, b, j] = 0
        c[t, b, j] = 0
        return
    _cell_fwd_store(xproj[t, b, j] + rec[b, j], xproj[t, b, H + j] + rec[b, H + j],
                    xproj[t, b, 2 * H + j] + rec[b, 2 * H + j],
                    xproj[t, b, 3 * H + j] + rec[b, 3 * H + j],
                    prev_state(c, c0, p, lengths, b, j), act, t, b, j, H, h, c, gates)


# ----------------------------------------------------------------------------- backward
@cuda.jit
def lstm_step_bwd_kernel(gates, c, c0, dout, lengths, t, p, act, dh, dc, dz):
    """Fused pointwise backward of step t (the recurrent dh_prev = dz[t] @ W_hh is a GEMM).

    gates (T,B,G), c (T,B,H), c0 (B,H), dout (T,B,H), lengths (B,) read.
    dh (B,H): gradient on h_t from the step after, read.
    dc (B,H): gradient on c_t from the step after, overwritten in place with that on c_prev
        (each thread reads and writes only its own element, so in-place is safe).
    dz[t] (B,G) written.  Padded rows (t >= lengths[b]) get dz = 0 and leave dc unchanged.
    """
    H = c.shape[2]
    j, b = cuda.grid(2)
    if j >= H or b >= c.shape[1]:
        return
    if t >= lengths[b]:
        for k in range(4):
            dz[t, b, k * H + j] = 0
        return
    di, df, dg, do, dc_prev = lstm_cell_bwd(
        gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j], gates[t, b, 3 * H + j],
        c[t, b, j], prev_state(c, c0, p, lengths, b, j), dout[t, b, j] + dh[b, j], dc[b, j],
        act)
    dz[t, b, j] = di
    dz[t, b, H + j] = df
    dz[t, b, 2 * H + j] = dg
    dz[t, b, 3 * H + j] = do
    dc[b, j] = dc_prev


@cuda.jit
def keep_valid_rows_kernel(src, t, lengths, dst):
    """dst[b] = src[b] where step t is valid for b; padded rows keep dst (the carried value).

    src, dst (B,H); must not alias.
    """
    j, b = cuda.grid(2)
    if b < dst.shape[0] and j < dst.shape[1] and t < lengths[b]:
        dst[b, j] = src[b, j]
