"""The float32 GEMM kernels (kernels.gemm, kernels.simd) against float64 NumPy and the
NumPy LSTM reference."""
import numpy as np
import pytest

from kernels import ACT_FAST, ACTIVATIONS
from kernels.cpu import lstm_seq_fwd_cpu
from kernels.gemm import (NR, PACK_A_PANELS, PARALLEL_PACK_PANELS, STREAM_C_BYTES, gemm,
                          gemm_packed, lstm_seq_bwd_units, lstm_seq_fwd_fused, matmul_into, pack,
                          pack_gates, pack_weights, panels, six_row_tiles)
from kernels.reference import lstm_bwd_packed_reference, lstm_fwd_packed_reference
from tests.conftest import TOL
from tests.helpers import random_weights

F32 = np.float32
# float32 products of length K: error grows like sqrt(K) * eps * |a||b|; these shapes keep
# K <= 600, where a relative 2e-6 of the largest entry is about 10 ulps of headroom.
GEMM_TOL = 2e-6


def _rel_err(got, want):
    return np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)


_STREAMED = int((STREAM_C_BYTES / 4) ** 0.5) + 6  # an output too large for the caches
SHAPES = [(1, 1, 1), (3, 5, 7), (4, 64, 256), (17, 33, 132), (5, 300, 70), (130, 513, 65),
          (9, 257, 129),  # K > KC (packed in blocks), N not a multiple of 64, M not of 4
          (_STREAMED, 9, _STREAMED)]  # its tiles prefetched (stream_c)


@pytest.mark.parametrize("parts", [1, 2])
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_gemm_matches_float64(rng, M, K, N, parts):
    a = rng.standard_normal((M, K)).astype(F32)
    b = rng.standard_normal((K, N)).astype(F32)
    want = a.astype(np.float64) @ b
    c = np.full((M, N), np.nan, F32)  # every element must be written
    gemm(a, b, c, False, parts)
    assert _rel_err(c, want) < GEMM_TOL

    c0 = rng.standard_normal((M, N)).astype(F32)
    c = c0.copy()
    gemm(a, b, c, True, parts)
    assert _rel_err(c, c0 + want) < GEMM_TOL

    bias = rng.standard_normal((1, N)).astype(F32)
    c = np.full((M, N), np.nan, F32)
    gemm(a, b, c, False, parts, bias)
    assert _rel_err(c, want + bias) < GEMM_TOL


def test_six_row_tiles_leave_at_most_one_single_row():
    """Rows go to 6-row tiles, then 4-row tiles, then single rows (each of which streams the
    panel once more): at most one is left single from 4 rows on, and 6-row tiles take every
    row they can."""
    for rows in range(200):
        n6 = six_row_tiles(rows)
        rest = rows - 6 * n6
        assert n6 >= 0 and rest >= 0, rows
        assert rest % 4 <= 1 or rest == rows < 4, rows
        assert rest < 6 + 4, rows  # at most one 6-row tile given up, for two 4-row ones


@pytest.mark.parametrize("M,K,N", [(7, 40, 70), (33, 300, 20),
                                   (37, 300, 64 * PACK_A_PANELS - 5)])  # a's blocks copied
@pytest.mark.parametrize("a_step", [1, 2])  # a's columns contiguous, or strided too
def test_gemm_takes_transposed_views(rng, M, K, N, a_step):
    """a.T @ b (the weight gradients) and a @ W.T (the input projection) need no copies."""
    a_t = rng.standard_normal((K, M * a_step)).astype(F32)[:, ::a_step]  # a = a_t.T
    w = rng.standard_normal((N, K)).astype(F32)    # b = w.T
    c = np.full((M, N), np.nan, F32)
    gemm(a_t.T, w.T, c, False, 2)
    assert _rel_err(c, a_t.T.astype(np.float64) @ w.T) < GEMM_TOL


def test_gemm_does_not_write_outside_its_rows_and_columns(rng):
    a, b = rng.standard_normal((6, 9)).astype(F32), rng.standard_normal((9, 20)).astype(F32)
    big = np.full((8, 30), 7.0, F32)
    gemm(a, b, big[1:7, 3:23], False, 1)  # a view: rows strided, 20 of 30 columns
    assert _rel_err(big[1:7, 3:23], a.astype(np.float64) @ b) < GEMM_TOL
    mask = np.ones_like(big, bool)
    mask[1:7, 3:23] = False
    assert (big[mask] == 7.0).all()


@pytest.mark.parametrize("N", [70, NR * PARALLEL_PACK_PANELS + 6])  # serial, parallel
def test_pack_layout(rng, N):
    K, k0, kc = 9, 2, 5
    b = rng.standard_normal((K, N)).astype(F32)
    wide = np.zeros((K, N + 13), F32)
    wide[:, 3:3 + N] = b  # contiguous rows, row stride past N, start off vector alignment
    want = np.zeros((kc, panels(N) * NR), F32)  # columns past N are zero
    want[:, :N] = b[k0:k0 + kc]
    for src in (b, np.asfortranarray(b), wide[:, 3:3 + N], np.repeat(b, 2, axis=1)[:, ::2],
                np.asfortranarray(np.repeat(b, 3, axis=0))[::3]):  # rows gathered: W.T views
        bp = np.full((panels(N), kc, NR), np.nan, F32)
        pack(src, k0, kc, bp)
        for p in range(panels(N)):
            np.testing.assert_array_equal(bp[p], want[:, p * NR:(p + 1) * NR])


