"""engine.LSTM against torch.nn.LSTM: outputs, final states and every gradient.

``cell_activation="relu"`` has no PyTorch counterpart; it is checked against the stacked
NumPy reference instead (as is tanh, so both oracles agree).
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import engine
from tests.helpers import (assert_pairs_close, run_both, stack_reference, stack_reference_backward,
                           tol)

torch.set_num_threads(1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("L,bi,batch_first,unbatched,T,B,with_state", [
    (1, False, False, False, 7, 4, True),
    (1, False, True, False, 5, 3, False),
    (2, True, False, False, 6, 2, True),
    (3, True, True, False, 4, 3, True),
    (3, False, False, False, 5, 2, False),
    (2, True, False, True, 5, 1, True),    # unbatched
    (1, True, False, False, 1, 3, True),   # T = 1
    (2, False, True, False, 8, 1, True),   # B = 1
])
def test_matches_torch(rng, dtype, L, bi, batch_first, unbatched, T, B, with_state):
    pairs = run_both(rng, T, B, 5, 6, L, bi, batch_first, unbatched, with_state, dtype)
    assert_pairs_close(pairs, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("L,bi,batch_first", [(1, False, False), (2, True, True), (3, True, False)])
def test_variable_lengths_match_packed_torch(rng, dtype, L, bi, batch_first):
    lengths = np.array([5, 1, 3, 5, 2])
    pairs = run_both(rng, 5, 5, 4, 3, L, bi, batch_first, False, True, dtype, lengths=lengths)
    assert_pairs_close(pairs, dtype)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(T=st.integers(1, 6), B=st.integers(1, 4), I=st.integers(1, 6), H=st.integers(1, 6),
       L=st.integers(1, 3), bi=st.booleans(), batch_first=st.booleans(), with_state=st.booleans(),
       seed=st.integers(0, 2 ** 31))
def test_random_configurations_match_torch(T, B, I, H, L, bi, batch_first, with_state, seed):
    pairs = run_both(np.random.default_rng(seed), T, B, I, H, L, bi, batch_first, False,
                     with_state, "float64")
    assert_pairs_close(pairs, "float64")


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("lengths", [None, [4, 2, 1]])
def test_matches_stacked_reference(rng, act, lengths):
    T, B, I, H, L = 4, 3, 3, 5, 2
    m = engine.LSTM(I, H, num_layers=L, bidirectional=True, cell_activation=act,
                    dtype="float64", seed=3)
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((2 * L, B, H)), rng.standard_normal((2 * L, B, H))
    out, (hn, cn) = m(x, (h0, c0), lengths=lengths)
    r_out, r_hn, r_cn, caches = stack_reference(m.state_dict(), x, h0, c0, L, True, act, lengths)
    gout, ghn, gcn = rng.standard_normal(out.shape), rng.standard_normal(hn.shape), \
        rng.standard_normal(cn.shape)
    dx, (dh0, dc0) = m.backward(gout, (ghn, gcn))
    r_dx, r_dh0, r_dc0, r_grads = stack_reference_backward(caches, gout, ghn, gcn,
                                                           packed=lengths is not None)
    t = tol("float64")
    for ours, ref in [(out, r_out), (hn, r_hn), (cn, r_cn), (dx, r_dx), (dh0, r_dh0),
                      (dc0, r_dc0)]:
        np.testing.assert_allclose(ours, ref, **t)
    for k, g in r_grads.items():
        np.testing.assert_allclose(m.grads[k], g, err_msg=k, **t)
    if act == "relu":
        assert (out >= 0).all() and (out > 0).any()


def test_no_bias_matches_torch(rng):
    m = engine.LSTM(4, 3, num_layers=2, bias=False, dtype="float64", seed=0)
    tm = torch.nn.LSTM(4, 3, num_layers=2, bias=False).double()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    x = rng.standard_normal((5, 2, 4))
    out, _ = m(x)
    xt = torch.tensor(x, requires_grad=True)
    ot, _ = tm(xt)
    g = rng.standard_normal(out.shape)
    ot.backward(torch.from_numpy(g))
    dx, _ = m.backward(g)
    np.testing.assert_allclose(out, ot.detach().numpy(), **tol("float64"))
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol("float64"))
    assert set(m.grads) == {k for k, _ in tm.named_parameters()}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("L,bi,batch_first,lengths,T,B", [
    (1, False, False, None, 4, 3), (2, True, True, [4, 1, 3], 4, 3), (3, True, False, None, 4, 3),
    (2, True, False, None, 2, 1)])  # one short sequence: unpacked weights (GEMV_MAX_STEPS)
def test_proj_size_matches_torch(rng, dtype, L, bi, batch_first, lengths, T, B):
    I, H, P = 5, 7, 3
    D = 2 if bi else 1
    m = engine.LSTM(I, H, num_layers=L, bidirectional=bi, batch_first=batch_first, proj_size=P,
                    dtype=dtype, seed=4)
    tm = torch.nn.LSTM(I, H, num_layers=L, bidirectional=bi, batch_first=batch_first,
                       proj_size=P).to(getattr(torch, dtype))
    assert list(m.state_dict()) == list(tm.state_dict())
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    h0 = rng.standard_normal((L * D, B, P)).astype(dtype)
    c0 = rng.standard_normal((L * D, B, H)).astype(dtype)
    out, (hn, cn) = m(x, (h0, c0), lengths=lengths)
    xt, h0t, c0t = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    inp = xt if lengths is None else pack_padded_sequence(
        xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
    ot, (hnt, cnt) = tm(inp, (h0t, c0t))
    if lengths is not None:
        ot, _ = pad_packed_sequence(ot, batch_first=batch_first, total_length=T)
    gout, ghn, gcn = (rng.standard_normal(a.shape).astype(dtype) for a in (out, hn, cn))
    ((ot * torch.from_numpy(gout)).sum() + (hnt * torch.from_numpy(ghn)).sum()
     + (cnt * torch.from_numpy(gcn)).sum()).backward()
    dx, (dh0, dc0) = m.backward(gout, (ghn, gcn))
    pairs = {"output": (out, ot), "h_n": (hn, hnt), "c_n": (cn, cnt), "grad_input": (dx, xt.grad),
             "grad_h0": (dh0, h0t.grad), "grad_c0": (dc0, c0t.grad)}
    pairs.update({k: (m.grads[k], p.grad) for k, p in tm.named_parameters()})
    assert_pairs_close(pairs, dtype)
