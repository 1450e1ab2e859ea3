"""kernels.simd: the LANES-lane vector type (kernels.isa) runs kernels.gates unchanged, lane by
lane, and its whole-or-part moves touch exactly the lanes they are given."""
import numpy as np
import pytest
from numba import njit

from engine.kernels import ACT_FAST
from engine.kernels.gates import lstm_cell_fwd_fast
from engine.kernels.simd import LANES, load, load_upto, store, store_upto
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
