"""Every gradient of the engine against central finite differences (float64, tiny shapes)."""
import numpy as np
import pytest

import engine
from tests.helpers import FD_TOL, numeric_grad


@pytest.mark.parametrize("act,lengths", [("tanh", None), ("relu", None), ("tanh", [3, 1])])
def test_all_gradients_match_finite_differences(rng, act, lengths):
    T, B, I, H, L = 3, 2, 2, 2, 2
    m = engine.LSTM(I, H, num_layers=L, bidirectional=True, cell_activation=act,
                    dtype="float64", seed=7)
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((2 * L, B, H)), rng.standard_normal((2 * L, B, H))
    gout = rng.standard_normal((T, B, 2 * H))
    ghn, gcn = rng.standard_normal((2 * L, B, H)), rng.standard_normal((2 * L, B, H))

    def loss():
        out, (hn, cn) = m(x, (h0, c0), lengths=lengths)
        return (out * gout).sum() + (hn * ghn).sum() + (cn * gcn).sum()

    loss()
    dx, (dh0, dc0) = m.backward(gout, (ghn, gcn))
    analytic = dict(m.grads, input=dx, h0=dh0, c0=dc0)
    arrays = dict(m.params, input=x, h0=h0, c0=c0)
    assert len(analytic) == len(arrays) == 4 * 4 + 3
    for name, a in arrays.items():
        np.testing.assert_allclose(analytic[name], numeric_grad(loss, a), err_msg=name, **FD_TOL)
