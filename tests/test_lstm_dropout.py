"""Inter-layer dropout: PyTorch's semantics (inverted, between layers, training mode only)."""
import numpy as np
import pytest
import torch

import engine
from tests.helpers import FD_TOL, numeric_grad, tol


def test_eval_mode_and_zero_rate_match_torch(rng):
    m = engine.LSTM(4, 5, num_layers=3, dropout=0.5, dtype="float64", seed=1).eval()
    tm = torch.nn.LSTM(4, 5, num_layers=3, dropout=0.5).double().eval()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    x = rng.standard_normal((6, 2, 4))
    np.testing.assert_allclose(m(x)[0], tm(torch.from_numpy(x))[0].detach().numpy(),
                               **tol("float64"))


def test_training_mode_drops_between_layers_only(rng):
    x = rng.standard_normal((50, 8, 4))
    single = engine.LSTM(4, 5, num_layers=1, dropout=0.5, dtype="float64", seed=1)
    ref = engine.LSTM(4, 5, num_layers=1, dtype="float64", seed=1)
    np.testing.assert_array_equal(single(x)[0], ref(x)[0])  # one layer: nothing to drop
    m = engine.LSTM(4, 5, num_layers=2, dropout=0.5, dtype="float64", seed=1)
    out_train = m(x)[0]
    mask = m._saved["layers"][1]["mask"]
    assert set(np.unique(mask)) == {0.0, 2.0}  # inverted dropout: kept units scaled by 1/(1-p)
    assert 0.4 < (mask == 0).mean() < 0.6
    assert not np.allclose(out_train, m.eval()(x)[0])


def test_dropout_is_seeded():
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    a = engine.LSTM(4, 5, num_layers=2, dropout=0.3, dtype="float64", seed=9)
    b = engine.LSTM(4, 5, num_layers=2, dropout=0.3, dtype="float64", seed=9)
    np.testing.assert_array_equal(a(x)[0], b(x)[0])
    assert not np.array_equal(a(x)[0], b.eval()(x)[0])


def test_gradients_with_dropout_match_finite_differences(rng):
    m = engine.LSTM(2, 3, num_layers=2, dropout=0.4, bidirectional=True, dtype="float64", seed=2)
    x = rng.standard_normal((3, 2, 2))
    gout = rng.standard_normal((3, 2, 6))

    def loss():
        m._dropout_rng = np.random.default_rng(123)  # the same mask in every evaluation
        return (m(x)[0] * gout).sum()

    loss()
    dx, _ = m.backward(gout)
    assert (m._saved["layers"][1]["mask"] == 0).any()
    np.testing.assert_allclose(dx, numeric_grad(loss, x), **FD_TOL)
    w = m.params["weight_ih_l1"]
    np.testing.assert_allclose(m.grads["weight_ih_l1"], numeric_grad(loss, w), **FD_TOL)


@pytest.mark.parametrize("rate", [-0.1, 1.0, "0.5"])
def test_bad_dropout_rate(rate):
    with pytest.raises((ValueError, TypeError), match="dropout must be"):
        engine.LSTM(4, 5, dropout=rate)


def test_proj_size_must_be_smaller_than_hidden():
    with pytest.raises(ValueError, match="proj_size must be smaller than hidden_size=5"):
        engine.LSTM(4, 5, proj_size=5)
