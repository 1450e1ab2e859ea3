"""kernels.seq_rows: the row-split time loops against the NumPy reference (float64, to 1e-10
relative), padded batches, both directions, one and several row blocks."""
import numpy as np
import pytest

from engine.kernels import ACTIVATIONS
from engine.kernels.reference import lstm_bwd_packed_reference, lstm_fwd_packed_reference
from engine.kernels.seq_rows import lstm_seq_bwd_rows, lstm_seq_fwd_rows
from tests.helpers import KERNEL_TOL, random_weights

close = KERNEL_TOL


def _run_seq(rng, T, B, I, H, act, reverse, lengths, parts):
    w_ih, w_hh, b_ih, b_hh = random_weights(rng, I, H)
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    out, hn, cn, cache = lstm_fwd_packed_reference(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths,
                                                   act, reverse)
    h, c, gates = np.empty((T, B, H)), np.empty((T, B, H)), np.empty((T, B, 4 * H))
    scratch = np.empty((B, H)), np.empty((B, H)), np.empty((B, 4 * H))
    # W_hh.T as the CPU backend passes it (a view) and the projection's None spelt out: the
    # backend's own specialisation, so a cold test run compiles it once, not twice.
    lstm_seq_fwd_rows(x @ w_ih.T + b_ih + b_hh, w_hh.T, h0, c0, lengths,
                      ACTIVATIONS[act], reverse, h, c, gates, *scratch, parts, None, None)
    return (x, h0, c0, w_ih, w_hh), (out, hn, cn, cache), (h, c, gates)


# B = 11 over 2 row blocks is cut at the 6-row tile (6 + 5), over 3 at multiples of 4
# (4 + 4 + 3): seq_rows.step_rows; the blocks run by prange.
@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_seq_fwd_bwd_match_reference(rng, act, reverse, parts):
    T, B, I, H = 6, 11, 3, 5
    lengths = np.array([6, 2, 1, 4, 3, 6, 5, 1, 2, 6, 3])
    (x, h0, c0, w_ih, w_hh), (out, hn, cn, cache), (h, c, gates) = \
        _run_seq(rng, T, B, I, H, act, reverse, lengths, parts)
    np.testing.assert_allclose(h, out, **close)
    last = np.zeros(B, int) if reverse else lengths - 1
    np.testing.assert_allclose(h[last, np.arange(B)], hn, **close)
    np.testing.assert_allclose(c[last, np.arange(B)], cn, **close)

    dout, dhn, dcn = rng.standard_normal((T, B, H)), rng.standard_normal((B, H)), \
        rng.standard_normal((B, H))
    dx_ref, dh0_ref, dc0_ref, dwi_ref, *_ = lstm_bwd_packed_reference(dout, dhn, dcn, cache)
    dh, dc, dz = dhn.copy(), dcn.copy(), np.empty((T, B, 4 * H))
    lstm_seq_bwd_rows(dout, gates, c, c0, w_hh, lengths, ACTIVATIONS[act], reverse, dh, dc, dz,
                      np.empty((B, H)), np.empty((B, H)), np.empty((B, H)), parts, None, None)
    np.testing.assert_allclose(dh, dh0_ref, **close)
    np.testing.assert_allclose(dc, dc0_ref, **close)
    np.testing.assert_allclose(dz.reshape(T * B, -1) @ w_ih, dx_ref.reshape(T * B, -1), **close)
    np.testing.assert_allclose(dz.reshape(T * B, -1).T @ x.reshape(T * B, -1), dwi_ref, **close)
