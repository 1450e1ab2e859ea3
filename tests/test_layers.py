"""Dense and Embedding against torch.nn.Linear / torch.nn.Embedding, finite differences, errors."""
import numpy as np
import pytest
import torch

from engine.layers import Dense, Embedding
from tests.helpers import FD_TOL, numeric_grad, tol

TORCH_ACT = {None: lambda z: z, "tanh": torch.tanh, "relu": torch.relu,
             "sigmoid": torch.sigmoid}
DTYPES = ["float32", "float64"]


def _torch_linear(dense):
    lin = torch.nn.Linear(dense.in_features, dense.out_features, bias=dense.bias,
                          dtype=getattr(torch, dense.dtype.name))
    lin.load_state_dict({k: torch.from_numpy(v) for k, v in dense.state_dict().items()})
    return lin


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [None, "tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("shape", [(7,), (3, 7), (2, 4, 7)])
def test_dense_matches_torch(rng, dtype, activation, shape):
    dense = Dense(7, 5, activation=activation, dtype=dtype, seed=1)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape[:-1] + (5,)).astype(dtype)
    y = dense.forward(x)
    dx = dense.backward(g)
    lin = _torch_linear(dense)
    xt = torch.from_numpy(x).requires_grad_()
    yt = TORCH_ACT[activation](lin(xt))
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol(dtype))
    np.testing.assert_allclose(dense.grads["weight"], lin.weight.grad.numpy(), **tol(dtype))
    np.testing.assert_allclose(dense.grads["bias"], lin.bias.grad.numpy(), **tol(dtype))
    assert y.dtype == dx.dtype == np.dtype(dtype)


def test_dense_without_bias(rng):
    dense = Dense(4, 3, bias=False, seed=0)
    assert set(dense.params) == {"weight"}
    x = rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(dense.forward(x), x @ dense.params["weight"].T,
                               **tol(np.float32))
    dense.backward(rng.standard_normal((5, 3)).astype(np.float32))
    assert set(dense.grads) == {"weight"}


@pytest.mark.parametrize("activation", [None, "tanh", "sigmoid"])
def test_dense_gradients_finite_differences(rng, activation):
    """Central differences of L = sum(w * y) in float64."""
    dense = Dense(4, 3, activation=activation, dtype="float64", seed=2)
    x = rng.standard_normal((2, 3, 4))
    w = rng.standard_normal((2, 3, 3))
    dense.forward(x)
    dx = dense.backward(w)
    eps = 1e-6

    def loss():
        return float((dense.forward(x) * w).sum())

    for name in ("weight", "bias"):
        np.testing.assert_allclose(dense.grads[name], numeric_grad(loss, dense.params[name], eps),
                                   **FD_TOL)
    np.testing.assert_allclose(dx, numeric_grad(loss, x, eps), **FD_TOL)


def test_dense_rejects_bad_arguments(rng):
    with pytest.raises(ValueError, match="activation"):
        Dense(3, 2, activation="gelu")
    with pytest.raises(TypeError, match="in_features"):
        Dense(3.0, 2)
    dense = Dense(3, 2)
    with pytest.raises(ValueError, match=r"in_features=3"):
        dense.forward(rng.standard_normal((4, 5)).astype(np.float32))
    with pytest.raises(TypeError, match="float32"):
        dense.forward(rng.standard_normal((4, 3)))
    with pytest.raises(ValueError, match="forward"):
        Dense(3, 2).backward(np.ones((4, 2), np.float32))
    dense.forward(rng.standard_normal((4, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="grad"):
        dense.backward(rng.standard_normal((4, 3)).astype(np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_matches_torch(rng, dtype):
    emb = Embedding(11, 6, dtype=dtype, seed=3)
    idx = rng.integers(0, 11, (4, 9))  # 36 draws from 11 ids: repeats are certain
    g = rng.standard_normal((4, 9, 6)).astype(dtype)
    out = emb.forward(idx)
    assert emb.backward(g) is None
    ref = torch.nn.Embedding(11, 6, dtype=getattr(torch, dtype))
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in emb.state_dict().items()})
    out_t = ref(torch.from_numpy(idx))
    out_t.backward(torch.from_numpy(g))
    np.testing.assert_allclose(out, out_t.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(emb.grads["weight"], ref.weight.grad.numpy(), **tol(dtype))


def test_embedding_rejects_bad_indices(rng):
    emb = Embedding(5, 3)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        emb.forward(np.array([[0, 5]]))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        emb.forward(np.array([-1, 2]))
    with pytest.raises(TypeError, match="integer"):
        emb.forward(rng.standard_normal((2, 3)))
    with pytest.raises(TypeError, match="num_embeddings"):
        Embedding("5", 3)


def test_state_dict_round_trip_and_errors(rng):
    a, b = Dense(4, 3, seed=0), Dense(4, 3, seed=1)
    live = b.params["weight"]
    b.load_state_dict(a.state_dict())
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    assert b.params["weight"] is live  # loaded in place: optimizers keep their references
    with pytest.raises(ValueError, match="missing key 'bias'.*unexpected key 'w'"):
        b.load_state_dict({"weight": np.zeros((3, 4)), "w": 1})
    with pytest.raises(ValueError, match=r"expected \(3, 4\)"):
        b.load_state_dict({"weight": np.zeros((4, 3)), "bias": np.zeros(3)})
