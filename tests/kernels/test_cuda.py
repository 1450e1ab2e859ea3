"""Each @cuda.jit kernel of ``kernels.cuda`` against the NumPy reference, in float64.

Without a GPU these run in Numba's CUDA simulator (see conftest), one Python thread per CUDA
thread, so the shapes are tiny; they still cover sizes that do not divide the block (H=33 over
two 32-wide unit tiles, B=3 in a 4-row batch tile, H=1).  With a GPU the same tests run on it.
"""
import numpy as np
import pytest
from numba import cuda

from engine.kernels import ACTIVATIONS
from engine.kernels import cuda as K
from engine.kernels.reference import lstm_step_bwd_reference, lstm_step_fwd_reference
from tests.helpers import KERNEL_TOL

T = 3
LENGTHS = np.array([3, 1, 2])  # row 1 is padded at t=1; row 2's state at p=2 is h0 (reverse)


def _case(rng, B, H):
    """Random step inputs; t=1 with p=0 (forward) or p=2 (reverse) is tried by each test."""
    G = 4 * H
    r = lambda *shape: rng.standard_normal(shape)  # noqa: E731
    return dict(xproj=r(T, B, G), w_hh=r(G, H) * 0.5, h0=r(B, H), c0=r(B, H), h=r(T, B, H),
                c=r(T, B, H), gates=rng.uniform(0.05, 0.95, (T, B, G)), dout=r(T, B, H),
                dh=r(B, H), dc=r(B, H), lengths=LENGTHS[:B].astype(np.int64))


def _prev(s, s0, p, lengths):
    """NumPy statement of the kernels' rule for the state entering a step."""
    valid = (0 <= p) & (p < lengths)
    return np.where(valid[:, None], s[p % len(s)], s0)


def _launch(kernel, B, H, *args):
    cfg = K.launch_config(B, H)
    kernel[cfg.grid, cfg.block](*args)


FWD_CASES = [  # (kernel, B, H, act, p)
    ("fused", 3, 33, "tanh", 0), ("fused", 1, 1, "relu", 2),
    ("pointwise", 3, 33, "relu", 2), ("pointwise", 3, 1, "tanh", 0),
    ("pointwise", 1, 5, "tanh", 2),
]


@pytest.mark.parametrize("variant,B,H,act,p", FWD_CASES)
def test_fwd_step_kernels_match_reference(rng, variant, B, H, act, p):
    d, t = _case(rng, B, H), 1
    lengths = d["lengths"]
    h_prev, c_prev = _prev(d["h"], d["h0"], p, lengths), _prev(d["c"], d["c0"], p, lengths)
    # The reference adds x @ W_ih^T + b: feed xproj through an identity W_ih.
    G = 4 * H
    h_ref, c_ref, g_ref = lstm_step_fwd_reference(d["xproj"][t], h_prev, c_prev, np.eye(G),
                                                  d["w_hh"], np.zeros(G), np.zeros(G), act)
    h, c, gates = (cuda.to_device(d[k]) for k in ("h", "c", "gates"))
    common = (cuda.to_device(d["lengths"]), t, p, ACTIVATIONS[act], h, c, gates)
    if variant == "fused":
        _launch(K.lstm_step_fwd_kernel, B, H, d["xproj"], np.ascontiguousarray(d["w_hh"].T),
                d["h0"], d["c0"], *common)
    else:
        _launch(K.lstm_step_pointwise_fwd_kernel, B, H, d["xproj"], h_prev @ d["w_hh"].T,
                d["c0"], *common)
    h, c, gates = h.copy_to_host(), c.copy_to_host(), gates.copy_to_host()
    valid = t < lengths
    np.testing.assert_allclose(h[t][valid], h_ref[valid], **KERNEL_TOL)
    np.testing.assert_allclose(c[t][valid], c_ref[valid], **KERNEL_TOL)
    np.testing.assert_allclose(gates[t][valid], g_ref[valid], **KERNEL_TOL)
    assert (h[t][~valid] == 0).all() and (c[t][~valid] == 0).all()
    for other in (0, 2):  # steps other than t are never written
        np.testing.assert_array_equal(h[other], d["h"][other])
        np.testing.assert_array_equal(c[other], d["c"][other])


@pytest.mark.parametrize("B,H,act,p", [(3, 33, "tanh", 0), (3, 1, "relu", 2), (1, 5, "tanh", 2)])
def test_bwd_step_kernel_matches_reference(rng, B, H, act, p):
    d, t = _case(rng, B, H), 1
    lengths = d["lengths"]
    c_prev = _prev(d["c"], d["c0"], p, lengths)
    dz_ref, dc_ref = lstm_step_bwd_reference(d["gates"][t], d["c"][t], c_prev,
                                             d["dout"][t] + d["dh"], d["dc"], act)
    dz = cuda.to_device(rng.standard_normal((T, B, 4 * H)))
    dc = cuda.to_device(d["dc"])
    _launch(K.lstm_step_bwd_kernel, B, H, d["gates"], d["c"], d["c0"], d["dout"],
            cuda.to_device(lengths), t, p, ACTIVATIONS[act], d["dh"], dc, dz)
    dz, dc = dz.copy_to_host(), dc.copy_to_host()
    valid = t < lengths
    np.testing.assert_allclose(dz[t][valid], dz_ref[valid], **KERNEL_TOL)
    np.testing.assert_allclose(dc[valid], dc_ref[valid], **KERNEL_TOL)
    assert (dz[t][~valid] == 0).all()
    np.testing.assert_array_equal(dc[~valid], d["dc"][~valid])  # carried through padding


@pytest.mark.parametrize("p", [-1, 0, 2])
def test_gather_prev_kernel(rng, p):
    d = _case(rng, 3, 33)
    out = cuda.to_device(np.full((3, 33), np.nan))
    _launch(K.gather_prev_kernel, 3, 33, d["h"], d["h0"], p, cuda.to_device(d["lengths"]), out)
    np.testing.assert_array_equal(out.copy_to_host(), _prev(d["h"], d["h0"], p, d["lengths"]))


def test_keep_valid_rows_kernel(rng):
    src, dst = rng.standard_normal((3, 33)), rng.standard_normal((3, 33))
    out = cuda.to_device(dst)
    _launch(K.keep_valid_rows_kernel, 3, 33, src, 1, cuda.to_device(LENGTHS), out)
    valid = 1 < LENGTHS
    np.testing.assert_array_equal(out.copy_to_host(), np.where(valid[:, None], src, dst))


@pytest.mark.parametrize("B,H", [(1, 1), (3, 33), (256, 512), (5, 31)])
def test_launch_config_covers_every_unit_and_row(B, H):
    cfg = K.launch_config(B, H)
    (gx, gy), (bx, by) = cfg.grid, cfg.block
    assert gx * bx >= H and gy * by >= B
    assert (gx - 1) * bx < H and (gy - 1) * by < B  # no block is entirely idle
