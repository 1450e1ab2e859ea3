"""Float32 GEMM for the CPU backend: packed panels and a 6-row register-blocked micro-kernel
(``tile6``; ``tile4`` and ``tile1`` take the rows left over), 6 x 64 on AVX-512 and 6 x 16 on
AVX2 (``kernels.isa``).  The time loops of ``kernels.seq_rows`` and ``kernels.seq_units`` run
their recurrent products on it.

Why not BLAS: the recurrent product of one step is small (16 x 64 x 256 for the S benchmark),
where OpenBLAS's fixed cost per call dominates (Zen 5 AVX-512: 8.6 us against 2.7 us), and the
OpenBLAS in the NumPy/SciPy wheels runs only its AVX2 kernels on AMD Zen 4/5 (half the AVX-512
rate).  This kernel is compiled by Numba for the CPU it runs on, so it uses AVX-512 wherever
the CPU has it.  On CPUs with neither AVX-512 nor AVX2 + FMA, float32 products go to BLAS
(``isa.ENGINE_GEMM``).

The plain loop nest it computes, for reading::

    for i in range(M):
        for j in range(N):
            c[i, j] = (c[i, j] if accumulate else bias[j]) + sum(a[i, k] * b[k, j] for k)

The method is GotoBLAS's, reduced to what LSTMs need:

* ``b`` (K, N) is packed into panels of ``NR`` columns (``GEMM_VECS`` vectors: 64 on AVX-512,
  16 on AVX2), ``bp[p, k, :] = b[k, NR*p:NR*p+NR]``, zero beyond column N.  Inside a panel the
  k-th row is contiguous, so the micro-kernel streams it with GEMM_VECS vector loads and no TLB
  misses.  The recurrent weights are
  packed once per sequence (``pack_weights``, ``kernels.seq_units.pack_gates``); large
  products pack one ``KC``-row block at a time.
* The micro-kernel (``tile6``) keeps c[i:i+6, j:j+NR] in 6 * GEMM_VECS vector registers over
  the whole k loop (24 on AVX-512, 12 on AVX2): per k, GEMM_VECS panel loads, six broadcasts of
  a[i+r, k], 6 * GEMM_VECS FMAs.  ``tile4`` and ``tile1`` (one row: B = 1) take the rows left
  over (``six_row_tiles``).  ``python -m bench.asm`` prints these loops as compiled.
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
import threading

import numpy as np
from numba import literal_unroll, njit, prange, types
from numba.extending import overload

from . import KERNEL
from .common import part_rows
from .isa import GEMM_KC, GEMM_VECS, PACK_A_COLUMNS
from .simd import (LANES, fma, fma4, gather_n, load, load_upto, prefetch, splat, store,
                   store_upto)

NR = GEMM_VECS * LANES  # panel width: 64 columns on AVX-512, 16 on AVX2 (kernels.isa)
LINE = 16               # floats in a 64-byte cache line
KC = GEMM_KC            # rows of b packed per block in ``gemm`` (kernels.isa): 256 on
                        # AVX-512 (a 64 KB panel stays in L2), 512 on AVX2 (32 KB)
# Shorter k-blocks for a strided ``a`` (x.T: the weight gradients), whose output is weight-sized
# and stays in cache from one k-block to the next: a panel stays in L1 (Zen 5: dW_hh at M +10%
# against 256; Zen 3, AVX2: 128 and 256 alike within the noise).  Products with a large output
# keep KC, as each k-block re-reads and re-writes all of c (the input projection at L: 446 ->
# 317 GFLOP/s with 128).
KC_TN = 128
MC = 64         # rows of a per block: 64 x KC floats (64 KB) stay in L2
# Pack b over all threads from 512 columns on (512 KB at KC = 256); fewer pack faster than a
# parallel region starts (measured: 2048^2 GEMM 357 -> 387 GFLOP/s, weight gradients with 256
# columns 380 -> 307 when they too were packed in parallel).
PARALLEL_PACK_PANELS = 512 // NR
# Copy blocks of a strided ``a`` into rows when b has PACK_A_COLUMNS columns or more to share
# the copy (kernels.isa).
PACK_A_PANELS = max(1, PACK_A_COLUMNS // NR)
# Rows of the panel that ``k_loop1`` prefetches ahead (Zen 5, 256-byte rows: 8, 16, 32 and 64
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
                store(panel, k, q, load_upto(b, k0 + k, j0 + q, min(max(w - q, 0), LANES)))
        return
    rows = b.T  # the gathers walk along these rows, 16 of them at once
    for q in range(0, NR, LANES):
        n = min(max(w - q, 0), LANES)
        for k in range(kc):
            if k % LINE == 0 and k + PACK_PREFETCH < kc:  # a new line of each row
                for v in range(n):
                    prefetch(rows, j0 + q + v, k0 + k + PACK_PREFETCH, 0)
            store(panel, k, q, gather_n(b, k0 + k, j0 + q, n))


@njit(**KERNEL)
def load_row(b, i, j, n):
    """b[i, j:j+n] as a vector (lanes >= n zero), from contiguous or strided rows."""
    if b.strides[1] == b.itemsize:
        return load_upto(b, i, j, n)
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


@njit(**KERNEL)
def _lanes(c, j):
    """Valid lanes of a vector starting at column j of c."""
    return min(max(c.shape[1] - j, 0), LANES)


# ---------------------------------------------------------------------------- tile rows
# One row of a tile is a tuple of GEMM_VECS vectors (kernels.isa: 4 on AVX-512, 2 on AVX2),
# the panel's columns j, j + LANES, ...  These helpers are the only code that knows how many;
# the tiles and their k loops below are written once over them.

if GEMM_VECS == 4:
    @njit(**KERNEL)
    def panel_row(panel, k):
        """The k-th row of a packed panel, as GEMM_VECS vectors."""
        return (load(panel, k, 0), load(panel, k, LANES), load(panel, k, 2 * LANES),
                load(panel, k, 3 * LANES))

    fma_row = fma4  # one row of a tile: r += x * b, x broadcast

    @njit(**KERNEL)
    def _row_load(a, r, j):
        """a[r, j:j+NR] as a tile row, masked past a's width."""
        return (load_upto(a, r, j, _lanes(a, j)),
                load_upto(a, r, j + LANES, _lanes(a, j + LANES)),
                load_upto(a, r, j + 2 * LANES, _lanes(a, j + 2 * LANES)),
                load_upto(a, r, j + 3 * LANES, _lanes(a, j + 3 * LANES)))

    @njit(**KERNEL)
    def zero_row():
        z = splat(0.0)
        return z, z, z, z

    @njit(**KERNEL)
    def _row_store(c, r, j, v):
        """Row r of a tile: its vectors ``v`` to c[r, j:j+NR] (columns past c's width
        skipped)."""
        store_upto(c, r, j, v[0], _lanes(c, j))
        store_upto(c, r, j + LANES, v[1], _lanes(c, j + LANES))
        store_upto(c, r, j + 2 * LANES, v[2], _lanes(c, j + 2 * LANES))
        store_upto(c, r, j + 3 * LANES, v[3], _lanes(c, j + 3 * LANES))
