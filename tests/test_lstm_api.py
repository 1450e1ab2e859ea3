"""engine.LSTM's interface: parameters, state dicts, initialisation and clear errors."""
import numpy as np
import pytest
import torch

import engine


def make(**kw):
    args = dict(input_size=4, hidden_size=3, num_layers=2, bidirectional=True, seed=0)
    args.update(kw)
    return engine.LSTM(**args)


def test_state_dict_keys_shapes_and_order_match_torch():
    tm = torch.nn.LSTM(4, 3, num_layers=2, bidirectional=True)
    sd = make().state_dict()
    assert list(sd) == list(tm.state_dict())
    for k, v in tm.state_dict().items():
        assert sd[k].shape == tuple(v.shape), k
        assert sd[k].dtype == np.float32


def test_initialisation_is_uniform_in_pytorch_range_and_seeded():
    H = 50
    sd = engine.LSTM(10, H, seed=1).state_dict()
    k = 1 / np.sqrt(H)
    for v in sd.values():
        assert np.abs(v).max() <= k
        assert v.std() > 0.8 * k / np.sqrt(3)  # U(-k, k) has std k/sqrt(3)
    again = engine.LSTM(10, H, seed=1).state_dict()
    other = engine.LSTM(10, H, seed=2).state_dict()
    assert all(np.array_equal(sd[n], again[n]) for n in sd)
    assert not np.array_equal(sd["weight_ih_l0"], other["weight_ih_l0"])


def test_torch_state_dict_loads_as_is(rng):
    tm = torch.nn.LSTM(4, 3, num_layers=2, bidirectional=True)
    m = make()
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    out, _ = m(x)
    np.testing.assert_allclose(out, tm(torch.from_numpy(x))[0].detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_load_state_dict_reports_every_problem_and_changes_nothing():
    m = make()
    before = m.state_dict()
    sd = dict(before)
    del sd["weight_hh_l1"]
    sd["bogus"] = np.zeros(3)
    sd["bias_ih_l0"] = np.zeros(5)
    with pytest.raises(ValueError) as e:
        m.load_state_dict(sd)
    msg = str(e.value)
    assert "missing key 'weight_hh_l1'" in msg
    assert "unexpected key 'bogus'" in msg
    assert "'bias_ih_l0' has shape (5,), expected (12,)" in msg
    assert all(np.array_equal(before[k], v) for k, v in m.state_dict().items())


def test_state_dict_is_a_copy():
    m = make()
    sd = m.state_dict()
    sd["weight_ih_l0"][:] = 5
    assert not np.array_equal(m.state_dict()["weight_ih_l0"], sd["weight_ih_l0"])


def test_float64_module_and_grads_keys(rng):
    m = make(dtype="float64")
    x = rng.standard_normal((3, 2, 4))
    out, (h, c) = m(x)
    assert out.dtype == h.dtype == c.dtype == np.float64
    assert out.shape == (3, 2, 6) and h.shape == c.shape == (4, 2, 3)
    dx, (dh0, dc0) = m.backward(rng.standard_normal(out.shape))
    assert dx.shape == x.shape and dh0.shape == (4, 2, 3)
    assert set(m.grads) == set(m.state_dict())


def test_backward_overwrites_grads(rng):
    m = make(dtype="float64")
    x = rng.standard_normal((3, 2, 4))
    g = rng.standard_normal((3, 2, 6))
    m(x)
    m.backward(g)
    first = {k: v.copy() for k, v in m.grads.items()}
    m(x)
    m.backward(g)
    for k in first:
        np.testing.assert_array_equal(m.grads[k], first[k])


def test_returned_output_is_not_overwritten_by_next_forward(rng):
    m = make(num_layers=1, bidirectional=False)
    x1, x2 = (rng.standard_normal((3, 2, 4)).astype(np.float32) for _ in range(2))
    out1, (h1, _) = m(x1)
    keep = out1.copy(), h1.copy()
    m(x2)
    np.testing.assert_array_equal(out1, keep[0])
    np.testing.assert_array_equal(h1, keep[1])


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kw,exc,text", [
    (dict(input_size=0), ValueError, "input_size must be >= 1"),
    (dict(hidden_size=2.5), TypeError, "hidden_size must be an int"),
    (dict(num_layers=0), ValueError, "num_layers"),
    (dict(cell_activation="sigmoid"), ValueError, "cell_activation must be one of"),
    (dict(dtype="float16"), ValueError, "dtype must be 'float32' or 'float64'"),
    (dict(backend="tpu"), ValueError, "backend must be one of"),
])
def test_constructor_rejects_bad_arguments(kw, exc, text):
    with pytest.raises(exc, match=text):
        make(**kw)


@pytest.mark.parametrize("x,exc,text", [
    (np.zeros((2, 3, 4, 1), np.float32), ValueError, r"input must be 3-D \(T, B, input_size\)"),
    (np.zeros((5,), np.float32), ValueError, "input must be 3-D"),
    (np.ones((3, 2, 5), np.float32), ValueError, r"input must have shape \(T, B, input_size=4\)"),
    (np.ones((3, 2, 4), np.float64), TypeError, "input must have dtype float32"),
    (np.ones((3, 2, 4), np.int64), TypeError, "input must have dtype float32"),
    (np.ones((0, 2, 4), np.float32), ValueError, "must not be empty"),
    ("abc", TypeError, "input must be an array, got str"),
])
def test_forward_rejects_bad_input(x, exc, text):
    with pytest.raises(exc, match=text):
        make()(x)


