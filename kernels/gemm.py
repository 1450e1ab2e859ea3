"""Float32 GEMM for the CPU backend: packed panels and a 4 x 64 register-blocked micro-kernel.

Why not BLAS: the recurrent product of one step is small (16 x 64 x 256 for the S benchmark),
where OpenBLAS's fixed cost per call dominates (8.6 us against 2.7 us here), and the OpenBLAS in
the NumPy/SciPy wheels runs only its AVX2 kernels on AMD Zen 4/5 (half the AVX-512 rate).  This
kernel is compiled by Numba for the CPU it runs on, so it uses AVX-512 wherever the CPU has it.

The method is GotoBLAS's, reduced to what LSTMs need:

* ``b`` (K, N) is packed into panels of ``NR`` = 64 columns, ``bp[p, k, :] = b[k, 64p:64p+64]``,
  zero beyond column N.  Inside a panel the k-th row is 256 contiguous bytes, so the
  micro-kernel streams it with four vector loads and no TLB misses.  The recurrent weights are
  packed once per sequence (``pack``); large products pack one ``KC``-row block at a time.
* The micro-kernel (``tile4``) keeps c[i:i+4, j:j+64] in 16 vector registers over the whole k
  loop: per k, four panel loads, four broadcasts of a[i+r, k], sixteen FMAs.  ``tile1`` does one
  row (batch tails, B = 1).  Columns past N are masked on load and store.
* Rows are walked in blocks of ``MC`` so that a block of ``a`` stays in L2 while every panel
  passes over it.

``a`` may have any strides (``x.T`` works: the weight gradients are a.T @ b); ``c`` needs
contiguous rows.  Accumulation order per element is sequential in k, as in a naive loop.
"""
import numpy as np
from numba import njit, prange
from numba.extending import overload

from kernels.gates import lstm_cell_fwd
from kernels.simd import LANES, fma, load, load_n, splat, store_n

KERNEL = dict(cache=True, error_model="numpy")

NR = 4 * LANES  # panel width: four vectors
KC = 256        # rows of b packed per block in ``gemm``: a 64 KB panel block stays in L2
MC = 64         # rows of a per block: 64 x KC floats (64 KB) stay in L2


@njit(**KERNEL)
def panels(n):
    """Number of NR-column panels that cover n columns."""
    return (n + NR - 1) // NR


@njit(**KERNEL)
def pack(b, k0, kc, bp):
    """bp[p, :kc] = b[k0:k0+kc, NR*p : NR*(p+1)], zero-padded past column N.

    Reads along b's contiguous axis: b is often a transposed view (W.T, x.T).
    """
    N = b.shape[1]
    bp[-1] = 0.0
    by_rows = b.strides[1] <= b.strides[0]
    for p in range(bp.shape[0]):
        j0 = p * NR
        w = min(NR, N - j0)
        if by_rows:
            for k in range(kc):
                for v in range(w):
                    bp[p, k, v] = b[k0 + k, j0 + v]
        else:
            for v in range(w):
                for k in range(kc):
                    bp[p, k, v] = b[k0 + k, j0 + v]


@njit(inline="always", **KERNEL)
def _lanes(c, j):
    """Valid lanes of a vector starting at column j of c."""
    return min(max(c.shape[1] - j, 0), LANES)