else:
    @njit(**KERNEL)
    def panel_row(panel, k):
        """The k-th row of a packed panel, as GEMM_VECS vectors."""
        return load(panel, k, 0), load(panel, k, LANES)

    @njit(**KERNEL)
    def fma_row(x, b, r):
        """One row of a tile: r += x * b, x broadcast."""
        return fma(x, b[0], r[0]), fma(x, b[1], r[1])

    @njit(**KERNEL)
    def _row_load(a, r, j):
        """a[r, j:j+NR] as a tile row, masked past a's width."""
        return load_upto(a, r, j, _lanes(a, j)), load_upto(a, r, j + LANES, _lanes(a, j + LANES))

    @njit(**KERNEL)
    def zero_row():
        z = splat(0.0)
        return z, z

    @njit(**KERNEL)
    def _row_store(c, r, j, v):
        """Row r of a tile: its vectors ``v`` to c[r, j:j+NR] (columns past c's width
        skipped)."""
        store_upto(c, r, j, v[0], _lanes(c, j))
        store_upto(c, r, j + LANES, v[1], _lanes(c, j + LANES))


@njit(**KERNEL)
def _row_init(c, r, j, accumulate, start):
    """Starting values of one tile row: c's row r, or ``start`` (the panel's bias vectors or
    zeros)."""
    if accumulate:
        return _row_load(c, r, j)
    return start