def test_forward_converts_array_likes(rng):
    """Lists take the module's dtype; a CPU torch tensor is read through np.asarray and must
    have that dtype itself, as an array must."""
    m = make()
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    want = m(x)[0]
    np.testing.assert_array_equal(m(x.tolist())[0], want)
    np.testing.assert_array_equal(m(torch.from_numpy(x))[0], want)
    with pytest.raises(TypeError, match="input must have dtype float32.*got float64"):
        m(torch.from_numpy(x.astype(np.float64)))
    with pytest.raises(TypeError, match="input must be a NumPy array or convertible.*detach"):
        m(torch.from_numpy(x).requires_grad_())
    with pytest.raises(TypeError, match="input must be a NumPy array or convertible"):
        m([[[0.0] * 4] * 2, [[0.0] * 4]])  # ragged
    with pytest.raises(TypeError, match=r"state\[h\] must be an array, got set"):
        m(x, ({1}, x[:1]))


@pytest.mark.parametrize("T", [3, 9000])  # NumPy's check, and the kernel's (FINITE_KERNEL_MIN)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_forward_rejects_non_finite_input(rng, bad, T):
    x = rng.standard_normal((T, 2, 4)).astype(np.float32)
    x[T - 2, 1, 2] = bad
    with pytest.raises(ValueError, match="input contains NaN or Inf"):
        make()(x)


def test_forward_rejects_bad_state(rng):
    m = make()
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    good = rng.standard_normal((4, 2, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"state\[h\] must have shape \(num_layers\*num_direct"
                                         r"ions=4, batch=2, hidden_size=3\), got \(2, 2, 3\)"):
        m(x, (good[:2], good))
    with pytest.raises(TypeError, match=r"state must be a tuple \(h, c\)"):
        m(x, good)
    with pytest.raises(TypeError, match=r"state\[c\] must have dtype float32"):
        m(x, (good, good.astype(np.float64)))


@pytest.mark.parametrize("lengths,exc,text", [
    ([3, 4], ValueError, "lengths must lie in 1..T=3"),
    ([0, 2], ValueError, "lengths must lie in 1..T=3"),
    ([3], ValueError, r"lengths must have shape \(batch=2,\)"),
    ([1.5, 2.0], TypeError, "lengths must hold integers"),
])
def test_forward_rejects_bad_lengths(rng, lengths, exc, text):
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    with pytest.raises(exc, match=text):
        make()(x, lengths=lengths)


def test_backward_before_forward_is_a_clear_error():
    with pytest.raises(ValueError, match="backward\\(\\) needs a forward\\(\\) run with"):
        make().backward(np.ones((3, 2, 6), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True),
                                dict(proj_size=2), dict(batch_first=True)])
@pytest.mark.parametrize("B", [4, 40])  # the unit-split and the row-split CPU time loops
def test_no_grad_forward_equals_forward_and_keeps_nothing(rng, dtype, kw, B):
    m = engine.LSTM(3, 5, dtype=dtype, seed=1, **kw)
    T = 6
    x = rng.standard_normal((B, T, 3) if kw.get("batch_first") else (T, B, 3)).astype(dtype)
    lengths = rng.integers(1, T + 1, B)
    with_grad = m(x, lengths=lengths)
    assert engine.is_grad_enabled()
    with engine.no_grad():
        assert not engine.is_grad_enabled()
        without = m(x, lengths=lengths)
    assert engine.is_grad_enabled()
    for a, b in zip(np.asarray(with_grad[0]), np.asarray(without[0])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(with_grad[1][0], without[1][0])
    np.testing.assert_array_equal(with_grad[1][1], without[1][1])
    with pytest.raises(ValueError, match="engine.no_grad"):
        m.backward(np.ones_like(without[0]))


def test_no_grad_is_restored_after_an_exception():
    with pytest.raises(RuntimeError):
        with engine.no_grad():
            raise RuntimeError("boom")
    assert engine.is_grad_enabled()


def test_backward_rejects_mismatched_gradients_and_keeps_the_forward(rng):
    m = make(dtype="float64")
    x = rng.standard_normal((3, 2, 4))
    out, _ = m(x)
    with pytest.raises(ValueError, match=r"grad_output must have shape \(3, 2, 6\)"):
        m.backward(np.ones((3, 2, 3)))
    with pytest.raises(TypeError, match="grad_output must have dtype float64"):
        m.backward(np.ones((3, 2, 6), np.float32))
    with pytest.raises(ValueError, match=r"grad_state\[h\] must have shape"):
        m.backward(np.ones((3, 2, 6)), (np.ones((4, 3, 3)), np.ones((4, 3, 3))))
    # A rejected call, including a rejected forward, leaves the saved forward intact.
    with pytest.raises(ValueError):
        m(x[:, :, :2])
    g = rng.standard_normal(out.shape)
    dx, _ = m.backward(g)
    m(x)
    dx_again, _ = m.backward(g)
    np.testing.assert_array_equal(dx, dx_again)


def test_unbatched_rejects_lengths(rng):
    with pytest.raises(ValueError, match="lengths is only accepted with batched input"):
        make()(rng.standard_normal((3, 4)).astype(np.float32), lengths=[3])


def test_backend_selection_by_environment(monkeypatch):
    monkeypatch.setenv("ENGINE_BACKEND", "cpu")
    assert make().backend.name == "cpu"
    monkeypatch.setenv("ENGINE_BACKEND", "quantum")
    with pytest.raises(ValueError, match="backend must be one of"):
        make()