@njit(**KERNEL)
def tile4(a, i, panel, kc, c, j0, j1, j2, j3, accumulate, bias):
    """Rows i..i+3 of c = a @ panel + (c if accumulate else bias row or 0), where the panel's
    four vectors land at columns j0, j1, j2, j3 of c (columns past c's width are skipped)."""
    n0, n1, n2, n3 = _lanes(c, j0), _lanes(c, j1), _lanes(c, j2), _lanes(c, j3)
    if accumulate:
        c00, c01, c02, c03 = (load_n(c, i, j0, n0), load_n(c, i, j1, n1),
                              load_n(c, i, j2, n2), load_n(c, i, j3, n3))
        c10, c11, c12, c13 = (load_n(c, i + 1, j0, n0), load_n(c, i + 1, j1, n1),
                              load_n(c, i + 1, j2, n2), load_n(c, i + 1, j3, n3))
        c20, c21, c22, c23 = (load_n(c, i + 2, j0, n0), load_n(c, i + 2, j1, n1),
                              load_n(c, i + 2, j2, n2), load_n(c, i + 2, j3, n3))
        c30, c31, c32, c33 = (load_n(c, i + 3, j0, n0), load_n(c, i + 3, j1, n1),
                              load_n(c, i + 3, j2, n2), load_n(c, i + 3, j3, n3))
    else:  # every row starts from the bias row, or from zeros
        z0 = z1 = z2 = z3 = splat(0.0)
        if bias is not None:
            z0, z1 = load_n(bias, 0, j0, n0), load_n(bias, 0, j1, n1)
            z2, z3 = load_n(bias, 0, j2, n2), load_n(bias, 0, j3, n3)
        c00, c01, c02, c03 = z0, z1, z2, z3
        c10, c11, c12, c13 = z0, z1, z2, z3
        c20, c21, c22, c23 = z0, z1, z2, z3
        c30, c31, c32, c33 = z0, z1, z2, z3
    for k in range(kc):
        b0, b1, b2, b3 = load(panel, k, 0), load(panel, k, 16), load(panel, k, 32), load(panel, k, 48)
        x = splat(a[i, k])
        c00, c01, c02, c03 = fma(x, b0, c00), fma(x, b1, c01), fma(x, b2, c02), fma(x, b3, c03)
        x = splat(a[i + 1, k])
        c10, c11, c12, c13 = fma(x, b0, c10), fma(x, b1, c11), fma(x, b2, c12), fma(x, b3, c13)
        x = splat(a[i + 2, k])
        c20, c21, c22, c23 = fma(x, b0, c20), fma(x, b1, c21), fma(x, b2, c22), fma(x, b3, c23)
        x = splat(a[i + 3, k])
        c30, c31, c32, c33 = fma(x, b0, c30), fma(x, b1, c31), fma(x, b2, c32), fma(x, b3, c33)
    store_n(c, i, j0, c00, n0), store_n(c, i, j1, c01, n1)
    store_n(c, i, j2, c02, n2), store_n(c, i, j3, c03, n3)
    store_n(c, i + 1, j0, c10, n0), store_n(c, i + 1, j1, c11, n1)
    store_n(c, i + 1, j2, c12, n2), store_n(c, i + 1, j3, c13, n3)
    store_n(c, i + 2, j0, c20, n0), store_n(c, i + 2, j1, c21, n1)
    store_n(c, i + 2, j2, c22, n2), store_n(c, i + 2, j3, c23, n3)
    store_n(c, i + 3, j0, c30, n0), store_n(c, i + 3, j1, c31, n1)
    store_n(c, i + 3, j2, c32, n2), store_n(c, i + 3, j3, c33, n3)


@njit(**KERNEL)
def tile1(a, i, panel, kc, c, j0, j1, j2, j3, accumulate, bias):
    """Row i of ``tile4``."""
    n0, n1, n2, n3 = _lanes(c, j0), _lanes(c, j1), _lanes(c, j2), _lanes(c, j3)
    if accumulate:
        c0, c1, c2, c3 = (load_n(c, i, j0, n0), load_n(c, i, j1, n1),
                          load_n(c, i, j2, n2), load_n(c, i, j3, n3))
    else:
        c0 = c1 = c2 = c3 = splat(0.0)
        if bias is not None:
            c0, c1 = load_n(bias, 0, j0, n0), load_n(bias, 0, j1, n1)
            c2, c3 = load_n(bias, 0, j2, n2), load_n(bias, 0, j3, n3)
    for k in range(kc):
        x = splat(a[i, k])
        c0, c1 = fma(x, load(panel, k, 0), c0), fma(x, load(panel, k, 16), c1)
        c2, c3 = fma(x, load(panel, k, 32), c2), fma(x, load(panel, k, 48), c3)
    store_n(c, i, j0, c0, n0), store_n(c, i, j1, c1, n1)
    store_n(c, i, j2, c2, n2), store_n(c, i, j3, c3, n3)


@njit(**KERNEL)
def gemm_packed(a, bp, c, lo, hi, accumulate, bias, pstep=NR, qstep=LANES):
    """c[lo:hi] = a[lo:hi] @ b + (c[lo:hi] if accumulate else bias), for the packed b (``bp``,
    K = a.shape[1] rows per panel).  bias: (1, N) row added to every row, or None.  The time
    loops call this with weights packed once.

    Lane v of vector q of panel p goes to column p * pstep + q * qstep + v of c: (NR, LANES)
    for a plain product; (LANES, H) turns ``pack_gates``'s unit blocks back into [i f g o].
    """
    kc = a.shape[1]
    for i0 in range(lo, hi, MC):
        i1 = min(i0 + MC, hi)
        for p in range(bp.shape[0]):
            panel, j = bp[p], p * pstep
            j1, j2, j3 = j + qstep, j + 2 * qstep, j + 3 * qstep
            i = i0
            while i + 4 <= i1:
                tile4(a, i, panel, kc, c, j, j1, j2, j3, accumulate, bias)
                i += 4
            while i < i1:
                tile1(a, i, panel, kc, c, j, j1, j2, j3, accumulate, bias)
                i += 1


