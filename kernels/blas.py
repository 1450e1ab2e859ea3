"""GEMMs on BLAS (float64, and float32 products of one row), split over Numba's threads.

The BLAS is the single-threaded one that Numba's ``np.dot`` links (SciPy's OpenBLAS, pinned
to one thread by ``engine.backends.threads``); large products are split into row blocks over
Numba's threads instead, so that one pool owns the cores.  float32 products of two rows or more
run on the engine's own GEMM (``kernels.gemm``).
"""
import numpy as np
from numba import njit, prange

from . import KERNEL
from .common import part_rows


@njit(parallel=True, **KERNEL)
def blas_gemm(a, b, out, parts):
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
def blas_gemm_tn(a, b, out, parts):
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
