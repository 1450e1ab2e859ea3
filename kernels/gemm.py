"""Float32 GEMM for the CPU backend: packed panels and a 6 x 64 register-blocked micro-kernel
(``tile6``; ``tile4`` and ``tile1`` take the rows left over).  The time loops of
``kernels.seq_rows`` and ``kernels.seq_units`` run their recurrent products on it.

Why not BLAS: the recurrent product of one step is small (16 x 64 x 256 for the S benchmark),
where OpenBLAS's fixed cost per call dominates (Zen 5 AVX-512: 8.6 us against 2.7 us), and the
OpenBLAS in the NumPy/SciPy wheels runs only its AVX2 kernels on AMD Zen 4/5 (half the AVX-512
rate).  This kernel is compiled by Numba for the CPU it runs on, so it uses AVX-512 wherever
the CPU has it.

The plain loop nest it computes, for reading::

    for i in range(M):
        for j in range(N):
            c[i, j] = (c[i, j] if accumulate else bias[j]) + sum(a[i, k] * b[k, j] for k)

The method is GotoBLAS's, reduced to what LSTMs need:

* ``b`` (K, N) is packed into panels of ``NR`` = 64 columns, ``bp[p, k, :] = b[k, 64p:64p+64]``,
  zero beyond column N.  Inside a panel the k-th row is 256 contiguous bytes, so the
  micro-kernel streams it with four vector loads and no TLB misses.  The recurrent weights are
  packed once per sequence (``pack_weights``, ``kernels.seq_units.pack_gates``); large
  products pack one ``KC``-row block at a time.
* The micro-kernel (``tile6``) keeps c[i:i+6, j:j+64] in 24 vector registers over the whole k
  loop: per k, four panel loads, six broadcasts of a[i+r, k], 24 FMAs.  ``tile4`` (16
  registers) and ``tile1`` (one row: B = 1) take the rows left over (``six_row_tiles``).
  Columns past N are masked on load and store.
* Rows are walked in blocks of ``MC`` so that a block of ``a`` stays in L2 while every panel
  passes over it.

``a`` may have any strides (``x.T`` works: the weight gradients are a.T @ b); ``c`` needs
contiguous rows.  Accumulation order per element is sequential in k, as in a naive loop.

Figures below were measured on a 2-core AMD EPYC Zen 5 with AVX-512 (2026-11) unless they name
another machine.  ``python -m bench.kernels gemm tiles`` checks the kernel and its tiles against
float64 NumPy and times them side by side (the GEMM against NumPy's SGEMM) on the machine at
hand.
"""
import numpy as np
from numba import literal_unroll, njit, prange
from numba.extending import overload

from . import KERNEL
from .common import part_rows
from .simd import LANES, fma, gather_n, load, load_n, prefetch, splat, store, store_n

NR = 4 * LANES  # panel width: four vectors
KC = 256        # rows of b packed per block in ``gemm``: a 64 KB panel block stays in L2
# Shorter k-blocks for a strided ``a`` (x.T: the weight gradients), whose output is weight-sized
# and stays in cache from one k-block to the next: a 32 KB panel stays in L1 (dW_hh at M
# +10%).  Products with a large output keep KC, as each k-block re-reads and re-writes all of
# c (the input projection at L: 446 -> 317 GFLOP/s with 128).
KC_TN = 128
MC = 64         # rows of a per block: 64 x KC floats (64 KB) stay in L2
# Pack b over all threads from this many panels on (512 KB at KC = 256); fewer pack faster
# than a parallel region starts (measured: 2048^2 GEMM 357 -> 387 GFLOP/s, weight gradients
# with 4 panels 380 -> 307 when they too were packed in parallel).
PARALLEL_PACK_PANELS = 8
# Copy blocks of a strided ``a`` into rows when b has this many panels to share the copy
# (measured at 2 threads: dW_hh at L, 8 panels, 380 -> 429 GFLOP/s; dW_ih at M, 2 panels,
# 389 -> 351: the copy's cache misses are no longer hidden behind FMAs).
PACK_A_PANELS = 8
# Rows of the panel (256 bytes each) that ``k_loop1`` prefetches ahead (8, 16, 32 and 64
# measured alike; 4 less well).
PREFETCH_K = 16
# Values ahead along W's rows that ``pack_panel`` asks for when it gathers (2 lines; 1 and 4
# measured worse).
PACK_PREFETCH = 32
# An output larger than this (several L2s) streams through the caches, and ``gemm`` has its
# tiles prefetched (``gemm_packed``'s stream_c).  Measured side by side: the input projection
# at M (6400 x 128 x 1024) 444-459 -> 475-492 GFLOP/s, the M forward 1.3-2.6% faster, the L
# training step 2.9%.  An output that stays in L2 only pays for the prefetches: the time loops'
# rec (B x 4H, rewritten every step) lost 3% with them, so matmul_into never asks for them.
STREAM_C_BYTES = 4 << 20


