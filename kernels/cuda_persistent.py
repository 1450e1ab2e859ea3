"""Persistent CUDA kernels: one launch runs all T steps of one layer and direction.

The per-step kernels of ``kernels.cuda`` cost one to three host launches a step; these run the
whole time loop on the device (Diamos et al. 2016, "Persistent RNNs"; cuDNN's persistent
algorithms).  Layout and semantics are those of every time-loop kernel (the package docstring:
time-major, G = 4H, gate order i, f, g, o, ``lengths`` with pack_padded_sequence semantics);
no projection (P = H).  The cell math is ``kernels.gates``, as everywhere.

Decomposition.  The H hidden units are cut into ``slices`` contiguous unit slices, slice s
owning units [slice_start(s), slice_start(s + 1)) (sizes differ by at most one); block b of
the grid owns slices b, b + nblocks, ...: one slice on a GPU (slices == blocks), several in
the simulator (below).  A block stages its slices' share of W_hh in shared memory once, then
loops over the steps:

- forward, step t: every block reads the whole h_prev (B, H), from h[p] or h0, and its
  weights ``w_s[gate, u, k] = W_hh[gate*H + j0 + u, k]`` (4 * units rows of H), and writes
  h[t], c[t] and gates[t] of its own units only; then the grid synchronises, since step t+1
  reads every block's h[t].  One grid barrier per step.
- backward, step t, two phases.  Phase 1 (pointwise, own units): the cell backward from
  dout[t] + dh and dc, writing dz[t] (all four gates of its units) and dc.  Grid barrier:
  phase 2 reads every block's dz[t].  Phase 2: dh_prev[b, j] = sum_g dz[t, b, g] W_hh[g, j]
  for the block's own units j, i.e. the W_hh *columns* of its units, staged as
  ``w_s[gate, u, m] = W_hh[gate*H + m, j0 + u]`` (the same 4 * units rows of H as the
  forward's, transposed).  dh and dc of a unit are only ever read and written by the block
  owning it, so phase 2 of step t and phase 1 of step t+1 need only a block barrier.  One
  grid barrier per step.

Inside a block, a step's work is B * units *items* (b, u), each four dot products of length H
(forward: h_prev[b] against the unit's four gate rows; backward phase 2: the four gate
segments of dz[t, b] against the unit's four column segments).  ``split`` threads share an
item (a power of two, at most 32: thread ``part`` takes k = part, part + split, ...: within a
warp consecutive k, so global reads coalesce and shared reads hit distinct banks), reduced by a
tree in shared memory.  ``plan_split`` makes items * split fill the block when B * units is
small (B = 1: split = 32), and split = 1 (one thread per item, no reduction) when it is large.
Weight rows are padded to an odd length (``padded``) so the units of one warp fall in
different banks.

Launch.  ``cuda.cg.this_grid().sync()`` makes Numba launch the kernels cooperatively: all
blocks must be co-resident (``max_cooperative_grid_blocks``, see ``coresident_blocks``) and
every thread must reach every barrier, so no thread returns early.  Other blocks' h[t] and
dz[t] are read with ordinary loads after the barrier: the grid barrier orders memory for the
whole grid (CUDA's cooperative-groups guarantee), which no simulator run can check.
``plan`` picks the slices: one block per SM when the weights fit (each block then has its
SM's shared memory and reads h_prev once per SM), more, smaller blocks when they do not, and
None (the caller falls back) when even single-unit slices do not fit in ``SHARED_LIMIT`` or
cannot all be co-resident.
Dynamic shared memory is kept within the 48 KiB that needs no opt-in attribute.

Steps.  ``s0, s1`` (forward) and ``r0, r1`` (backward half-steps: r = 2q + phase for backward
step q) select a range of the loop, (0, T) and (0, 2T) for a whole sequence.  A launch per step
(or half-step) is a host-synchronised grid: the tests use it to run several *real* blocks in
the simulator, which runs blocks one after another and whose grid barrier is only a block
barrier (its cooperative grids have one block).  A whole-sequence launch there has one block
that owns several slices (``plan_virtual``), so the same slicing code runs; what the simulator
cannot show is several blocks meeting at a grid barrier, and the speed.
"""
import math
from collections import namedtuple

