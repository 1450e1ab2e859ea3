"""CPU @njit kernels against the NumPy reference (float64, to 1e-10 relative)."""
import itertools

import numpy as np
import pytest

from kernels import ACTIVATIONS
from kernels.cpu import (lstm_seq_bwd_cpu, lstm_seq_fwd_cpu, lstm_step_bwd_cpu,
                         lstm_step_bwd_rows, lstm_step_bwd_vec, lstm_step_fwd_cpu,
                         lstm_step_fwd_rows, lstm_step_fwd_vec)
from kernels import ACT_FAST, ACT_TANH
from kernels.gates import lstm_cell_fwd, sigmoid, tanh_fast
from kernels.steps import part_rows
from kernels.reference import (lstm_bwd_packed_reference, lstm_fwd_packed_reference,
                               lstm_step_bwd_reference, lstm_step_fwd_reference)
from tests.conftest import KERNEL_TOL
from tests.helpers import random_weights

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
    lstm_step_fwd_cpu(x @ w_ih.T + b_ih + b_hh, h_prev @ w_hh.T, c_prev, 0, lengths,
                      ACTIVATIONS[act], h, c, gates)
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
    for kernel in (lstm_step_fwd_vec, lstm_step_fwd_rows, lstm_step_fwd_cpu):
        h, c, gates = np.full((B, H), np.nan, np.float32), np.full((B, H), np.nan, np.float32), \
            np.full((B, G), np.nan, np.float32)
        kernel(x, rec, c_prev, 1, lengths, ACTIVATIONS[act] | ACT_FAST, h, c,
               gates if store_gates else None)
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
    for kernel in (lstm_step_bwd_vec, lstm_step_bwd_rows, lstm_step_bwd_cpu):
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
    lstm_step_bwd_cpu(gates, c, c_prev, dout + dh, 1, lengths, ACTIVATIONS[act], dc_inout, dz)
    valid = lengths > 1
    np.testing.assert_allclose(dz[valid], dz_ref[valid], **close)
    np.testing.assert_allclose(dc_inout[valid], dc_prev_ref[valid], **close)
    assert not dz[~valid].any(), "padded rows must get zero gate gradient"
    np.testing.assert_array_equal(dc_inout[~valid], dc[~valid])


def _run_seq(rng, T, B, I, H, act, reverse, lengths, parts):
    w_ih, w_hh, b_ih, b_hh = random_weights(rng, I, H)
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    out, hn, cn, cache = lstm_fwd_packed_reference(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths,
                                                   act, reverse)
    h, c, gates = np.empty((T, B, H)), np.empty((T, B, H)), np.empty((T, B, 4 * H))
    scratch = np.empty((B, H)), np.empty((B, H)), np.empty((B, 4 * H))
    lstm_seq_fwd_cpu(x @ w_ih.T + b_ih + b_hh, np.ascontiguousarray(w_hh.T), h0, c0, lengths,
                     ACTIVATIONS[act], reverse, h, c, gates, *scratch, parts)
    return (x, h0, c0, w_ih, w_hh), (out, hn, cn, cache), (h, c, gates)


@pytest.mark.parametrize("parts", [1, 3])  # 3 row blocks of 4, 4 and 3 rows run by prange
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
    lstm_seq_bwd_cpu(dout, gates, c, c0, w_hh, lengths, ACTIVATIONS[act], reverse, dh, dc, dz,
                     np.empty((B, H)), np.empty((B, H)), np.empty((B, H)), parts)
    np.testing.assert_allclose(dh, dh0_ref, **close)
    np.testing.assert_allclose(dc, dc0_ref, **close)
    np.testing.assert_allclose(dz.reshape(T * B, -1) @ w_ih, dx_ref.reshape(T * B, -1), **close)
    np.testing.assert_allclose(dz.reshape(T * B, -1).T @ x.reshape(T * B, -1), dwi_ref, **close)


@pytest.mark.parametrize("B", [0, 1, 3, 4, 7, 8, 12, 13, 64, 101])
@pytest.mark.parametrize("parts", [1, 2, 3])
def test_part_rows_tile_the_batch_at_multiples_of_4(B, parts):
    blocks = [part_rows(p, parts, B) for p in range(parts)]
    assert blocks[0][0] == 0 and blocks[-1][1] == B
    for (lo, hi), (nxt, _) in itertools.pairwise(blocks):
        assert lo <= hi == nxt and hi % 4 == 0
    sizes = [hi - lo for lo, hi in blocks]
    if B >= 4 * parts:  # balanced to within one 4-row tile
        assert max(sizes) - min(sizes) <= 4


def test_sigmoid_is_stable_at_extremes():
    xs = np.array([-800.0, -40.0, -1.0, 0.0, 1.0, 40.0, 800.0])
    got = np.array([sigmoid(v, ACT_TANH) for v in xs])
    with np.errstate(over="ignore"):
        want = 1.0 / (1.0 + np.exp(-xs))
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-300)
    assert np.isfinite(got).all()


def test_fast_float32_activations_are_within_a_few_ulps():
    x = np.linspace(-12, 12, 200_001, dtype=np.float32)
    exact = np.tanh(x.astype(np.float64))
    fast = np.array([tanh_fast(v) for v in x[::97]], dtype=np.float32)
    assert fast.dtype == np.float32
    err = np.abs(fast - exact[::97])
    assert err.max() <= 4 * np.finfo(np.float32).eps, err.max()
    sig = np.array([sigmoid(v, ACT_FAST) for v in x[::97]], dtype=np.float32)
    assert np.abs(sig - 1 / (1 + np.exp(-x[::97].astype(np.float64)))).max() <= 2e-7


def test_fast_cell_matches_exact_cell():
    args = [np.float32(v) for v in (0.3, -1.2, 0.7, 2.0, -0.4)]
    out = lstm_cell_fwd(*args, ACT_FAST)
    exact = lstm_cell_fwd(*[np.float64(a) for a in args], ACT_TANH)
    np.testing.assert_allclose(out, exact, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 15, 64, 1000, 70_001])  # tails of a vector and of 4 vectors
def test_all_finite_kernel_matches_numpy(rng, n, parts):
    from kernels.cpu import all_finite_f32

    a = rng.uniform(-3e38, 3e38, n).astype(np.float32)  # large but finite: x - x is 0
    assert np.isfinite(a).all()
    assert all_finite_f32(a.reshape(1, -1), parts)
    for where in {0, n // 2, n - 1}:
        for bad in (np.nan, np.inf, -np.inf):
            b = a.copy()
            b[where] = bad
            assert not all_finite_f32(b.reshape(1, -1), parts), (where, bad)