@njit(inline="always", **KERNEL)
def _rows4(part, parts, M):
    """Rows [lo, hi) of block ``part``, cut at multiples of 4 so each block uses tile4."""
    q = (M + 3) // 4
    return min(4 * (part * q // parts), M), min(4 * ((part + 1) * q // parts), M)


@njit(parallel=True, **KERNEL)
def gemm(a, b, c, accumulate, parts, bias=None):
    """c = a @ b + (c if accumulate else bias).  a (M,K) and b (K,N) any strides; c (M,N) with
    contiguous rows; bias a (1,N) row or None.

    b is packed KC rows at a time; the rows of c are split into ``parts`` blocks run by prange
    (``parts=1`` runs serially: no fork/join for small products).
    """
    K, N = a.shape[1], b.shape[1]
    bp = np.empty((panels(N), min(KC, max(K, 1)), NR), np.float32)
    if K == 0 and not accumulate:
        c[:] = 0.0
        if bias is not None:
            c += bias
    for k0 in range(0, K, KC):
        kc = min(KC, K - k0)
        pack(b, k0, kc, bp)
        ak, acc = a[:, k0:k0 + kc], accumulate or k0 > 0
        if parts == 1:
            gemm_packed(ak, bp[:, :kc], c, 0, c.shape[0], acc, bias)
            continue
        for part in prange(parts):
            lo, hi = _rows4(part, parts, c.shape[0])
            gemm_packed(ak, bp[:, :kc], c, lo, hi, acc, bias)


def pack_weights(w):
    """A weight matrix (K, N) packed once for ``matmul_into``: (panels(N), K, NR) float32."""
    K, N = w.shape
    bp = np.empty((panels(N), K, NR), np.float32)
    pack(w, 0, K, bp)
    return bp


def matmul_into(a, w, out):
    """out = a @ w inside @njit code; ``w`` either a plain (K, N) matrix (BLAS) or the result
    of ``pack_weights`` (this module's kernel).  Resolved at compile time (overload below)."""
    np.dot(a, w, out)


@overload(matmul_into, jit_options=KERNEL)
def _matmul_into(a, w, out):
    if w.ndim == 3:
        return lambda a, w, out: gemm_packed(a, w, out, 0, a.shape[0], False, None)
    return lambda a, w, out: np.dot(a, w, out)


# ---------------------------------------------------------------------------- fused LSTM step
# The forward time loop for float32 without a projection.  The recurrent weights are packed by
# unit block: panel p holds the four gates of units 16p..16p+15, column q*16 + v <- gate q of
# unit 16p + v.  A thread that owns a range of panels therefore computes every gate of its
# units and finishes their cell update without waiting for the other threads, and its share of
# W_hh stays in its own core's L2 from step to step.  One barrier per step (the end of prange):
# the next step's product needs every unit of h_t.

UNITS = LANES  # units per panel


@njit(**KERNEL)
def pack_gates(w_hh_t, H):
    """w_hh_t (K, 4H), any strides (W_hh.T) -> (ceil(H/16), K, 64) float32, the gate columns
    grouped by unit block: [p, k, q*16 + v] = w_hh_t[k, q*H + 16p + v], zeros past unit H."""
    K = w_hh_t.shape[0]
    wp = np.zeros(((H + UNITS - 1) // UNITS, K, NR), np.float32)
    for n in range(4 * H):  # column n of w_hh_t: contiguous when it is W_hh.T
        q, u = n // H, n % H
        p, col = u // UNITS, q * UNITS + u % UNITS
        for k in range(K):
            wp[p, k, col] = w_hh_t[k, n]
    return wp


@njit(**KERNEL)
def lstm_units_pad(u0, n, h_prev, h_row, c_row, h_next):
    """A padded step of one batch row, units u0..u0+n: zero outputs, the state carried."""
    for v in range(n):
        h_row[u0 + v] = 0.0
        c_row[u0 + v] = 0.0
        h_next[u0 + v] = h_prev[u0 + v]


@njit(**KERNEL)
def lstm_units_fwd(x_row, r_row, u0, n, act, h_row, c_row, g_row, h_next, c_state):
    """Cell update for units u0..u0+n of one batch row.

    x_row (4H,) input projection; r_row (4Hp,) recurrent gates, gate q of unit u at column
    q * Hp + u.  Writes h_row, c_row, g_row (the step's outputs), h_next (the state for the
    next step) and c_state (in place).
    """
    H, Hp = h_row.shape[0], r_row.shape[0] // 4
    # Gate slices as separate views: LLVM vectorises this loop, not the same loop written
    # with offsets into whole rows.
    xi, xf, xg, xo = (x_row[u0:u0 + n], x_row[H + u0:H + u0 + n],
                      x_row[2 * H + u0:2 * H + u0 + n], x_row[3 * H + u0:3 * H + u0 + n])
    ri, rf, rg, ro = (r_row[u0:u0 + n], r_row[Hp + u0:Hp + u0 + n],
                      r_row[2 * Hp + u0:2 * Hp + u0 + n], r_row[3 * Hp + u0:3 * Hp + u0 + n])
    gi, gf, gg, go = (g_row[u0:u0 + n], g_row[H + u0:H + u0 + n],
                      g_row[2 * H + u0:2 * H + u0 + n], g_row[3 * H + u0:3 * H + u0 + n])
    cp, cr, hr = c_state[u0:u0 + n], c_row[u0:u0 + n], h_row[u0:u0 + n]
    for v in range(n):
        gi[v], gf[v], gg[v], go[v], cr[v], hr[v] = lstm_cell_fwd(
            xi[v] + ri[v], xf[v] + rf[v], xg[v] + rg[v], xo[v] + ro[v], cp[v], act)
    # Separate copy loops (slice assignment would allocate: Numba copies possibly-overlapping
    # sources); two more arrays in the loop above would stop LLVM vectorising it.
    for v in range(n):
        cp[v] = cr[v]
    for v in range(n):
        h_next[u0 + v] = hr[v]


@njit(**KERNEL)
def lstm_panels_fwd(xproj_t, wp, t, lengths, act, h_prev, h_next, c_state, rec, h_t, c_t,
                    gates_t, p0, p1):
    """Step t for the unit blocks p0..p1-1: recurrent product, then the cell update."""
    B, H = c_state.shape
    Hp = rec.shape[1] // 4
    gemm_packed(h_prev, wp[p0:p1], rec[:, p0 * UNITS:], 0, B, False, None, UNITS, Hp)
    u0 = p0 * UNITS
    n = min(p1 * UNITS, H) - u0
    for b in range(B):
        # The test stays out here: inside, LLVM no longer vectorised the cell loop.
        if t < lengths[b]:
            lstm_units_fwd(xproj_t[b], rec[b], u0, n, act, h_t[b], c_t[b], gates_t[b],
                           h_next[b], c_state[b])
        else:
            lstm_units_pad(u0, n, h_prev[b], h_t[b], c_t[b], h_next[b])


@njit(parallel=True, **KERNEL)
def lstm_seq_fwd_fused(xproj, wp, h0, c0, lengths, act, reverse, h, c, gates, h_state,
                       c_state, rec, parts):
    """Forward through all T steps (float32, no projection); outputs as kernels.cpu's
    ``lstm_seq_fwd_cpu`` (gates may be a one-step buffer, as there).  wp: ``pack_gates(w_hh_t, H)``.  Scratch: h_state (2, B, H) (the
    state read and the state written, swapped every step), c_state (B, H), rec (B, 64 *
    wp.shape[0]).  parts: threads, each owning a contiguous range of unit blocks.
    """
    T = xproj.shape[0]
    P = wp.shape[0]
    h_state[0] = h0
    c_state[:] = c0
    for s in range(T):
        t = T - 1 - s if reverse else s
        src, dst = h_state[s % 2], h_state[(s + 1) % 2]
        if parts == 1:
            lstm_panels_fwd(xproj[t], wp, t, lengths, act, src, dst, c_state, rec, h[t], c[t],
                            gates[min(t, gates.shape[0] - 1)], 0, P)
            continue
        for part in prange(parts):
            lstm_panels_fwd(xproj[t], wp, t, lengths, act, src, dst, c_state, rec, h[t], c[t],
                            gates[min(t, gates.shape[0] - 1)], part * P // parts,
                            (part + 1) * P // parts)
