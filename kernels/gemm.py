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
    """bp[p, :kc] = b[k0:k0+kc, NR*p : NR*(p+1)], zero-padded past column N."""
    N = b.shape[1]
    for p in range(bp.shape[0]):
        j0 = p * NR
        w = min(NR, N - j0)
        for k in range(kc):
            for v in range(w):
                bp[p, k, v] = b[k0 + k, j0 + v]
            for v in range(w, NR):
                bp[p, k, v] = 0.0


@njit(inline="always", **KERNEL)
def _lanes(n, q):
    """Valid lanes of vector q (0..3) in a tile with n valid columns."""
    return min(max(n - q * LANES, 0), LANES)


@njit(**KERNEL)
def tile4(a, i, panel, kc, c, j, n, accumulate, bias):
    """c[i:i+4, j:j+n] = a[i:i+4, :kc] @ panel[:kc, :n] + (c if accumulate else bias row or 0)."""
    n0, n1, n2, n3 = _lanes(n, 0), _lanes(n, 1), _lanes(n, 2), _lanes(n, 3)
    if accumulate:
        c00, c01, c02, c03 = (load_n(c, i, j, n0), load_n(c, i, j + 16, n1),
                              load_n(c, i, j + 32, n2), load_n(c, i, j + 48, n3))
        c10, c11, c12, c13 = (load_n(c, i + 1, j, n0), load_n(c, i + 1, j + 16, n1),
                              load_n(c, i + 1, j + 32, n2), load_n(c, i + 1, j + 48, n3))
        c20, c21, c22, c23 = (load_n(c, i + 2, j, n0), load_n(c, i + 2, j + 16, n1),
                              load_n(c, i + 2, j + 32, n2), load_n(c, i + 2, j + 48, n3))
        c30, c31, c32, c33 = (load_n(c, i + 3, j, n0), load_n(c, i + 3, j + 16, n1),
                              load_n(c, i + 3, j + 32, n2), load_n(c, i + 3, j + 48, n3))
    else:  # every row starts from the bias row, or from zeros
        z0 = z1 = z2 = z3 = splat(0.0)
        if bias is not None:
            z0, z1 = load_n(bias, 0, j, n0), load_n(bias, 0, j + 16, n1)
            z2, z3 = load_n(bias, 0, j + 32, n2), load_n(bias, 0, j + 48, n3)
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
    store_n(c, i, j, c00, n0), store_n(c, i, j + 16, c01, n1)
    store_n(c, i, j + 32, c02, n2), store_n(c, i, j + 48, c03, n3)
    store_n(c, i + 1, j, c10, n0), store_n(c, i + 1, j + 16, c11, n1)
    store_n(c, i + 1, j + 32, c12, n2), store_n(c, i + 1, j + 48, c13, n3)
    store_n(c, i + 2, j, c20, n0), store_n(c, i + 2, j + 16, c21, n1)
    store_n(c, i + 2, j + 32, c22, n2), store_n(c, i + 2, j + 48, c23, n3)
    store_n(c, i + 3, j, c30, n0), store_n(c, i + 3, j + 16, c31, n1)
    store_n(c, i + 3, j + 32, c32, n2), store_n(c, i + 3, j + 48, c33, n3)


@njit(**KERNEL)
def tile1(a, i, panel, kc, c, j, n, accumulate, bias):
    """c[i, j:j+n] = a[i, :kc] @ panel[:kc, :n] + (c if accumulate else bias row or 0)."""
    n0, n1, n2, n3 = _lanes(n, 0), _lanes(n, 1), _lanes(n, 2), _lanes(n, 3)
    if accumulate:
        c0, c1, c2, c3 = (load_n(c, i, j, n0), load_n(c, i, j + 16, n1),
                          load_n(c, i, j + 32, n2), load_n(c, i, j + 48, n3))
    else:
        c0 = c1 = c2 = c3 = splat(0.0)
        if bias is not None:
            c0, c1 = load_n(bias, 0, j, n0), load_n(bias, 0, j + 16, n1)
            c2, c3 = load_n(bias, 0, j + 32, n2), load_n(bias, 0, j + 48, n3)
    for k in range(kc):
        x = splat(a[i, k])
        c0, c1 = fma(x, load(panel, k, 0), c0), fma(x, load(panel, k, 16), c1)
        c2, c3 = fma(x, load(panel, k, 32), c2), fma(x, load(panel, k, 48), c3)
    store_n(c, i, j, c0, n0), store_n(c, i, j + 16, c1, n1)
    store_n(c, i, j + 32, c2, n2), store_n(c, i, j + 48, c3, n3)


@njit(**KERNEL)
def gemm_packed(a, bp, c, lo, hi, accumulate, bias):
    """c[lo:hi] = a[lo:hi] @ b + (c[lo:hi] if accumulate else bias), for the packed b (``bp``,
    K = a.shape[1] rows per panel).  bias: (1, N) row added to every row, or None.  The time
    loops call this with weights packed once.
    """
    kc, N = a.shape[1], c.shape[1]
    for i0 in range(lo, hi, MC):
        i1 = min(i0 + MC, hi)
        for p in range(bp.shape[0]):
            panel, j = bp[p], p * NR
            n = min(NR, N - j)
            i = i0
            while i + 4 <= i1:
                tile4(a, i, panel, kc, c, j, n, accumulate, bias)
                i += 4
            while i < i1:
                tile1(a, i, panel, kc, c, j, n, accumulate, bias)
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