@njit(**KERNEL)
def panels(n):
    """Number of NR-column panels that cover n columns."""
    return (n + NR - 1) // NR


@njit(**KERNEL)
def pack_panel(b, k0, kc, bp, p):
    """bp[p, :kc] = b[k0:k0+kc, NR*p : NR*(p+1)], zero-padded past column N, by vector moves
    (the masked lanes supply the padding).  A scalar loop took 0.5-1.5 ns a value.

    b is often a transposed view (W.T, x.T): its rows are then strided, and each vector is
    gathered from 16 rows of W, k innermost so that their 16 cache lines serve 16 gathers
    (0.25 ns a value; k outermost spread a gather's lines over 64 rows: 0.76 ns at L's W_hh).
    Contiguous rows are read in order, k outermost (k innermost: 22 -> 39 us for W_hh at M).
    The gathers' 16 rows are 16 streams at once, more than the hardware prefetcher follows, so
    each row's line PACK_PREFETCH values ahead is asked for (W_hh at M from memory, as in
    every forward after the input projection: 100 -> 62 us).
    """
    N = b.shape[1]
    j0 = p * NR
    w = min(NR, N - j0)
    panel = bp[p]
    if b.strides[1] == b.itemsize:
        for k in range(kc):
            for q in range(0, NR, LANES):
                store(panel, k, q, load_n(b, k0 + k, j0 + q, min(max(w - q, 0), LANES)))
        return
    rows = b.T  # the gathers walk along these rows, 16 of them at once
    for q in range(0, NR, LANES):
        n = min(max(w - q, 0), LANES)
        for k in range(kc):
            if k % LANES == 0 and k + PACK_PREFETCH < kc:  # a new line of each row
                for v in range(n):
                    prefetch(rows, j0 + q + v, k0 + k + PACK_PREFETCH, 0)
            store(panel, k, q, gather_n(b, k0 + k, j0 + q, n))


@njit(inline="always", **KERNEL)
def load_row(b, i, j, n):
    """b[i, j:j+n] as a vector (lanes >= n zero), from contiguous or strided rows."""
    if b.strides[1] == b.itemsize:
        return load_n(b, i, j, n)
    return gather_n(b, i, j, n)


@njit(parallel=True, **KERNEL)
def pack(b, k0, kc, bp):
    """Every panel of ``pack_panel``: over all threads from PARALLEL_PACK_PANELS panels on."""
    if bp.shape[0] < PARALLEL_PACK_PANELS:
        for p in range(bp.shape[0]):
            pack_panel(b, k0, kc, bp, p)
        return
    for p in prange(bp.shape[0]):
        pack_panel(b, k0, kc, bp, p)


@njit(inline="always", **KERNEL)
def _lanes(c, j):
    """Valid lanes of a vector starting at column j of c."""
    return min(max(c.shape[1] - j, 0), LANES)


@njit(inline="always", **KERNEL)
def k_loop4(a, i, panel, kc, acc):
    """The micro-kernel: acc (16 vectors, rows i..i+3 x 4 panel vectors) += a[i:i+4, :kc] @
    panel[:kc].  Per k: four panel loads, four broadcasts, sixteen FMAs, all in registers."""
    c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33 = acc
    for k in range(kc):
        b0, b1 = load(panel, k, 0), load(panel, k, 16)
        b2, b3 = load(panel, k, 32), load(panel, k, 48)
        x = splat(a[i, k])
        c00, c01, c02, c03 = fma(x, b0, c00), fma(x, b1, c01), fma(x, b2, c02), fma(x, b3, c03)
        x = splat(a[i + 1, k])
        c10, c11, c12, c13 = fma(x, b0, c10), fma(x, b1, c11), fma(x, b2, c12), fma(x, b3, c13)
        x = splat(a[i + 2, k])
        c20, c21, c22, c23 = fma(x, b0, c20), fma(x, b1, c21), fma(x, b2, c22), fma(x, b3, c23)
        x = splat(a[i + 3, k])
        c30, c31, c32, c33 = fma(x, b0, c30), fma(x, b1, c31), fma(x, b2, c32), fma(x, b3, c33)
    return c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33


