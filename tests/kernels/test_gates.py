"""kernels.gates: the scalar cell math, its stable sigmoid and the fast float32 activations."""
import numpy as np

from engine.kernels import ACT_FAST, ACT_TANH
from engine.kernels.gates import lstm_cell_fwd, sigmoid, tanh_fast
from tests.helpers import FAST_ACT_TOL, FAST_CELL_TOL


def test_sigmoid_is_stable_at_extremes():
    xs = np.array([-800.0, -40.0, -1.0, 0.0, 1.0, 40.0, 800.0])
    got = np.array([sigmoid(v, ACT_TANH) for v in xs])
    with np.errstate(over="ignore"):
        want = 1.0 / (1.0 + np.exp(-xs))
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-300)
    assert np.isfinite(got).all()


def test_fast_float32_activations_are_within_a_few_ulps():
    x = np.linspace(-12, 12, 200_001, dtype=np.float32)
    exact = np.tanh(x.astype(np.float64))
    fast = np.array([tanh_fast(v) for v in x[::97]], dtype=np.float32)
    assert fast.dtype == np.float32
    err = np.abs(fast - exact[::97])
    assert err.max() <= FAST_ACT_TOL["tanh"], err.max()
    sig = np.array([sigmoid(v, ACT_FAST) for v in x[::97]], dtype=np.float32)
    assert np.abs(sig - 1 / (1 + np.exp(-x[::97].astype(np.float64)))).max() <= \
        FAST_ACT_TOL["sigmoid"]


def test_fast_cell_matches_exact_cell():
    args = [np.float32(v) for v in (0.3, -1.2, 0.7, 2.0, -0.4)]
    out = lstm_cell_fwd(*args, ACT_FAST)
    exact = lstm_cell_fwd(*[np.float64(a) for a in args], ACT_TANH)
    np.testing.assert_allclose(out, exact, **FAST_CELL_TOL)