@njit(**KERNEL)
def _start_vectors(bias, c, j):
    """The starting values of a panel's tile rows that do not accumulate: the bias row's
    vectors at the panel's columns, or zeros without a bias.  Loaded once per panel, not per
    tile: a masked load that crosses a page costs far more than a plain one (the bias row is a
    small array at any offset; measured at M: its GEMM 4.0 -> 5.0 ms at some offsets)."""
    if bias is None or bias.shape[0] == 0:  # a bias with no rows: none (``gemm``)
        return zero_row()
    return _row_load(bias, 0, j)


# ---------------------------------------------------------------------------- micro-kernels
@njit(inline="always", **KERNEL)
def _prefetch_row(panel, k):
    """Ask for each cache line of the panel's row PREFETCH_K rows ahead."""
    for q in range(0, NR, LINE):
        prefetch(panel, k + PREFETCH_K, q, 0)


# The 6- and 4-row tiles prefetch their panel too where a panel row is several cache lines
# (AVX-512's 64 columns: four lines a k-step; an AVX2 row is one line, and its loops compile as
# before).  A 256-row panel is 64 KB, past a 48 KB L1, so the tiles stream it from L2; on a
# 2-core Intel Xeon (AVX-512) that stream fell behind the FMAs: the tile on one panel 165-171 ->
# 189-193 GFLOP/s, and side by side, separate checkouts, alternating processes: M forward
# 0.936x (paired median, 16 runs), L forward 0.929x (10), M training step 0.991x (12).  Not
# measured on the AMD cores (on the Zen 5 ``k_loop4`` had measured no gain).
PREFETCH_TILES = NR > LINE


@njit(**KERNEL)
def k_loop6(a, i, panel, kc, acc):
    """The micro-kernel: acc (six tile rows) += a[i:i+6, :kc] @ panel[:kc].  Per k: one panel
    row (GEMM_VECS loads), six broadcasts, 6 * GEMM_VECS FMAs, all in registers.  Six rows are
    the most that fit: 24 accumulators, four panel vectors and a broadcast of AVX-512's 32
    registers; 12, two and a broadcast of AVX2's 16 (BLIS's Haswell 6 x 16).  Measured side by
    side at M on a Zen 5, 32 rows a core: the recurrent product 257 -> 267 GFLOP/s a core
    against ``k_loop4``, the forward time loop 2.7-4.7% faster, the input projection -1% to
    +9%.  On a Zen 3 (AVX2), ``python -m bench.kernels tiles``: the 6 x 16 tile 89 GFLOP/s a
    core (the register-only FMA peak: 93), where 6 rows of 64 columns in 16-lane vectors, the
    AVX-512 shape, spilled to 25."""
    r0, r1, r2, r3, r4, r5 = acc
    for k in range(kc):
        if PREFETCH_TILES:
            _prefetch_row(panel, k)
        b = panel_row(panel, k)
        r0 = fma_row(splat(a[i, k]), b, r0)
        r1 = fma_row(splat(a[i + 1, k]), b, r1)
        r2 = fma_row(splat(a[i + 2, k]), b, r2)
        r3 = fma_row(splat(a[i + 3, k]), b, r3)
        r4 = fma_row(splat(a[i + 4, k]), b, r4)
        r5 = fma_row(splat(a[i + 5, k]), b, r5)
    return r0, r1, r2, r3, r4, r5


@njit(**KERNEL)
def k_loop4(a, i, panel, kc, acc):
    """``k_loop6`` for four rows."""
    r0, r1, r2, r3 = acc
    for k in range(kc):
        if PREFETCH_TILES:
            _prefetch_row(panel, k)
        b = panel_row(panel, k)
        r0 = fma_row(splat(a[i, k]), b, r0)
        r1 = fma_row(splat(a[i + 1, k]), b, r1)
        r2 = fma_row(splat(a[i + 2, k]), b, r2)
        r3 = fma_row(splat(a[i + 3, k]), b, r3)
    return r0, r1, r2, r3


