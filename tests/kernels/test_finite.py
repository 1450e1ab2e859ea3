"""kernels.finite: the parallel all-finite check of float32 inputs against NumPy."""
import numpy as np
import pytest

from engine.kernels.finite import all_finite_f32


@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 15, 64, 1000, 70_001])  # tails of a vector and of 4 vectors
def test_all_finite_kernel_matches_numpy(rng, n, parts):
    a = rng.uniform(-3e38, 3e38, n).astype(np.float32)  # large but finite: x - x is 0
    assert np.isfinite(a).all()
    assert all_finite_f32(a.reshape(1, -1), parts)
    for where in {0, n // 2, n - 1}:
        for bad in (np.nan, np.inf, -np.inf):
            b = a.copy()
            b[where] = bad
            assert not all_finite_f32(b.reshape(1, -1), parts), (where, bad)
