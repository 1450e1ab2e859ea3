"""kernels.seq_units: the unit-split time loops (the forward's fused GEMM epilogue, the
backward split by columns) and their packed gate layout, against the NumPy reference."""
import numpy as np
import pytest

from engine.kernels import ACT_FAST, ACTIVATIONS
from engine.kernels.gemm import pack_weights
from engine.kernels.reference import lstm_bwd_packed_reference, lstm_fwd_packed_reference
from engine.kernels.seq_rows import lstm_seq_fwd_rows
from engine.kernels.seq_units import UNITS, lstm_seq_bwd_units, lstm_seq_fwd_units, pack_gates
from tests.helpers import NEEDS_ENGINE_GEMM, TOL, UNITS_BWD_TOL, random_weights, rel_err

pytestmark = NEEDS_ENGINE_GEMM

F32 = np.float32


def test_pack_gates_layout(rng):
    """Panel p holds the four gates of units UNITS * p ..., zeros past unit H."""
    K, H = 3, 20
    w_hh = rng.standard_normal((4 * H, K)).astype(F32)
    wp = pack_gates(w_hh.T, H)
    P = -(-H // UNITS)
    assert wp.shape == (P, K, 4 * UNITS)
    for q in range(4):
        for u in range(H):
            np.testing.assert_array_equal(wp[u // UNITS, :, q * UNITS + u % UNITS],
                                          w_hh[q * H + u])
    last = H - (P - 1) * UNITS  # units in the last block
    assert not wp[P - 1, :, [q * UNITS + v for q in range(4) for v in range(last, UNITS)]].any()


def _reference_case(rng, T, B, I, H, act, reverse):
    """A padded batch (sequence 0 full length), random weights and state, and the NumPy
    reference's forward: (lengths, (x, h0, c0, w_ih, w_hh, b_ih, b_hh), (out, h_n, c_n, cache))."""
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    w_ih, w_hh, b_ih, b_hh = random_weights(rng, I, H)
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    ref = lstm_fwd_packed_reference(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, act, reverse)
    return lengths, (x, h0, c0, w_ih, w_hh, b_ih, b_hh), ref


@pytest.mark.parametrize("parts", [1, 2])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("B,H", [(5, 20), (1, 33), (3, 1), (9, 40)])
def test_fused_forward_matches_reference(rng, B, H, act, reverse, parts):
    T = 6
    lengths, (x, h0, c0, w_ih, w_hh, b_ih, b_hh), (out, hn, cn, cache) = _reference_case(
        rng, T, B, 4, H, act, reverse)
    xproj = (x @ w_ih.T + b_ih + b_hh).astype(F32)
    wp = pack_gates(w_hh.T.astype(F32), H)
    h, c = np.full((T, B, H), np.nan, F32), np.full((T, B, H), np.nan, F32)
    gates = np.zeros((T, B, 4 * H), F32)
    lstm_seq_fwd_units(xproj, wp, h0.astype(F32), c0.astype(F32), lengths.astype(np.int64),
                       ACTIVATIONS[act] | ACT_FAST, reverse, h, c, gates,
                       np.empty((2, B, H), F32), np.empty((B, H), F32), parts)
    tol = TOL[np.dtype(F32)]
    np.testing.assert_allclose(h, out, **tol)
    last = np.zeros(B, int) if reverse else lengths - 1
    np.testing.assert_allclose(c[last, np.arange(B)], cn, **tol)
    for b in range(B):  # saved activations of valid steps, as the reference caches them
        steps = range(lengths[b])
        ref_gates = np.stack([cache["caches"][b]["gates"][t][0] for t in steps])
        np.testing.assert_allclose(gates[:lengths[b], b], ref_gates, **tol)
        assert not c[lengths[b]:, b].any(), "padded steps write zeros"


@pytest.mark.parametrize("parts", [1, 2])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("B,H", [(3, 70), (1, 130), (4, 1)])
def test_unit_split_backward_matches_reference(rng, B, H, act, reverse, parts):
    T = 5
    lengths, (x, h0, c0, w_ih, w_hh, b_ih, b_hh), (_, _, _, cache) = _reference_case(
        rng, T, B, 3, H, act, reverse)
    dout, dhn, dcn = (rng.standard_normal(s) for s in ((T, B, H), (B, H), (B, H)))
    dx_ref, dh0_ref, dc0_ref, dwi_ref, *_ = lstm_bwd_packed_reference(dout, dhn, dcn, cache)
    # The forward's saved gates and c, from the float64 sequence kernel.
    h, c, gates = np.zeros((T, B, H)), np.zeros((T, B, H)), np.zeros((T, B, 4 * H))
    lstm_seq_fwd_rows(x @ w_ih.T + b_ih + b_hh, w_hh.T, h0, c0, lengths,
                      ACTIVATIONS[act], reverse, h, c, gates, np.empty((B, H)), np.empty((B, H)),
                      np.empty((B, 4 * H)), 1, None, None)  # as the CPU backend calls it
    f = lambda a: a.astype(F32)  # noqa: E731
    dh, dc, dz = f(dhn), f(dcn), np.full((T, B, 4 * H), np.nan, F32)
    lstm_seq_bwd_units(f(dout), f(gates), f(c), f(c0), pack_weights(f(w_hh)),
                       lengths.astype(np.int64), ACTIVATIONS[act] | ACT_FAST, reverse, dh, dc, dz,
                       *(np.empty((B, H), F32) for _ in range(3)), parts)
    # float32 against float64, relative to each result's largest entry (relu's unbounded
    # cell makes some entries large and others tiny).
    dz2 = dz.reshape(T * B, -1).astype(np.float64)
    for got, want in ((dh, dh0_ref), (dc, dc0_ref), (dz2 @ w_ih, dx_ref.reshape(T * B, -1)),
                      (dz2.T @ x.reshape(T * B, -1), dwi_ref)):
        assert rel_err(got, want) < UNITS_BWD_TOL