@njit(inline="always", **KERNEL)
def _fma_row(x, b, r):
    """One row of a tile: the four vectors r += x * b, x broadcast."""
    return fma(x, b[0], r[0]), fma(x, b[1], r[1]), fma(x, b[2], r[2]), fma(x, b[3], r[3])


@njit(inline="always", **KERNEL)
def k_loop6(a, i, panel, kc, acc):
    """``k_loop4`` for six rows (acc: 24 vectors; returned as six rows of four).  Each k's
    256 bytes of panel serve 24 FMAs instead of 16.  At K = 256 the panel (64 KB) does not fit
    L1 and streams from L2 for every tile, so the fewer tiles the better.  Measured side by
    side at M, 32 rows a core: the recurrent product 257 -> 267 GFLOP/s a core, the forward
    time loop 2.7-4.7% faster, the input projection -1% to +9%.  Six rows are the most that fit:
    24 accumulators, four panel vectors and a broadcast of the 32 registers."""
    r0, r1, r2, r3, r4, r5 = acc[0:4], acc[4:8], acc[8:12], acc[12:16], acc[16:20], acc[20:24]
    for k in range(kc):
        b = load(panel, k, 0), load(panel, k, 16), load(panel, k, 32), load(panel, k, 48)
        r0 = _fma_row(splat(a[i, k]), b, r0)
        r1 = _fma_row(splat(a[i + 1, k]), b, r1)
        r2 = _fma_row(splat(a[i + 2, k]), b, r2)
        r3 = _fma_row(splat(a[i + 3, k]), b, r3)
        r4 = _fma_row(splat(a[i + 4, k]), b, r4)
        r5 = _fma_row(splat(a[i + 5, k]), b, r5)
    return r0, r1, r2, r3, r4, r5


@njit(inline="always", **KERNEL)
def k_loop1(a, i, panel, kc, acc):
    """``k_loop4`` for one row.  With four FMAs per 256 bytes of panel this loop streams
    the panel from L2 (B = 1: W_hh), faster than the hardware prefetcher fetches it; asking
    for the lines PREFETCH_K rows ahead took the B1 time loops from 0.62 to 0.47 ms.  (In
    ``k_loop4``, with four times the FMAs per line, prefetching measured no gain.)"""
    c0, c1, c2, c3 = acc
    for k in range(kc):
        prefetch(panel, k + PREFETCH_K, 0, 0)
        prefetch(panel, k + PREFETCH_K, 16, 0)
        prefetch(panel, k + PREFETCH_K, 32, 0)
        prefetch(panel, k + PREFETCH_K, 48, 0)
        x = splat(a[i, k])
        c0, c1 = fma(x, load(panel, k, 0), c0), fma(x, load(panel, k, 16), c1)
        c2, c3 = fma(x, load(panel, k, 32), c2), fma(x, load(panel, k, 48), c3)
    return c0, c1, c2, c3


@njit(inline="always", **KERNEL)
def _row_init(c, r, j0, j1, j2, j3, accumulate, start):
    """Starting values of one row's four vectors: c's row r, ``start`` (the panel's bias
    vectors), or zeros."""
    if accumulate:
        return (load_n(c, r, j0, _lanes(c, j0)), load_n(c, r, j1, _lanes(c, j1)),
                load_n(c, r, j2, _lanes(c, j2)), load_n(c, r, j3, _lanes(c, j3)))
    if start is not None:
        return start
    z = splat(0.0)
    return z, z, z, z


@njit(inline="always", **KERNEL)
def _bias_vectors(bias, c, j0, j1, j2, j3):
    """The bias row's four vectors at a panel's columns, or None without a bias.  Loaded once
    per panel, not per tile: a masked load that crosses a page costs far more than a plain one
    (the bias row is a small array at any offset; measured at M: its GEMM 4.0 -> 5.0 ms at
    some offsets)."""
    if bias is None:
        return None
    return (load_n(bias, 0, j0, _lanes(c, j0)), load_n(bias, 0, j1, _lanes(c, j1)),
            load_n(bias, 0, j2, _lanes(c, j2)), load_n(bias, 0, j3, _lanes(c, j3)))