@njit(**KERNEL)
def k_loop1(a, i, panel, kc, r):
    """``k_loop6`` for one row.  With GEMM_VECS FMAs per panel row this loop streams the
    panel from L2 (B = 1: W_hh), faster than the hardware prefetcher fetches it; asking for
    the lines PREFETCH_K rows ahead took the B1 time loops from 0.62 to 0.47 ms (Zen 5).  (In
    ``k_loop4``, with four times the FMAs per line, prefetching measured no gain on the Zen 5;
    ``k_loop6`` and ``k_loop4`` now prefetch too on AVX-512, ``PREFETCH_TILES``.)"""
    for k in range(kc):
        _prefetch_row(panel, k)
        r = fma_row(splat(a[i, k]), panel_row(panel, k), r)
    return r


@njit(**KERNEL)
def tile6(a, ia, panel, kc, c, i, j, accumulate, start):
    """Rows i..i+5 of c[:, j:j+NR] = a[ia:ia+6] @ panel + (c if accumulate else start: the
    bias vectors or zeros, ``_start_vectors``); columns past c's width are skipped."""
    r = k_loop6(a, ia, panel, kc, (
        _row_init(c, i, j, accumulate, start), _row_init(c, i + 1, j, accumulate, start),
        _row_init(c, i + 2, j, accumulate, start), _row_init(c, i + 3, j, accumulate, start),
        _row_init(c, i + 4, j, accumulate, start), _row_init(c, i + 5, j, accumulate, start)))
    for q in literal_unroll((0, 1, 2, 3, 4, 5)):
        _row_store(c, i + q, j, r[q])


@njit(**KERNEL)
def tile4(a, ia, panel, kc, c, i, j, accumulate, start):
    """``tile6`` for rows i..i+3."""
    r = k_loop4(a, ia, panel, kc, (
        _row_init(c, i, j, accumulate, start), _row_init(c, i + 1, j, accumulate, start),
        _row_init(c, i + 2, j, accumulate, start), _row_init(c, i + 3, j, accumulate, start)))
    for q in literal_unroll((0, 1, 2, 3)):
        _row_store(c, i + q, j, r[q])


@njit(**KERNEL)
def tile1(a, ia, panel, kc, c, i, j, accumulate, start):
    """Row i of ``tile6`` (from row ia of a)."""
    _row_store(c, i, j, k_loop1(a, ia, panel, kc, _row_init(c, i, j, accumulate, start)))


@njit(**KERNEL)
def _prefetch_tile(c, i, j, rows):
    """Ask for the lines of c[i:i+rows, j:j+NR] (a tile's output), for writing."""
    for r in range(i, i + rows):
        for q in range(0, NR, LINE):
            prefetch(c, r, j + q, 1)


