"""kernels.step: one time step's fused pointwise cell update against the NumPy reference
(float64, to 1e-10 relative), and the float32 vector variants against the scalar row loop."""
import numpy as np
import pytest

from engine.kernels import ACT_FAST, ACTIVATIONS
from engine.kernels.reference import lstm_step_bwd_reference, lstm_step_fwd_reference
from engine.kernels.step import (lstm_step_bwd, lstm_step_bwd_scalar, lstm_step_bwd_vec,
                                 lstm_step_fwd, lstm_step_fwd_scalar, lstm_step_fwd_vec)
from tests.helpers import KERNEL_TOL, random_weights

close = KERNEL_TOL


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_step_fwd_matches_reference(rng, act):
    B, I, H = 3, 5, 7
    w_ih, w_hh, b_ih, b_hh = random_weights(rng, I, H)
    x, h_prev, c_prev = rng.standard_normal((B, I)), rng.standard_normal((B, H)), \
        rng.standard_normal((B, H))
    h_ref, c_ref, gates_ref = lstm_step_fwd_reference(x, h_prev, c_prev, w_ih, w_hh, b_ih, b_hh,
                                                      act)
    h, c, gates = np.empty((B, H)), np.empty((B, H)), np.empty((B, 4 * H))
    lengths = np.full(B, 1, np.int64)
    lstm_step_fwd(x @ w_ih.T + b_ih + b_hh, h_prev @ w_hh.T, c_prev, 0, lengths,
                  ACTIVATIONS[act], h, c, gates, True)
    np.testing.assert_allclose(h, h_ref, **close)
    np.testing.assert_allclose(c, c_ref, **close)
    np.testing.assert_allclose(gates, gates_ref, **close)


@pytest.mark.parametrize("store_gates", [True, False])
@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("H", [37, 64, 5])  # a partial last vector, whole vectors, only one
def test_vector_step_fwd_equals_the_row_loop(rng, H, act, store_gates):
    """float32 with ACT_FAST runs one 16-unit vector at a time (kernels.simd): the same bits as
    the scalar row loop, padded rows included."""
    B, G = 5, 4 * H
    x, rec = (3 * rng.standard_normal((B, G))).astype(np.float32), \
        rng.standard_normal((B, G)).astype(np.float32)
    c_prev = rng.standard_normal((B, H)).astype(np.float32)
    lengths = np.array([2, 1, 2, 3, 2])  # t = 1: row 1 is padded
    outs = []
    for kernel in (lstm_step_fwd_vec, lstm_step_fwd_scalar, lstm_step_fwd):
        h, c, gates = np.full((B, H), np.nan, np.float32), np.full((B, H), np.nan, np.float32), \
            np.full((B, G), np.nan, np.float32)
        kernel(x, rec, c_prev, 1, lengths, ACTIVATIONS[act] | ACT_FAST, h, c, gates,
               store_gates)
        outs.append((h, c, gates))
    for got in (outs[0], outs[2]):
        for a, b in zip(got, outs[1]):
            np.testing.assert_array_equal(a, b)
    assert not outs[0][0][1].any() and not outs[0][1][1].any()
    assert np.isfinite(outs[0][2][lengths > 1]).all() == store_gates  # valid rows' gates


@pytest.mark.parametrize("H", [37, 64, 5])
def test_vector_step_bwd_equals_the_row_loop(rng, H):
    """The float32 ACT_FAST backward on 16-lane vectors: the same bits as the row loop."""
    B, G = 5, 4 * H
    gates = rng.uniform(0.05, 0.95, (B, G)).astype(np.float32)
    gates[:, 2 * H:3 * H] = rng.uniform(-0.9, 0.9, (B, H))
    c, c_prev, dh, dc = (rng.standard_normal((B, H)).astype(np.float32) for _ in range(4))
    lengths = np.array([2, 1, 2, 3, 2])  # t = 1: row 1 is padded
    outs = []
    for kernel in (lstm_step_bwd_vec, lstm_step_bwd_scalar, lstm_step_bwd):
        dz, dc_io = np.full((B, G), np.nan, np.float32), dc.copy()
        kernel(gates, c, c_prev, dh, 1, lengths, ACT_FAST, dc_io, dz)
        outs.append((dz, dc_io))
    for got in (outs[0], outs[2]):
        for a, b in zip(got, outs[1]):
            np.testing.assert_array_equal(a, b)
    assert not outs[0][0][1].any() and (outs[0][1][1] == dc[1]).all()  # the padded row
    assert np.isfinite(outs[0][0]).all()


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_step_bwd_matches_reference(rng, act):
    B, H = 4, 6
    gates = rng.uniform(0.05, 0.95, (B, 4 * H))
    if act == "tanh":
        gates[:, 2 * H:3 * H] = rng.uniform(-0.9, 0.9, (B, H))
    c, c_prev = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    dout, dh, dc = (rng.standard_normal((B, H)) for _ in range(3))
    dz_ref, dc_prev_ref = lstm_step_bwd_reference(gates, c, c_prev, dout + dh, dc, act)
    dz = np.empty((B, 4 * H))
    lengths = np.array([3, 1, 2, 5])  # t=1: row 1 is padded
    dc_inout = dc.copy()
    lstm_step_bwd(gates, c, c_prev, dout + dh, 1, lengths, ACTIVATIONS[act], dc_inout, dz)
    valid = lengths > 1
    np.testing.assert_allclose(dz[valid], dz_ref[valid], **close)
    np.testing.assert_allclose(dc_inout[valid], dc_prev_ref[valid], **close)
    assert not dz[~valid].any(), "padded rows must get zero gate gradient"
    np.testing.assert_array_equal(dc_inout[~valid], dc[~valid])
