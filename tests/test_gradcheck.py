"""Every gradient of the engine against central finite differences (float64, tiny shapes)."""
import numpy as np
import pytest

import engine

EPS = 1e-6
FD_TOL = dict(rtol=1e-6, atol=1e-8)


def numeric_grad(f, a):
    """Central differences of scalar f() with respect to every entry of ``a`` (in place)."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + EPS
        up = f()
        a[idx] = old - EPS
        down = f()
        a[idx] = old
        g[idx] = (up - down) / (2 * EPS)
    return g


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