@njit(**KERNEL)
def gemm_packed(a, bp, c, lo, hi, accumulate, bias, ap=None, stream_c=False):
    """c[lo:hi] = a[lo:hi] @ b + (c[lo:hi] if accumulate else bias), for the packed b (``bp``,
    K = a.shape[1] rows per panel; panel p holds columns p * NR ...).  bias: (1, N) row added
    to every row, or None.  The time loops call this with weights packed once.

    stream_c: c is too large for the caches (``gemm`` decides), so each tile asks for the
    next tile's lines of c while its k loop runs.  The hardware prefetcher does not: a
    tile's rows of c lie a row pitch apart, often 4 KB or more, and it does not cross pages.

    ap: None, or scratch of at least K rows and MC + LANES columns.  With it, each MC-row
    block of a strided ``a`` (``x.T``) is first copied into it, row k of ap holding the block's
    k-th values (``pack_rows``).  Read in place, a tile's k-th values lie one row of x apart
    (4-8 KB for dz.T), so a block's lines crowd into few cache sets and come from L3.  A buffer
    of fewer than K rows turns the copy off: ``gemm`` passes an empty one when too few panels
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
            panel, j = bp[p], p * NR
            start = _start_vectors(bias, c, j)
            i = i0
            for _ in range(six_row_tiles(i1 - i0)):
                if stream_c:  # the next tile's rows (up to 6; none after the last)
                    _prefetch_tile(c, i + 6, j, min(6, i1 - i - 6))
                tile6(apt, i - r0, panel, kc, c, i, j, accumulate, start)
                i += 6
            while i + 4 <= i1:
                if stream_c and i + 8 <= i1:
                    _prefetch_tile(c, i + 4, j, 4)
                tile4(apt, i - r0, panel, kc, c, i, j, accumulate, start)
                i += 4
            while i < i1:
                tile1(apt, i - r0, panel, kc, c, i, j, accumulate, start)
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
            store_upto(ap, k, r, load_upto(at, k, i0 + r, m), m)


def gemm(a, b, c, accumulate, parts, bias=None):
    """c = a @ b + (c if accumulate else bias).  a (M,K) and b (K,N) float32, any strides; c
    (M,N) float32 with contiguous rows; bias a float32 (1,N) row or None.

    b is packed KC rows at a time (KC_TN when a is strided); the rows of c are split into
    ``parts`` blocks run by prange.  Compiled once, for ``GEMM_SIGNATURE`` (``_one_layout``).
    """
    _one_layout()
    _gemm(a, b, c, accumulate, parts, _NO_BIAS if bias is None else bias)


@njit(parallel=True, **KERNEL)
def _gemm(a, b, c, accumulate, parts, bias):
    """``gemm``, where a bias with no rows means none."""
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
                c[i, j] = 0.0 if bias.shape[0] == 0 else bias[0, j]
    for k0 in range(0, K, kcb):
        kc = min(kcb, K - k0)
        pack(b, k0, kc, bp)
        ak, acc = a[:, k0:k0 + kc], accumulate or k0 > 0
        for part in prange(parts):
            lo, hi = part_rows(part, parts, c.shape[0])
            gemm_packed(ak, bp[:, :kc], c, lo, hi, acc, bias, ap[part], stream_c)


def pack_weights(w):
    """A weight matrix (K, N) packed once for ``matmul_into``: (panels(N), K, NR) float32."""
    _one_layout()
    K, N = w.shape
    bp = np.empty((panels(N), K, NR), np.float32)
    pack(w, 0, K, bp)
    return bp


# The argument types ``gemm`` and ``pack`` are compiled for: inputs of any layout, read-only, and
# an output of any layout; ``gemm`` without a bias gets one with no rows.  Numba compiles a
# function once per combination of argument types, and an array's type holds its layout (C, F or
# neither) and whether it is writeable: callers pass x, W.T, dz.T, slices, and the read-only
# arrays layers hand each other (engine.grad), so ``gemm`` came to 12 specialisations in
# ``make test`` and 4 in a small model's first ``fit``, each 1.5-2 s of compiling (plus
# ``pack``'s), for the same machine code: the kernels read strides at run time (kernels.simd).
# Measured side by side on a 2-core Intel Xeon (AVX-512): a 2048^2 product and M's products at
# the same rate; M's forward within 0.5% and its training step within 1% over 16 and 28
# alternating runs; a small model's first fit from an empty cache 36.0 -> 24.4 s (with
# kernels.step's single forward).
_INPUT = types.Array(types.float32, 2, "A", readonly=True)
_NO_BIAS = np.zeros((0, 0), np.float32)
_NO_BIAS.flags.writeable = False
GEMM_SIGNATURE = (_INPUT, _INPUT, types.Array(types.float32, 2, "A"), types.boolean, types.intp,
                  _INPUT)
PACK_SIGNATURE = (_INPUT, types.intp, types.intp, types.Array(types.float32, 3, "C"))


_compiled = threading.Event()
_compiling = threading.Lock()


def _one_layout():
    """Compile ``gemm`` and ``pack`` for their signatures above (from the cache when it has
    them), once, on first use, and stop Numba compiling them for anything else: a call with
    another layout, or with writeable inputs, is converted to these types, which costs
    nothing at run time (a call passes pointers and strides either way).  Threads that call
    first together wait for one of them (a disabled dispatcher refuses ``compile``)."""
    if _compiled.is_set():
        return
    with _compiling:
        if _compiled.is_set():
            return
        for kernel, signature in ((pack, PACK_SIGNATURE), (_gemm, GEMM_SIGNATURE)):
            kernel.compile(signature)
            kernel.disable_compile()
        _compiled.set()


def matmul_into(a, w, out):
    """out = a @ w inside @njit code; ``w`` either a plain (K, N) matrix (BLAS) or the result
    of ``pack_weights`` (this module's kernel).  Resolved at compile time (overload below)."""
    np.dot(a, w, out)


@overload(matmul_into, jit_options=KERNEL)
def _matmul_into(a, w, out):
    if w.ndim == 3:
        return lambda a, w, out: gemm_packed(a, w, out, 0, a.shape[0], False, None)
    return lambda a, w, out: np.dot(a, w, out)