@njit(inline="always", **KERNEL)
def _row_store(c, r, j0, j1, j2, j3, v):
    """Row r of a tile: its four vectors ``v`` to columns j0..j3 of c."""
    store_n(c, r, j0, v[0], _lanes(c, j0))
    store_n(c, r, j1, v[1], _lanes(c, j1))
    store_n(c, r, j2, v[2], _lanes(c, j2))
    store_n(c, r, j3, v[3], _lanes(c, j3))


@njit(inline="always", **KERNEL)
def tile4(a, ia, panel, kc, c, i, j0, j1, j2, j3, accumulate, start):
    """Rows i..i+3 of c = a[ia:ia+4] @ panel + (c if accumulate else start, the bias vectors,
    or 0), where the panel's four vectors land at columns j0, j1, j2, j3 of c (columns past
    c's width are skipped)."""
    acc = (_row_init(c, i, j0, j1, j2, j3, accumulate, start)
           + _row_init(c, i + 1, j0, j1, j2, j3, accumulate, start)
           + _row_init(c, i + 2, j0, j1, j2, j3, accumulate, start)
           + _row_init(c, i + 3, j0, j1, j2, j3, accumulate, start))
    c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33 = \
        k_loop4(a, ia, panel, kc, acc)
    _row_store(c, i, j0, j1, j2, j3, (c00, c01, c02, c03))
    _row_store(c, i + 1, j0, j1, j2, j3, (c10, c11, c12, c13))
    _row_store(c, i + 2, j0, j1, j2, j3, (c20, c21, c22, c23))
    _row_store(c, i + 3, j0, j1, j2, j3, (c30, c31, c32, c33))


@njit(inline="always", **KERNEL)
def tile6(a, ia, panel, kc, c, i, j0, j1, j2, j3, accumulate, start):
    """``tile4`` for rows i..i+5."""
    r = k_loop6(a, ia, panel, kc,
                 _row_init(c, i, j0, j1, j2, j3, accumulate, start)
                 + _row_init(c, i + 1, j0, j1, j2, j3, accumulate, start)
                 + _row_init(c, i + 2, j0, j1, j2, j3, accumulate, start)
                 + _row_init(c, i + 3, j0, j1, j2, j3, accumulate, start)
                 + _row_init(c, i + 4, j0, j1, j2, j3, accumulate, start)
                 + _row_init(c, i + 5, j0, j1, j2, j3, accumulate, start))
    for q in literal_unroll((0, 1, 2, 3, 4, 5)):
        _row_store(c, i + q, j0, j1, j2, j3, r[q])


@njit(inline="always", **KERNEL)
def tile1(a, ia, panel, kc, c, i, j0, j1, j2, j3, accumulate, start):
    """Row i of ``tile4`` (from row ia of a)."""
    _row_store(c, i, j0, j1, j2, j3,
               k_loop1(a, ia, panel, kc, _row_init(c, i, j0, j1, j2, j3, accumulate, start)))


@njit(inline="always", **KERNEL)
def _prefetch_tile(c, i, j, rows):
    """Ask for the lines of c[i:i+rows, j:j+64] (a tile's output), for writing."""
    for r in range(i, i + rows):
        for q in range(0, NR, LANES):
            prefetch(c, r, j + q, 1)


