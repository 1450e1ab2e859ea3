"""Test helpers, imported as ``tests.helpers`` everywhere: every tolerance table, a multi-layer
LSTM built from ``kernels.reference`` layers, finite differences and random weights."""
import numpy as np
import pytest

import engine
from engine.kernels.isa import ENGINE_GEMM
from engine.kernels.reference import (lstm_bwd_packed_reference, lstm_bwd_reference,
                                      lstm_fwd_packed_reference, lstm_fwd_reference)

# The engine GEMM and the time loops built on it run only on targets with it
# (kernels.isa.ENGINE_GEMM: AVX2, AVX-512); elsewhere float32 products go to BLAS and nothing
# calls these kernels, so their tests (``pytestmark = NEEDS_ENGINE_GEMM``) would compile and
# check dead code for such a target: minutes of compiling when tests/test_isa_paths.py runs
# the generic path on an AVX2 machine.
NEEDS_ENGINE_GEMM = pytest.mark.skipif(not ENGINE_GEMM, reason="no engine GEMM on this target: "
                                       "float32 products run on BLAS, never on these kernels")

# ---------------------------------------------------------------------------- tolerances
# Per dtype, used as np.testing.assert_allclose(actual, expected, **TOL[dtype]).
# float32: rounding of ~1e-7 amplified through T steps and GEMM sums; float64: exact to ~1e-10.
TOL = {
    np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5),
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
}
# Kernel against reference (both float64, same operation order up to BLAS summation).
KERNEL_TOL = dict(rtol=1e-10, atol=1e-12)
# Central differences in float64 agree with exact gradients to about this.
FD_TOL = dict(rtol=1e-6, atol=1e-8)
# float32 products of length K against float64, relative to the largest entry (``rel_err``):
# error grows like sqrt(K) * eps * |a||b|; the tests keep K <= 600, where 2e-6 is about 10 ulps
# of headroom.
GEMM_TOL = 2e-6
# A float32 BPTT against the float64 reference, relative to each result's largest entry
# (relu's unbounded cell makes some entries large and others tiny).
UNITS_BWD_TOL = 1e-5
# The fast float32 activations against float64 (max absolute error): the rational tanh is
# within about 3 float32 ulps of 1; the sigmoid is built on it.
FAST_ACT_TOL = {"tanh": 4 * np.finfo(np.float32).eps, "sigmoid": 2e-7}
# A float32 cell (or vector arithmetic) against the same math in float64.
FAST_CELL_TOL = dict(rtol=1e-6, atol=1e-7)


def tol(dtype):
    return TOL[np.dtype(dtype)]


def rel_err(got, want):
    """max |got - want| relative to the largest |want|."""
    return np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)