def test_pack_gates_layout(rng):
    K, H = 3, 20
    w_hh = rng.standard_normal((4 * H, K)).astype(F32)
    wp = pack_gates(w_hh.T, H)
    assert wp.shape == (2, K, NR)
    for q in range(4):
        for u in range(H):
            np.testing.assert_array_equal(wp[u // 16, :, q * 16 + u % 16], w_hh[q * H + u])
    assert not wp[1, :, [q * 16 + v for q in range(4) for v in range(4, 16)]].any()


def test_packed_and_plain_matmul_into_agree(rng):
    a = rng.standard_normal((6, 40)).astype(F32)
    w = rng.standard_normal((40, 100)).astype(F32)
    bp = pack_weights(w)
    c1, c2 = np.empty((6, 100), F32), np.empty((6, 100), F32)
    from numba import njit

    @njit
    def both(a, w, bp, c1, c2):
        matmul_into(a, w, c1)
        matmul_into(a, bp, c2)
    both(a, w, bp, c1, c2)
    assert _rel_err(c2, c1.astype(np.float64)) < GEMM_TOL


def test_gemm_packed_gate_layout_restores_gate_order(rng):
    """pstep=16, qstep=Hp scatters pack_gates's unit blocks back into [i f g o]."""
    B, K, H = 5, 12, 40
    Hp = 48
    w_hh = rng.standard_normal((4 * H, K)).astype(F32)
    h = rng.standard_normal((B, K)).astype(F32)
    rec = np.full((B, 4 * Hp), np.nan, F32)
    gemm_packed(h, pack_gates(w_hh.T, H), rec, 0, B, False, None, 16, Hp)
    want = h.astype(np.float64) @ w_hh.T
    for q in range(4):
        assert _rel_err(rec[:, q * Hp:q * Hp + H], want[:, q * H:(q + 1) * H]) < GEMM_TOL


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


@pytest.mark.parametrize("row_parts,unit_parts", [(1, 1), (1, 2), (2, 1)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("B,H", [(5, 20), (1, 33), (3, 1), (9, 40)])
def test_fused_forward_matches_reference(rng, B, H, act, reverse, row_parts, unit_parts):
    T = 6
    lengths, (x, h0, c0, w_ih, w_hh, b_ih, b_hh), (out, hn, cn, cache) = _reference_case(
        rng, T, B, 4, H, act, reverse)
    xproj = (x @ w_ih.T + b_ih + b_hh).astype(F32)
    wp = pack_gates(w_hh.T.astype(F32), H)
    h, c = np.full((T, B, H), np.nan, F32), np.full((T, B, H), np.nan, F32)
    gates = np.zeros((T, B, 4 * H), F32)
    lstm_seq_fwd_fused(xproj, wp, h0.astype(F32), c0.astype(F32), lengths.astype(np.int64),
                       ACTIVATIONS[act] | ACT_FAST, reverse, h, c, gates,
                       np.empty((2, B, H), F32), np.empty((B, H), F32), row_parts, unit_parts)
    tol = TOL[np.dtype(F32)]
    np.testing.assert_allclose(h, out, **tol)
    last = np.zeros(B, int) if reverse else lengths - 1
    np.testing.assert_allclose(c[last, np.arange(B)], cn, **tol)
    for b in range(B):  # saved activations of valid steps, as the reference caches them
        steps = range(lengths[b])
        ref_gates = np.stack([cache["caches"][b]["gates"][t][0] for t in steps])
        np.testing.assert_allclose(gates[:lengths[b], b], ref_gates, **tol)
        assert not c[lengths[b]:, b].any(), "padded steps write zeros"


def test_vector_cell_math_equals_the_scalar_cell_lane_by_lane(rng):
    """kernels.gates runs unchanged on 16-lane vectors (kernels.simd operators)."""
    from numba import njit

    from kernels.gates import lstm_cell_fwd_fast
    from kernels.simd import load, store

    @njit
    def vector_cells(pre, act, out):
        res = lstm_cell_fwd_fast(load(pre, 0, 0), load(pre, 1, 0), load(pre, 2, 0),
                                 load(pre, 3, 0), load(pre, 4, 0), act)
        for q in range(6):
            store(out, q, 0, res[q])
        store(out, 6, 0, -load(pre, 0, 0) / 2 - 1 + min(load(pre, 1, 0), 0.5) * 3)
        store(out, 7, 0, max(load(pre, 2, 0), load(pre, 3, 0)) - (1 - load(pre, 4, 0)))

    pre = (4 * rng.standard_normal((5, 16))).astype(F32)
    pre[:, 0] = [20, -20, 9, -9, 0]  # past the fast tanh's clamp
    for act in (ACT_FAST, ACT_FAST | 1):  # tanh and relu cells
        out = np.empty((8, 16), F32)
        vector_cells(pre, act, out)
        for v in range(16):
            want = lstm_cell_fwd_fast(*(F32(x) for x in pre[:, v]), act)
            np.testing.assert_array_equal(out[:6, v], np.array(want, F32))
        x0, x1, x2, x3, x4 = pre
        np.testing.assert_allclose(out[6], -x0 / 2 - 1 + np.minimum(x1, 0.5) * 3, rtol=1e-6)
        np.testing.assert_array_equal(out[7], np.maximum(x2, x3) - (1 - x4))


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
    lstm_seq_fwd_cpu(x @ w_ih.T + b_ih + b_hh, np.ascontiguousarray(w_hh.T), h0, c0, lengths,
                     ACTIVATIONS[act], reverse, h, c, gates, np.empty((B, H)), np.empty((B, H)),
                     np.empty((B, 4 * H)), 1)
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
        assert _rel_err(got, want) < 1e-5
