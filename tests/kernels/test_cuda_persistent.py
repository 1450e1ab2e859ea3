"""The persistent kernels of ``kernels.cuda_persistent`` against the NumPy reference, float64.

In the simulator (see conftest) a cooperative grid has one block and its grid barrier is a
block barrier, and blocks run one after another.  So the multi-block decomposition is checked
two ways, both with slices that do not divide H (H=5 in 3 slices: 1, 2, 2 units) and with
batches that leave threads idle:

- "virtual": a whole sequence in one launch of one block owning every slice: the time loop,
  the barriers and the slicing code as a GPU runs them, the grid barrier only between slices
  run by one block;
- "blocks": one launch per step (per half-step in the backward) on a grid of several blocks,
  one slice each: real block indices, the launch boundary standing in for the grid barrier.

What no simulator run shows: blocks meeting at a real grid barrier, the cooperative launch
limit, and the speed.
"""
import numpy as np
import pytest
from numba import cuda

from engine.kernels import ACTIVATIONS
from engine.kernels import cuda_persistent as K
from engine.kernels.reference import lstm_bwd_packed_reference, lstm_fwd_packed_reference
from tests.helpers import KERNEL_TOL

# (B, H, slices, threads, lengths): H=5 in 3 slices of 1, 2, 2 units; threads=32 with B*units
# = 6 items gives split 4 (tree reductions); H=9 with 16 threads and 5 rows: 15 items > 16/1,
# split 1 and two passes.
CASES = [(3, 5, 3, 32, [3, 1, 2]), (5, 9, 2, 16, [2, 3, 1, 3, 3]), (1, 4, 4, 32, [3])]


def _data(rng, B, H, T=3):
    G = 4 * H
    r = lambda *s: rng.standard_normal(s)  # noqa: E731
    return dict(xproj=r(T, B, G), w_hh=r(G, H) * 0.5, h0=r(B, H), c0=r(B, H), dout=r(T, B, H),
                dh=r(B, H), dc=r(B, H))


def _reference(d, lengths, act, reverse):
    """Forward outputs (h, c, gates full-size, zero where padded) and the backward's dz, dh0,
    dc0, from the packed reference fed xproj through an identity W_ih."""
    T, B, G = d["xproj"].shape
    H = G // 4
    eye, zero = np.eye(G), np.zeros(G)
    out, _, _, cache = lstm_fwd_packed_reference(d["xproj"], d["h0"], d["c0"], eye, d["w_hh"],
                                                 zero, zero, lengths, act, reverse)
    c, gates = np.zeros((T, B, H)), np.zeros((T, B, G))
    for b, (n, cb) in enumerate(zip(lengths, cache["caches"])):
        c[:n, b], gates[:n, b] = cb["c"][:, 0], cb["gates"][:, 0]
    dz, dh0, dc0, *_ = lstm_bwd_packed_reference(d["dout"], d["dh"], d["dc"], cache)
    return dict(h=out, c=c, gates=gates, dz=dz, dh0=dh0, dc0=dc0)


def _plan(mode, B, H, slices, threads):
    blocks = 1 if mode == "virtual" else slices
    return K.plan_virtual(B, H, 8, slices, blocks=blocks, threads=threads)


def _fwd(d, lengths, act, reverse, plan, mode):
    T, B, G = d["xproj"].shape
    H = G // 4
    h, c, gates = (cuda.to_device(np.full(s, np.nan)) for s in ((T, B, H), (T, B, H), (T, B, G)))
    args = (d["xproj"], np.ascontiguousarray(d["w_hh"].T), d["h0"], d["c0"],
            cuda.to_device(np.asarray(lengths, np.int64)), act, int(reverse), plan.slices,
            plan.split)
    kernel = K.lstm_seq_fwd_persistent_kernel[plan.blocks, plan.threads, 0, plan.shared_bytes]
    for s0, s1 in [(0, T)] if mode == "virtual" else [(s, s + 1) for s in range(T)]:
        kernel(*args, s0, s1, h, c, gates)
    return h.copy_to_host(), c.copy_to_host(), gates.copy_to_host()


def _bwd(d, ref, lengths, act, reverse, plan, mode):
    T, B, G = d["xproj"].shape
    dh, dc = cuda.to_device(d["dh"].copy()), cuda.to_device(d["dc"].copy())
    dz = cuda.to_device(np.full((T, B, G), np.nan))
    c = np.ascontiguousarray(ref["c"])
    args = (ref["gates"], c, d["c0"], d["dout"], d["w_hh"],
            cuda.to_device(np.asarray(lengths, np.int64)), act, int(reverse), plan.slices,
            plan.split)
    kernel = K.lstm_seq_bwd_persistent_kernel[plan.blocks, plan.threads, 0, plan.shared_bytes]
    for r0, r1 in [(0, 2 * T)] if mode == "virtual" else [(r, r + 1) for r in range(2 * T)]:
        kernel(*args, r0, r1, dh, dc, dz)
    return dz.copy_to_host(), dh.copy_to_host(), dc.copy_to_host()