def numeric_grad(f, a, eps=1e-6):
    """Central differences of scalar f() with respect to every entry of ``a`` (perturbed in
    place and restored)."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        up = f()
        a[idx] = old - eps
        down = f()
        a[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


def random_weights(rng, I, H, dtype=np.float64):
    G = 4 * H
    return [rng.uniform(-0.6, 0.6, shape).astype(dtype) for shape in ((G, I), (G, H), (G,), (G,))]


def _suffix(layer, d):
    return f"_l{layer}" + ("_reverse" if d else "")


def _layer_weights(sd, layer, d):
    s = _suffix(layer, d)
    G = sd["weight_hh" + s].shape[0]
    zero = np.zeros(G)
    return (sd["weight_ih" + s], sd["weight_hh" + s], sd.get("bias_ih" + s, zero),
            sd.get("bias_hh" + s, zero))


def stack_reference(sd, x, h0, c0, num_layers, bidirectional, act, lengths=None):
    """Forward of a stacked LSTM from reference layers; returns out, h_n, c_n, caches.

    x (T,B,I) time-major float64; h0, c0 (L*D,B,H); sd a state dict of float64 arrays.
    """
    D = 2 if bidirectional else 1
    caches, hn, cn = [], np.zeros_like(h0), np.zeros_like(c0)
    layer_in = x
    for layer in range(num_layers):
        outs, layer_caches = [], []
        for d in range(D):
            k = layer * D + d
            w = _layer_weights(sd, layer, d)
            if lengths is None:
                o, hn[k], cn[k], cache = lstm_fwd_reference(layer_in, h0[k], c0[k], *w, act,
                                                            reverse=bool(d))
            else:
                o, hn[k], cn[k], cache = lstm_fwd_packed_reference(layer_in, h0[k], c0[k], *w,
                                                                   lengths, act, bool(d))
            outs.append(o)
            layer_caches.append(cache)
        caches.append(layer_caches)
        layer_in = np.concatenate(outs, axis=2)
    return layer_in, hn, cn, caches


def stack_reference_backward(caches, dout, dhn, dcn, packed=False):
    """Backward of ``stack_reference``: returns dx, dh0, dc0 and {name: grad}."""
    bwd = lstm_bwd_packed_reference if packed else lstm_bwd_reference
    D = len(caches[0])
    H = dhn.shape[-1]
    dh0, dc0, grads = np.zeros_like(dhn), np.zeros_like(dcn), {}
    g = dout
    for layer in reversed(range(len(caches))):
        d_in = 0
        for d in range(D):
            k = layer * D + d
            dx, dh0[k], dc0[k], dwi, dwh, dbi, dbh = bwd(g[:, :, d * H:(d + 1) * H], dhn[k],
                                                         dcn[k], caches[layer][d])
            s = _suffix(layer, d)
            grads.update({"weight_ih" + s: dwi, "weight_hh" + s: dwh, "bias_ih" + s: dbi,
                          "bias_hh" + s: dbh})
            d_in = d_in + dx
        g = d_in
    return g, dh0, dc0, grads


# ---------------------------------------------------------------------------- against torch
def run_both(rng, T, B, I, H, L, bi, batch_first, unbatched, with_state, dtype, lengths=None):
    """Forward and backward through engine and torch with the same weights and data; returns
    {name: (engine array, torch tensor)} for every output and gradient."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    D = 2 if bi else 1
    m = engine.LSTM(I, H, num_layers=L, bidirectional=bi, batch_first=batch_first, dtype=dtype,
                    seed=int(rng.integers(1 << 30)))
    tm = torch.nn.LSTM(I, H, num_layers=L, bidirectional=bi, batch_first=batch_first)
    tm = tm.to(torch.float64 if dtype == "float64" else torch.float32)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})

    x_shape = (T, I) if unbatched else ((B, T, I) if batch_first else (T, B, I))
    s_shape = (L * D, H) if unbatched else (L * D, B, H)
    x = rng.standard_normal(x_shape).astype(dtype)
    state = tuple(rng.standard_normal(s_shape).astype(dtype) for _ in range(2)) \
        if with_state else None

    out, (hn, cn) = m.forward(x, state, lengths=lengths)
    xt = torch.tensor(x, requires_grad=True)
    st_t = tuple(torch.tensor(s, requires_grad=True) for s in state) if with_state else None
    if lengths is None:
        ot, (hnt, cnt) = tm(xt, st_t)
    else:
        packed = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=batch_first,
                                      enforce_sorted=False)
        ot, (hnt, cnt) = tm(packed, st_t)
        ot, _ = pad_packed_sequence(ot, batch_first=batch_first, total_length=T)

    gout, ghn, gcn = (rng.standard_normal(a.shape).astype(dtype) for a in (out, hn, cn))
    loss = (ot * torch.from_numpy(gout)).sum() + (hnt * torch.from_numpy(ghn)).sum() + \
        (cnt * torch.from_numpy(gcn)).sum()
    loss.backward()
    dx, (dh0, dc0) = m.backward(gout, (ghn, gcn))

    pairs = {"output": (out, ot), "h_n": (hn, hnt), "c_n": (cn, cnt), "grad_input": (dx, xt.grad)}
    if with_state:
        pairs.update(grad_h0=(dh0, st_t[0].grad), grad_c0=(dc0, st_t[1].grad))
    pairs.update({k: (m.grads[k], p.grad) for k, p in tm.named_parameters()})
    return pairs


def assert_pairs_close(pairs, dtype):
    for name, (ours, theirs) in pairs.items():
        theirs = theirs.detach().numpy()
        assert ours.shape == theirs.shape, name
        assert ours.dtype == np.dtype(dtype), name
        np.testing.assert_allclose(ours, theirs, err_msg=name, **tol(dtype))