from numba import cuda, njit

from . import KERNEL
from .gates import lstm_cell_bwd, lstm_cell_fwd

# Threads of a block on a GPU; the simulator (one Python thread per CUDA thread) uses fewer.
THREADS = 256
MAX_SPLIT = 32  # one warp per item at most: the reduction stays within a warp's k range
# Dynamic shared memory a block may use without cudaFuncSetAttribute (which Numba does not set).
SHARED_LIMIT = 48 * 1024

Plan = namedtuple("Plan", "blocks slices units split threads shared_bytes")


# ----------------------------------------------------------------------------- slicing
@njit(inline="always", **KERNEL)
def slice_start(s, slices, H):
    """First unit of slice s of H units cut into ``slices`` (s = slices gives H)."""
    return (s * H) // slices


@njit(inline="always", **KERNEL)
def ceil_div(a, b):
    return (a + b - 1) // b


def padded(H):
    """Row length of a staged weight row: odd, so that the same k of different units falls in
    different shared-memory banks."""
    return H | 1


def plan_split(B, units, H, threads):
    """Threads per item: the largest power of two <= min(MAX_SPLIT, H, threads // (B*units)),
    at least 1."""
    room = min(MAX_SPLIT, H, threads // max(1, B * units))
    return 1 << (room.bit_length() - 1) if room >= 1 else 1


def shared_bytes(slices_per_block, units, H, threads, itemsize):
    """Dynamic shared memory of a block: its slices' 4 * units padded weight rows and the
    (threads, 4) reduction area."""
    return (slices_per_block * 4 * units * padded(H) + 4 * threads) * itemsize


def plan(B, H, itemsize, sm_count, max_blocks, threads=THREADS):
    """The Plan of a GPU launch (slices == blocks), or None when no slicing fits.

    max_blocks(shared_bytes) -> how many blocks can be co-resident (``coresident_blocks``).
    Tries ceil(H / sm_count) units a block (one block per SM) first, then fewer units (more
    blocks: smaller weight slices) while the weights do not fit.
    """
    for units in range(math.ceil(H / sm_count), 0, -1):
        slices = math.ceil(H / units)
        units = math.ceil(H / slices)  # the largest slice of the balanced cut
        nbytes = shared_bytes(1, units, H, threads, itemsize)
        if nbytes <= SHARED_LIMIT and slices <= max_blocks(nbytes):
            return Plan(slices, slices, units, plan_split(B, units, H, threads), threads,
                        nbytes)
    return None


def plan_virtual(B, H, itemsize, slices, blocks=1, threads=32):
    """A Plan of ``blocks`` blocks owning ``slices`` slices (several a block): the
    simulator's whole-sequence launch (one block), and the tests' multi-block launches."""
    slices = min(slices, H)
    units = math.ceil(H / slices)
    per_block = math.ceil(slices / blocks)
    return Plan(blocks, slices, units, plan_split(B, units, H, threads), threads,
                shared_bytes(per_block, units, H, threads, itemsize))


def coresident_blocks(kernel, args, threads, nbytes):
    """The most blocks of ``kernel`` (compiled for ``args``' types) that can run at once with
    ``threads`` threads and ``nbytes`` of dynamic shared memory: a cooperative launch's limit.
    The simulator answers 1 (its grid barrier is a block barrier)."""
    if hasattr(kernel, "typeof_pyval"):
        overload = kernel.compile(tuple(kernel.typeof_pyval(a) for a in args))
        return overload.max_cooperative_grid_blocks(threads, nbytes)
    return kernel.overloads[None].max_cooperative_grid_blocks(threads)  # the simulator: 1


# ----------------------------------------------------------------------------- device helpers
@cuda.jit(device=True, inline="always")
def _stage_rows(smem, base, w, by_column, H, j0, n_units, units, tid, nt):
    """smem[base + (gate*units + u)*padded(H) + k] = the weight of unit j0+u, gate, input k:
    w_hh_t[k, gate*H + j0 + u] (forward: ``by_column`` 0, w is w_hh_t (H,G)) or
    w_hh[gate*H + k, j0 + u] (backward: 1, w is w_hh (G,H), read down its columns).
    Slots of units past n_units are left unwritten (never read)."""
    ps = H | 1
    for e in range(tid, 4 * n_units * H, nt):
        k = e % H
        u = (e // H) % n_units
        gate = e // (H * n_units)
        if by_column:
            v = w[gate * H + k, j0 + u]
        else:
            v = w[k, gate * H + j0 + u]
        smem[base + (gate * units + u) * ps + k] = v


@cuda.jit(device=True, inline="always")
def _reduce4(smem, red, slot, part, split, active, a0, a1, a2, a3):
    """Sum the four accumulators over the ``split`` threads of an item (tree in shared memory
    at red + (slot*split + part)*4); the sums are valid in the part-0 thread.  Every thread of
    the block must call it (it holds block barriers)."""
    if split == 1:
        return a0, a1, a2, a3
    r = red + (slot * split + part) * 4
    if active:
        smem[r] = a0
        smem[r + 1] = a1
        smem[r + 2] = a2
        smem[r + 3] = a3
    cuda.syncthreads()
    stride = split // 2
    while stride > 0:
        if active and part < stride:
            o = r + 4 * stride
            smem[r] += smem[o]
            smem[r + 1] += smem[o + 1]
            smem[r + 2] += smem[o + 2]
            smem[r + 3] += smem[o + 3]
        cuda.syncthreads()
        stride //= 2
    s0, s1, s2, s3 = smem[r], smem[r + 1], smem[r + 2], smem[r + 3]
    cuda.syncthreads()  # the next pass overwrites the area
    return s0, s1, s2, s3


@cuda.jit(device=True, inline="always")
def _dot4_h(h, h0, p, valid, b, smem, w, gs, part, split, H):
    """Partial sums over k = part, part+split, ... of h_prev[b, k] * w_s[gate, u, k] for the
    four gates (w: the unit's gate-0 row, gs: the gate stride); h_prev[b] is h[p, b] when
    ``valid`` else h0[b].  split <= H, so every part has a first term (which types the sums)."""
    k = part
    x = h[p, b, k] if valid else h0[b, k]
    a0, a1, a2, a3 = x * smem[w + k], x * smem[w + gs + k], x * smem[w + 2 * gs + k], \
        x * smem[w + 3 * gs + k]
    for k in range(part + split, H, split):
        x = h[p, b, k] if valid else h0[b, k]
        a0 += x * smem[w + k]
        a1 += x * smem[w + gs + k]
        a2 += x * smem[w + 2 * gs + k]
        a3 += x * smem[w + 3 * gs + k]
    return a0, a1, a2, a3


@cuda.jit(device=True, inline="always")
def _dot4_dz(dz, t, b, smem, w, gs, part, split, H):
    """Partial sums over m = part, part+split, ... of dz[t, b, gate*H + m] * w_s[gate, u, m]
    for the four gates (the backward's recurrent product, one gate segment each)."""
    m = part
    a0, a1, a2, a3 = dz[t, b, m] * smem[w + m], dz[t, b, H + m] * smem[w + gs + m], \
        dz[t, b, 2 * H + m] * smem[w + 2 * gs + m], dz[t, b, 3 * H + m] * smem[w + 3 * gs + m]
    for m in range(part + split, H, split):
        a0 += dz[t, b, m] * smem[w + m]
        a1 += dz[t, b, H + m] * smem[w + gs + m]
        a2 += dz[t, b, 2 * H + m] * smem[w + 2 * gs + m]
        a3 += dz[t, b, 3 * H + m] * smem[w + 3 * gs + m]
    return a0, a1, a2, a3


@cuda.jit(device=True, inline="always")
def _step_index(s, T, reverse):
    """(t, p) of forward step s: its time index and that of the step before it."""
    if reverse:
        return T - 1 - s, T - s
    return s, s - 1


# ----------------------------------------------------------------------------- forward
@cuda.jit(device=True, inline="always")
def _fwd_slice_step(xproj, h0, c0, lengths, act, t, p, j0, n_units, units, smem, w_base,
                    red, split, h, c, gates):
    """Step t of one slice: every item (b, u) of its B * n_units, ``split`` threads each."""
    B, H = c.shape[1], c.shape[2]
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    part, slot, slots = tid % split, tid // split, nt // split
    gs = units * (H | 1)
    for first in range(0, B * n_units, slots):  # the same trip count in every thread
        item = first + slot
        active = slot < slots and item < B * n_units
        a0 = a1 = a2 = a3 = smem[0]  # typed placeholders for idle threads, never stored
        b = item % B
        u = item // B
        if active:
            valid = 0 <= p < lengths[b]
            a0, a1, a2, a3 = _dot4_h(h, h0, p, valid, b, smem, w_base + u * (H | 1), gs, part,
                                     split, H)
        a0, a1, a2, a3 = _reduce4(smem, red, slot, part, split, active, a0, a1, a2, a3)
        if active and part == 0:
            j = j0 + u
            if t >= lengths[b]:
                h[t, b, j] = 0
                c[t, b, j] = 0
            else:
                c_prev = c[p, b, j] if 0 <= p < lengths[b] else c0[b, j]
                i, f, g, o, c_new, h_new = lstm_cell_fwd(
                    xproj[t, b, j] + a0, xproj[t, b, H + j] + a1, xproj[t, b, 2 * H + j] + a2,
                    xproj[t, b, 3 * H + j] + a3, c_prev, act)
                tg = min(t, gates.shape[0] - 1)  # a one-step gates buffer: no backward follows
                gates[tg, b, j] = i
                gates[tg, b, H + j] = f
                gates[tg, b, 2 * H + j] = g
                gates[tg, b, 3 * H + j] = o
                c[t, b, j] = c_new
                h[t, b, j] = h_new


@cuda.jit
def lstm_seq_fwd_persistent_kernel(xproj, w_hh_t, h0, c0, lengths, act, reverse, slices, split,
                                   s0, s1, h, c, gates):
    """Forward steps s0..s1-1 (0..T-1: the whole sequence) of one layer and direction.

    xproj (T,B,G), w_hh_t (H,G) W_hh transposed, h0, c0 (B,H), lengths (B,) int64 read;
    act (``kernels.ACT_*``), reverse (0/1), slices (unit slices, >= the grid's blocks),
    split (threads per item, a power of two <= min(32, H), dividing the block).
    Written: h, c (T,B,H) at every step run (zeros at padded steps), gates (T,B,G) or a
    (1,B,G) buffer when no backward follows.  h and c are read at p, written at t.
    Dynamic shared memory: ``shared_bytes(ceil(slices / blocks), ceil(H / slices), H,
    threads, itemsize)``.  Launched cooperatively (grid barrier between steps).
    """
    T, B, H = c.shape
    units = ceil_div(H, slices)
    nb, blk = cuda.gridDim.x, cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    smem = cuda.shared.array(0, dtype=h.dtype)
    rows = 4 * units * (H | 1)  # one slice's staged weights
    red = ceil_div(slices, nb) * rows
    ls = 0
    for s in range(blk, slices, nb):
        j0 = slice_start(s, slices, H)
        _stage_rows(smem, ls * rows, w_hh_t, 0, H, j0, slice_start(s + 1, slices, H) - j0,
                    units, tid, nt)
        ls += 1
    cuda.syncthreads()
    grid = cuda.cg.this_grid()
    for step in range(s0, s1):
        t, p = _step_index(step, T, reverse)
        ls = 0
        for s in range(blk, slices, nb):
            j0 = slice_start(s, slices, H)
            _fwd_slice_step(xproj, h0, c0, lengths, act, t, p, j0,
                            slice_start(s + 1, slices, H) - j0, units, smem, ls * rows, red,
                            split, h, c, gates)
            ls += 1
        grid.sync()  # step t+1 reads every block's h[t]


# ----------------------------------------------------------------------------- backward
@cuda.jit(device=True, inline="always")
def _bwd_cell_slice(gates, c, c0, dout, lengths, act, t, p, j0, n_units, dh, dc, dz):
    """Phase 1 of a backward step for one slice: the cell backward of its units, one thread
    per (b, u).  dz[t] of its units written (zero at padded rows); dc updated (kept at padded
    rows)."""
    B, H = c.shape[1], c.shape[2]
    for item in range(cuda.threadIdx.x, B * n_units, cuda.blockDim.x):
        b = item % B
        j = j0 + item // B
        if t >= lengths[b]:
            dz[t, b, j] = 0
            dz[t, b, H + j] = 0
            dz[t, b, 2 * H + j] = 0
            dz[t, b, 3 * H + j] = 0
        else:
            c_prev = c[p, b, j] if 0 <= p < lengths[b] else c0[b, j]
            di, df, dg, do, dc_prev = lstm_cell_bwd(
                gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j],
                gates[t, b, 3 * H + j], c[t, b, j], c_prev, dout[t, b, j] + dh[b, j], dc[b, j],
                act)
            dz[t, b, j] = di
            dz[t, b, H + j] = df
            dz[t, b, 2 * H + j] = dg
            dz[t, b, 3 * H + j] = do
            dc[b, j] = dc_prev


@cuda.jit(device=True, inline="always")
def _bwd_product_slice(dz, lengths, t, j0, n_units, units, smem, w_base, red, split, dh):
    """Phase 2 for one slice: dh[b, j] = dz[t, b, :] @ W_hh[:, j] for its units j, written
    where step t is valid for b (padded rows keep dh, the carried gradient)."""
    B, H = dh.shape
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    part, slot, slots = tid % split, tid // split, nt // split
    gs = units * (H | 1)
    for first in range(0, B * n_units, slots):
        item = first + slot
        active = slot < slots and item < B * n_units
        a0 = a1 = a2 = a3 = smem[0]
        b = item % B
        u = item // B
        if active:
            a0, a1, a2, a3 = _dot4_dz(dz, t, b, smem, w_base + u * (H | 1), gs, part, split, H)
        a0, a1, a2, a3 = _reduce4(smem, red, slot, part, split, active, a0, a1, a2, a3)
        if active and part == 0 and t < lengths[b]:
            dh[b, j0 + u] = a0 + a1 + a2 + a3


@cuda.jit
def lstm_seq_bwd_persistent_kernel(gates, c, c0, dout, w_hh, lengths, act, reverse, slices,
                                   split, r0, r1, dh, dc, dz):
    """BPTT half-steps r0..r1-1 (0..2T-1: the whole sequence) of the latest forward.

    Half-step r is phase r % 2 of backward step q = r // 2, which undoes forward step T-1-q.
    gates (T,B,G), c (T,B,H), c0 (B,H), dout (T,B,H), w_hh (G,H) W_hh as stored, lengths (B,)
    int64 read; act, reverse, slices, split as in the forward kernel.
    Updated: dh, dc (B,H), the gradients on h_n, c_n on entry and on h0, c0 on exit.
    Written: dz (T,B,G), zero at padded steps.  Dynamic shared memory as the forward's.
    """
    T, B, H = c.shape
    units = ceil_div(H, slices)
    nb, blk = cuda.gridDim.x, cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    smem = cuda.shared.array(0, dtype=dz.dtype)
    rows = 4 * units * (H | 1)
    red = ceil_div(slices, nb) * rows
    ls = 0
    for s in range(blk, slices, nb):
        j0 = slice_start(s, slices, H)
        _stage_rows(smem, ls * rows, w_hh, 1, H, j0, slice_start(s + 1, slices, H) - j0,
                    units, tid, nt)
        ls += 1
    cuda.syncthreads()
    grid = cuda.cg.this_grid()
    for r in range(r0, r1):
        t, p = _step_index(T - 1 - r // 2, T, reverse)
        ls = 0
        for s in range(blk, slices, nb):
            j0 = slice_start(s, slices, H)
            n_units = slice_start(s + 1, slices, H) - j0
            if r % 2 == 0:
                _bwd_cell_slice(gates, c, c0, dout, lengths, act, t, p, j0, n_units, dh, dc,
                                dz)
            else:
                _bwd_product_slice(dz, lengths, t, j0, n_units, units, smem, ls * rows, red,
                                   split, dh)
            ls += 1
        if r % 2 == 0:
            grid.sync()  # phase 2 reads every block's dz[t]
        else:
            cuda.syncthreads()  # phase 1 of the next step reads this block's dh