@pytest.mark.parametrize("mode,case", [("virtual", c) for c in CASES] +
                         [("blocks", c) for c in CASES[:2]])
def test_persistent_fwd_and_bwd_match_reference(rng, mode, case):
    B, H, slices, threads, lengths = case
    d = _data(rng, B, H)
    plan = _plan(mode, B, H, slices, threads)
    for act, reverse in (("tanh", False), ("relu", True)):
        ref = _reference(d, lengths, act, reverse)
        h, c, gates = _fwd(d, lengths, ACTIVATIONS[act], reverse, plan, mode)
        np.testing.assert_allclose(h, ref["h"], err_msg=f"h {act}", **KERNEL_TOL)
        np.testing.assert_allclose(c, ref["c"], err_msg=f"c {act}", **KERNEL_TOL)
        valid = np.arange(3)[:, None] < np.asarray(lengths)[None, :]
        np.testing.assert_allclose(gates[valid], ref["gates"][valid], **KERNEL_TOL)
        dz, dh0, dc0 = _bwd(d, ref, lengths, ACTIVATIONS[act], reverse, plan, mode)
        np.testing.assert_allclose(dz, ref["dz"], err_msg=f"dz {act}", **KERNEL_TOL)
        np.testing.assert_allclose(dh0, ref["dh0"], err_msg=f"dh0 {act}", **KERNEL_TOL)
        np.testing.assert_allclose(dc0, ref["dc0"], err_msg=f"dc0 {act}", **KERNEL_TOL)


def test_one_step_gates_buffer(rng):
    """Without a backward the forward writes step t's gates to the single (1, B, G) row."""
    B, H, lengths = 2, 3, [3, 2]
    d = _data(rng, B, H)
    ref = _reference(d, lengths, "tanh", False)
    plan = K.plan_virtual(B, H, 8, 2)
    h, c = (cuda.to_device(np.zeros((3, B, H))) for _ in range(2))
    gates = cuda.to_device(np.zeros((1, B, 4 * H)))
    K.lstm_seq_fwd_persistent_kernel[1, plan.threads, 0, plan.shared_bytes](
        d["xproj"], np.ascontiguousarray(d["w_hh"].T), d["h0"], d["c0"],
        cuda.to_device(np.asarray(lengths, np.int64)), 0, 0, plan.slices, plan.split, 0, 3,
        h, c, gates)
    np.testing.assert_allclose(h.copy_to_host(), ref["h"], **KERNEL_TOL)
    np.testing.assert_allclose(gates.copy_to_host()[0, 0], ref["gates"][2, 0], **KERNEL_TOL)


# ----------------------------------------------------------------------------- planning
@pytest.mark.parametrize("H", [1, 5, 33, 512])
@pytest.mark.parametrize("slices", [1, 2, 3, 7, 128])
def test_slices_cover_every_unit_once(H, slices):
    slices = min(slices, H)
    starts = [K.slice_start(s, slices, H) for s in range(slices + 1)]
    sizes = np.diff(starts)
    assert starts[0] == 0 and starts[-1] == H
    assert sizes.min() >= 1 and sizes.max() == -(-H // slices)  # balanced, none empty
    assert sizes.max() - sizes.min() <= 1


@pytest.mark.parametrize("B,units,H,threads,want", [
    (1, 1, 128, 256, 32), (1, 4, 512, 256, 32), (16, 4, 512, 256, 4), (64, 4, 512, 256, 1),
    (256, 4, 512, 256, 1), (1, 1, 3, 256, 2), (3, 2, 5, 32, 4), (5, 2, 9, 16, 1)])
def test_split_fills_the_block(B, units, H, threads, want):
    split = K.plan_split(B, units, H, threads)
    assert split == want
    assert threads % split == 0 and split <= min(K.MAX_SPLIT, H)


def test_plan_one_block_per_sm_when_the_weights_fit():
    many = lambda nbytes: 10_000  # noqa: E731
    p = K.plan(16, 512, 4, 132, many)
    assert (p.blocks, p.slices, p.units) == (128, 128, 4)
    assert p.shared_bytes <= K.SHARED_LIMIT
    p = K.plan(1, 128, 4, 132, many)
    assert (p.blocks, p.units, p.split) == (128, 1, 32)


def test_plan_takes_smaller_slices_or_gives_up():
    # float64 H=512: 4 units a block need 66 KiB; 2 units (256 blocks) fit in 48 KiB.
    p = K.plan(16, 512, 8, 132, lambda nbytes: 264)
    assert (p.blocks, p.units) == (256, 2) and p.shared_bytes <= K.SHARED_LIMIT
    assert K.plan(16, 512, 8, 132, lambda nbytes: 132) is None  # not co-resident
    assert K.plan(1, 8192, 4, 132, lambda nbytes: 10_000) is None  # one unit's rows too big


def test_coresident_blocks_in_the_simulator():
    assert K.coresident_blocks(K.lstm_seq_fwd_persistent_kernel, (), 32, 1024) == 1
