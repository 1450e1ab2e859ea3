"""PyTorch and Keras weight exchange."""
import numpy as np
import pytest
import torch

from engine import LSTM
from engine.interop import lstm_from_keras, to_keras_weights
from tests.helpers import tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True),
                                dict(batch_first=True, bias=False)])
def test_from_torch_matches_forward(rng, dtype, kw):
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 5, dtype=dtype, **kw)
    lstm = LSTM.from_torch(module)
    assert lstm.dtype == np.dtype(str(dtype).replace("torch.", ""))
    assert (lstm.num_layers, lstm.bidirectional, lstm.batch_first, lstm.bias) == \
        (module.num_layers, module.bidirectional, module.batch_first, module.bias)
    x = rng.standard_normal((4, 6, 3)).astype(lstm.dtype)
    out, (h, c) = lstm.forward(x)
    with torch.no_grad():
        ref, (ref_h, ref_c) = module(torch.from_numpy(x))
    np.testing.assert_allclose(out, ref.numpy(), **tol(lstm.dtype))
    np.testing.assert_allclose(h, ref_h.numpy(), **tol(lstm.dtype))
    np.testing.assert_allclose(c, ref_c.numpy(), **tol(lstm.dtype))


def test_to_torch_state_dict_loads_into_torch(rng):
    lstm = LSTM(3, 4, num_layers=2, seed=1)
    module = torch.nn.LSTM(3, 4, num_layers=2)
    sd = lstm.to_torch_state_dict()
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    module.load_state_dict(sd)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(lstm.forward(x)[0], ref, **tol(np.float32))


def test_from_torch_rejects_other_modules():
    with pytest.raises(TypeError, match="torch.nn.LSTM"):
        LSTM.from_torch(torch.nn.GRU(3, 4))


def _keras_lstm_reference(x, kernel, rec, bias):
    """Keras's LSTM cell (gate order i, f, c, o; sigmoid recurrent activation), batch-first,
    written from Keras's equations: z = x k + h r + b."""
    B, T, _ = x.shape
    H = rec.shape[0]
    h, c = np.zeros((B, H)), np.zeros((B, H))
    out = []
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    for t in range(T):
        z = x[:, t] @ kernel + h @ rec + bias
        i, f, g, o = sig(z[:, :H]), sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), \
            sig(z[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1)


def test_from_keras_matches_keras_equations(rng):
    I, H = 3, 4
    kernel = rng.standard_normal((I, 4 * H)) * 0.5
    rec = rng.standard_normal((H, 4 * H)) * 0.5
    bias = rng.standard_normal(4 * H) * 0.5
    lstm = LSTM.from_keras([kernel, rec, bias], dtype="float64")
    x = rng.standard_normal((2, 6, I))
    np.testing.assert_allclose(lstm.forward(x)[0], _keras_lstm_reference(x, kernel, rec, bias),
                               **tol(np.float64))
    np.testing.assert_array_equal(lstm.params["bias_hh_l0"], 0)
    back = to_keras_weights(lstm)
    for a, b in zip(back, (kernel, rec, bias)):
        np.testing.assert_array_equal(a, b)
    assert not lstm_from_keras([kernel, rec]).bias


def test_from_keras_rejects_bad_shapes(rng):
    with pytest.raises(ValueError, match=r"kernel must have shape \(I, 4H\)"):
        lstm_from_keras([np.ones((3, 6)), np.ones((1, 4))])
    with pytest.raises(ValueError, match="recurrent_kernel"):
        lstm_from_keras([np.ones((3, 8)), np.ones((3, 8))])
    with pytest.raises(ValueError, match="bias"):
        lstm_from_keras([np.ones((3, 8)), np.ones((2, 8)), np.ones(4)])
    with pytest.raises(TypeError, match="get_weights"):
        lstm_from_keras(np.ones((3, 8)))


def test_from_torch_keeps_projection_dropout_and_mode(rng):
    tm = torch.nn.LSTM(4, 6, num_layers=2, proj_size=3, dropout=0.25, bidirectional=True).eval()
    m = LSTM.from_torch(tm)
    assert (m.proj_size, m.dropout, m.training) == (3, 0.25, False)
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    np.testing.assert_allclose(m(x)[0], tm(torch.from_numpy(x))[0].detach().numpy(),
                               rtol=1e-5, atol=1e-6)