@njit(**KERNEL)
def gemm_packed(a, bp, c, lo, hi, accumulate, bias, pstep=NR, qstep=LANES, ap=None,
                stream_c=False):
    """c[lo:hi] = a[lo:hi] @ b + (c[lo:hi] if accumulate else bias), for the packed b (``bp``,
    K = a.shape[1] rows per panel).  bias: (1, N) row added to every row, or None.  The time
    loops call this with weights packed once.

    stream_c: c is too large for the caches (``gemm`` decides), so each tile asks for the
    next tile's lines of c while its k loop runs.  The hardware prefetcher does not: a
    tile's rows of c lie a row pitch apart, often 4 KB or more, and it does not cross pages.

    Lane v of vector q of panel p goes to column p * pstep + q * qstep + v of c: (NR, LANES)
    for a plain product; (LANES, H) turns ``pack_gates``'s unit blocks back into [i f g o].

    ap: None, or scratch of at least K rows and MC + 16 columns.  With it, each MC-row block
    of a strided ``a`` (``x.T``) is first copied into it, row k of ap holding the block's k-th
    values (``pack_rows``).  Read in place, a tile's k-th values lie one row of x apart (4-8 KB
    for dz.T), so a block's lines crowd into few cache sets and come from L3.  A buffer of
    fewer than K rows turns the copy off: ``gemm`` passes an empty one when too few panels
    share the copy, so that one compiled version serves both cases.
    """
    kc = a.shape[1]
    packed = ap is not None and ap.shape[0] >= kc and a.strides[1] != a.itemsize
    apt = ap[:kc].T if packed else a  # one view per call, not one per tile
    for i0 in range(lo, hi, MC):
        i1 = min(i0 + MC, hi)
        if packed:
            pack_rows(a, i0, i1, ap)
        r0 = i0 if packed else 0  # row i of c comes from row i - r0 of apt
        for p in range(bp.shape[0]):
            panel, j = bp[p], p * pstep
            j1, j2, j3 = j + qstep, j + 2 * qstep, j + 3 * qstep
            start = _bias_vectors(bias, c, j, j1, j2, j3)
            i = i0
            for _ in range(six_row_tiles(i1 - i0)):
                if stream_c:  # the next tile's rows (up to 6; none after the last)
                    _prefetch_tile(c, i + 6, j, min(6, i1 - i - 6))
                tile6(apt, i - r0, panel, kc, c, i, j, j1, j2, j3, accumulate, start)
                i += 6
            while i + 4 <= i1:
                if stream_c and i + 8 <= i1:
                    _prefetch_tile(c, i + 4, j, 4)
                tile4(apt, i - r0, panel, kc, c, i, j, j1, j2, j3, accumulate, start)
                i += 4
            while i < i1:
                tile1(apt, i - r0, panel, kc, c, i, j, j1, j2, j3, accumulate, start)
                i += 1


@njit(**KERNEL)
def six_row_tiles(rows):
    """How many ``tile6`` to run over a block of rows, the rest going to ``tile4`` and then
    ``tile1``: as many as leave at most one row to ``tile1`` (32 rows: 4 x 6 + 2 x 4, where 5 x
    6 would leave 2 single rows, each streaming the panel again)."""
    n = rows // 6
    if n > 0 and (rows - 6 * n) % 4 >= 2:
        n -= 1
    return n


@njit(**KERNEL)
def pack_rows(a, i0, i1, ap):
    """ap[k, r] = a[i0 + r, k] for rows i0..i1-1 of a transposed view (contiguous columns:
    16 values a move)."""
    at, n = a.T, i1 - i0
    if at.strides[1] != at.itemsize:
        for k in range(at.shape[0]):
            for r in range(n):
                ap[k, r] = at[k, i0 + r]
        return
    for k in range(at.shape[0]):
        for r in range(0, n, LANES):
            m = min(LANES, n - r)
            store_n(ap, k, r, load_n(at, k, i0 + r, m), m)


@njit(parallel=True, **KERNEL)
def gemm(a, b, c, accumulate, parts, bias=None):
    """c = a @ b + (c if accumulate else bias).  a (M,K) and b (K,N) any strides; c (M,N) with
    contiguous rows; bias a (1,N) row or None.

    b is packed KC rows at a time (KC_TN when a is strided); the rows of c are split into
    ``parts`` blocks run by prange.
    """
    K, N = a.shape[1], b.shape[1]
    kcb = KC_TN if a.strides[1] != a.itemsize else KC
    bp = np.empty((panels(N), min(kcb, max(K, 1)), NR), np.float32)
    # Each thread's block of a, if copied (gemm_packed's ``ap``; empty: not copied).  Rows of
    # 80 floats, so that a tile's values of consecutive k fall into different L1 sets.
    copies = bp.shape[1] if bp.shape[0] >= PACK_A_PANELS else 0
    ap = np.empty((parts, copies, MC + LANES), np.float32)
    stream_c = c.shape[0] * c.shape[1] * 4 > STREAM_C_BYTES
    if K == 0 and not accumulate:
        for i in range(c.shape[0]):
            for j in range(N):
                c[i, j] = 0.0 if bias is None else bias[0, j]
    for k0 in range(0, K, kcb):
        kc = min(kcb, K - k0)
        pack(b, k0, kc, bp)
        ak, acc = a[:, k0:k0 + kc], accumulate or k0 > 0
        for part in prange(parts):
            lo, hi = part_rows(part, parts, c.shape[0])
            gemm_packed(ak, bp[:, :kc], c, lo, hi, acc, bias, NR, LANES, ap[part], stream_c)


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
