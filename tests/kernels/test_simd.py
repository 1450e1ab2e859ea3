"""kernels.simd: the LANES-lane vector type (kernels.isa) runs kernels.gates unchanged, lane by
lane, and its whole-or-part moves touch exactly the lanes they are given."""
from fractions import Fraction

import numpy as np
import pytest
from numba import njit

from engine.kernels import ACT_FAST, isa
from engine.kernels.gates import lstm_cell_fwd_fast
from engine.kernels.simd import LANES, load, load_upto, muladd, store, store_upto
from tests.helpers import FAST_CELL_TOL

F32 = np.float32


def test_vector_cell_math_equals_the_scalar_cell_lane_by_lane(rng):
    """kernels.gates runs unchanged on vectors (kernels.simd operators)."""
    @njit
    def vector_cells(pre, act, out):
        res = lstm_cell_fwd_fast(load(pre, 0, 0), load(pre, 1, 0), load(pre, 2, 0),
                                 load(pre, 3, 0), load(pre, 4, 0), act)
        for q in range(6):
            store(out, q, 0, res[q])
        store(out, 6, 0, -load(pre, 0, 0) / 2 - 1 + min(load(pre, 1, 0), 0.5) * 3)
        store(out, 7, 0, max(load(pre, 2, 0), load(pre, 3, 0)) - (1 - load(pre, 4, 0)))

    pre = (4 * rng.standard_normal((5, LANES))).astype(F32)
    pre[:, 0] = [20, -20, 9, -9, 0]  # past the fast tanh's clamp
    for act in (ACT_FAST, ACT_FAST | 1):  # tanh and relu cells
        out = np.empty((8, LANES), F32)
        vector_cells(pre, act, out)
        for v in range(LANES):
            want = lstm_cell_fwd_fast(*(F32(x) for x in pre[:, v]), act)
            np.testing.assert_array_equal(out[:6, v], np.array(want, F32))
        x0, x1, x2, x3, x4 = pre
        np.testing.assert_allclose(out[6], -x0 / 2 - 1 + np.minimum(x1, 0.5) * 3, **FAST_CELL_TOL)
        np.testing.assert_array_equal(out[7], np.maximum(x2, x3) - (1 - x4))


@njit
def _copy_upto(src, dst, j, n):
    store_upto(dst, 0, j, load_upto(src, 0, j, n), n)


@pytest.mark.parametrize("n", [1, LANES - 1, LANES])
def test_whole_or_part_moves_touch_only_their_lanes(rng, n):
    src = rng.standard_normal((1, 3 * LANES)).astype(F32)
    dst = np.full((1, 3 * LANES), 7.0, F32)
    _copy_upto(src, dst, 3, n)
    want = np.full((1, 3 * LANES), 7.0, F32)
    want[0, 3:3 + n] = src[0, 3:3 + n]
    np.testing.assert_array_equal(dst, want)


@njit
def _muladd_scalars(x, y, z, out):
    for k in range(x.size):
        out[k] = muladd(x[k], y[k], z[k])


@njit
def _muladd_vectors(x, y, z, s, z_s, out, out_s):
    """Row r: muladd of the rows as vectors (out), and of x's row with the scalar s[r] splat
    (out_s)."""
    for r in range(x.shape[0]):
        store(out, r, 0, muladd(load(x, r, 0), load(y, r, 0), load(z, r, 0)))
        store(out_s, r, 0, muladd(load(x, r, 0), s[r], load(z_s, r, 0)))


def _product_errors(x, y):
    """(z, e): z = -round(x * y) and e = x * y + z exactly (the product's rounding error),
    rounded once to x's dtype.  A fused multiply-add of (x, y, z) gives e; a multiply and an
    add give 0."""
    z = -(x * y)
    e = [float(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c)))
         for a, b, c in zip(x.ravel(), y.ravel(), z.ravel())]
    return z, np.array(e).astype(x.dtype).reshape(x.shape)


def _check_rounding(out, e, fused):
    """One rounding (e) where the target has FMA, else e or the two roundings' 0."""
    if fused:
        np.testing.assert_array_equal(out, e)
    else:
        assert np.all((out == e) | (out == 0))


def test_muladd_rounds_once_where_the_target_has_fma(rng):
    """muladd (the cell math's x * y + z, kernels.gates) is one fused multiply-add on scalars
    of both float dtypes and on vectors, a scalar splat beside them, so every compiled copy
    of the cell rounds alike (kernels.KERNEL).  The AVX2 and AVX-512 paths have FMA; on
    another target it may be a multiply and an add."""
    fused = isa.ISA in ("avx512", "avx2")
    for dtype in (np.float32, np.float64):
        x, y = (rng.uniform(0.5, 2.0, 64).astype(dtype) for _ in range(2))
        z, e = _product_errors(x, y)
        assert np.count_nonzero(e) > 48  # the test can tell one rounding from two
        out = np.empty_like(x)
        _muladd_scalars(x, y, z, out)
        _check_rounding(out, e, fused)
    x, y = (rng.uniform(0.5, 2.0, (4, LANES)).astype(F32) for _ in range(2))
    s = y[:, 0].copy()
    z, e = _product_errors(x, y)
    z_s, e_s = _product_errors(x, np.repeat(s[:, None], LANES, axis=1))
    out, out_s = np.empty_like(x), np.empty_like(x)
    _muladd_vectors(x, y, z, s, z_s, out, out_s)
    _check_rounding(out, e, fused)
    _check_rounding(out_s, e_s, fused)
