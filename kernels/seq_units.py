"""Unit-split time loops for small batches (float32, no projection): threads own blocks of
hidden units instead of batch rows (``lstm_seq_fwd_units`` / ``lstm_seq_bwd_units``), so each
core keeps its share of W_hh in its own L2.  The CPU backend uses them for batches too small to
split by rows (``engine.backends.threads``).

Forward: the cell update is fused into the GEMM's epilogue.  The recurrent weights are packed
by unit block (``pack_gates``): panel p holds the four gates of the UNITS units from UNITS * p
(UNITS: the vector width, kernels.isa), vector q <- gate q.  So after a tile's k loop its
registers hold, for each of its rows, the i, f, g and o pre-activations of UNITS units: the
epilogue adds the input projection, applies the cell (``kernels.gates``, on vectors) and stores
h, c and the gates.  No (B, 4H) recurrent product
ever goes through memory.  One barrier per step: the next product needs every unit of h_t.
For larger batches the row-split loops of ``kernels.seq_rows`` are faster (Zen 5 AVX-512, M:
8.2 against 10.1 ms): their row blocks never wait for each other, and their cell update
streams whole rows where this epilogue visits each row in UNITS-unit pieces
(``python -m bench.kernels loops`` runs both).

Backward: a thread's work for a step needs every gate gradient of the step after (dh = dz @
W_hh sums over all 4H of them), so the product for step t+1 and the cell backward for step t
share one parallel region: one barrier per step (the row-split loop needs none).

Arrays as in the package docstring (``kernels``).
"""
import numpy as np
from numba import njit, prange

from . import KERNEL
from .common import add_rows, gather_prev, keep_valid_rows, step_index
from .gates import lstm_cell_bwd, lstm_cell_fwd_fast
from .gemm import LINE, NR, PREFETCH_K, gemm_packed, load_row
from .isa import GATE_ROWS
from .simd import LANES, fma4, load, load_n, prefetch, splat, store, store_n

UNITS = LANES    # units per gate panel
GNR = 4 * UNITS  # columns of a gate panel: the four gates of UNITS units


@njit(parallel=True, **KERNEL)
def pack_gates(w_hh_t, H):
    """w_hh_t (K, 4H), any strides (W_hh.T) -> (ceil(H/U), K, 4U) float32 with U = UNITS (the
    vector width), the gate columns grouped by unit block: [p, k, q*U + v] = w_hh_t[k, q*H +
    U*p + v], zeros past unit H."""
    K = w_hh_t.shape[0]
    P = (H + UNITS - 1) // UNITS
    wp = np.empty((P, K, GNR), np.float32)
    for p in prange(P):  # once per call, on every core: W_hh is 1 MB at H = 256
        panel, n = wp[p], min(UNITS, H - p * UNITS)
        for q in range(4):  # as in pack_panel, k innermost
            for k in range(K):
                store(panel, k, q * UNITS, load_row(w_hh_t, k, q * H + p * UNITS, n))
    return wp


@njit(**KERNEL)
def _cell_in(x, b, u0, n, H, rec, c_state, act):
    """Cell update of batch row b, units u0..u0+n (n <= UNITS): the pre-activations'
    recurrent part ``rec`` (four gate vectors, in registers) plus x (the step's input
    projection).  Returns (i, f, g, o, c, h)."""
    return lstm_cell_fwd_fast(
        rec[0] + load_n(x, b, u0, n), rec[1] + load_n(x, b, H + u0, n),
        rec[2] + load_n(x, b, 2 * H + u0, n), rec[3] + load_n(x, b, 3 * H + u0, n),
        load_n(c_state, b, u0, n), act)


@njit(**KERNEL)
def _cell_out(b, u0, n, H, valid, cell, h_prev, h_t, c_t, g_t, h_next, c_state):
    """Store ``_cell_in``'s results; a padded step (not valid) writes zeros and carries the
    state."""
    i, f, g, o, c, h = cell
    if not valid:
        z = splat(0.0)
        store_n(h_t, b, u0, z, n)
        store_n(c_t, b, u0, z, n)
        store_n(h_next, b, u0, load_n(h_prev, b, u0, n), n)
        return
    store_n(g_t, b, u0, i, n)
    store_n(g_t, b, H + u0, f, n)
    store_n(g_t, b, 2 * H + u0, g, n)
    store_n(g_t, b, 3 * H + u0, o, n)
    store_n(c_t, b, u0, c, n)
    store_n(c_state, b, u0, c, n)
    store_n(h_t, b, u0, h, n)
    store_n(h_next, b, u0, h, n)


@njit(**KERNEL)
def _gates_row(panel, k):
    """The k-th row of a gate panel: four vectors, gates i, f, g, o of the block's units."""
    return (load(panel, k, 0), load(panel, k, UNITS), load(panel, k, 2 * UNITS),
            load(panel, k, 3 * UNITS))


@njit(**KERNEL)
def _rec4(h, b, panel, K):
    """Rows b..b+3 of h @ panel: each row's four gate vectors (16 accumulators)."""
    z = splat(0.0)
    r0 = r1 = r2 = r3 = (z, z, z, z)
    for k in range(K):
        g = _gates_row(panel, k)
        r0 = fma4(splat(h[b, k]), g, r0)
        r1 = fma4(splat(h[b + 1, k]), g, r1)
        r2 = fma4(splat(h[b + 2, k]), g, r2)
        r3 = fma4(splat(h[b + 3, k]), g, r3)
    return r0, r1, r2, r3


@njit(**KERNEL)
def _rec2(h, b, panel, K):
    """``_rec4`` for rows b, b+1 (8 accumulators: AVX2's 16 registers)."""
    z = splat(0.0)
    r0 = r1 = (z, z, z, z)
    for k in range(K):
        g = _gates_row(panel, k)
        r0 = fma4(splat(h[b, k]), g, r0)
        r1 = fma4(splat(h[b + 1, k]), g, r1)
    return r0, r1


@njit(**KERNEL)
def _rec1(h, b, panel, K):
    """``_rec4`` for row b.  With four FMAs per panel row this streams the panel from L2
    (B = 1), faster than the hardware prefetcher fetches it: the lines PREFETCH_K rows ahead
    are asked for (kernels.gemm.k_loop1)."""
    z = splat(0.0)
    r = (z, z, z, z)
    for k in range(K):
        for q in range(0, GNR, LINE):
            prefetch(panel, k + PREFETCH_K, q, 0)
        r = fma4(splat(h[b, k]), _gates_row(panel, k), r)
    return r


@njit(**KERNEL)
def _cells4(x, panel, K, t, lengths, act, h_prev, h_next, c_state, h_t, c_t, g_t, b, u0, n):
    """Rows b..b+3 of a unit block: the recurrent product, then the cell.  All four rows are
    loaded and computed before any is stored: x and the gates share their layout, and a store
    waiting on the cell math whose address matches a later load in its low 12 bits stalls that
    load (Zen 5 AVX-512: a third slower the other way)."""
    H = c_state.shape[1]
    r0, r1, r2, r3 = _rec4(h_prev, b, panel, K)
    cell0 = _cell_in(x, b, u0, n, H, r0, c_state, act)
    cell1 = _cell_in(x, b + 1, u0, n, H, r1, c_state, act)
    cell2 = _cell_in(x, b + 2, u0, n, H, r2, c_state, act)
    cell3 = _cell_in(x, b + 3, u0, n, H, r3, c_state, act)
    _cell_out(b, u0, n, H, t < lengths[b], cell0, h_prev, h_t, c_t, g_t, h_next, c_state)
    _cell_out(b + 1, u0, n, H, t < lengths[b + 1], cell1, h_prev, h_t, c_t, g_t, h_next,
              c_state)
    _cell_out(b + 2, u0, n, H, t < lengths[b + 2], cell2, h_prev, h_t, c_t, g_t, h_next,
              c_state)
    _cell_out(b + 3, u0, n, H, t < lengths[b + 3], cell3, h_prev, h_t, c_t, g_t, h_next,
              c_state)


@njit(**KERNEL)
def _cells2(x, panel, K, t, lengths, act, h_prev, h_next, c_state, h_t, c_t, g_t, b, u0, n):
    """``_cells4`` for rows b, b+1."""
    H = c_state.shape[1]
    r0, r1 = _rec2(h_prev, b, panel, K)
    cell0 = _cell_in(x, b, u0, n, H, r0, c_state, act)
    cell1 = _cell_in(x, b + 1, u0, n, H, r1, c_state, act)
    _cell_out(b, u0, n, H, t < lengths[b], cell0, h_prev, h_t, c_t, g_t, h_next, c_state)
    _cell_out(b + 1, u0, n, H, t < lengths[b + 1], cell1, h_prev, h_t, c_t, g_t, h_next,
              c_state)


# The rows of one epilogue tile (kernels.isa.GATE_ROWS): as many as keep four gate vectors a
# row in registers.
_cells_tile = _cells4 if GATE_ROWS == 4 else _cells2


@njit(**KERNEL)
def lstm_block_fwd_units(x, wp, t, lengths, act, h_prev, h_next, c_state, h_t, c_t, g_t, p0,
                         p1):
    """Forward step t for every row and unit blocks p0..p1-1 (x: the step's input projection),
    GATE_ROWS rows at a time, then single rows."""
    B, H = c_state.shape
    K = h_prev.shape[1]
    for p in range(p0, p1):
        panel, u0 = wp[p], p * UNITS
        n = min(UNITS, H - u0)
        b = 0
        while b + GATE_ROWS <= B:
            # This tile's rows, the next unit block.
            _prefetch_rows(x, g_t, h_t, c_t, b, GATE_ROWS, u0 + UNITS, H)
            _cells_tile(x, panel, K, t, lengths, act, h_prev, h_next, c_state, h_t, c_t, g_t,
                        b, u0, n)
            b += GATE_ROWS
        while b < B:
            _prefetch_rows(x, g_t, h_t, c_t, b, 1, u0 + UNITS, H)
            cell = _cell_in(x, b, u0, n, H, _rec1(h_prev, b, panel, K), c_state, act)
            _cell_out(b, u0, n, H, t < lengths[b], cell, h_prev, h_t, c_t, g_t, h_next, c_state)
            b += 1


@njit(**KERNEL)
def _prefetch_rows(x, g_t, h_t, c_t, b, rows, u, H):
    """Ask for the lines of rows b..b+rows-1, units u.., that the epilogue will read (x)
    and write (gates, h, c): it visits each row UNITS units at a time, strided lines that the
    hardware prefetcher does not follow (Zen 5 AVX-512: M forward 12.3 -> 9.6 ms)."""
    if u >= H:
        return
    for r in range(b, b + rows):
        for q in range(4):
            prefetch(x, r, q * H + u, 0)
            prefetch(g_t, r, q * H + u, 1)
        prefetch(h_t, r, u, 1)
        prefetch(c_t, r, u, 1)


@njit(parallel=True, **KERNEL)
def lstm_seq_fwd_units(xproj, wp, h0, c0, lengths, act, reverse, h, c, gates, h_state,
                       c_state, parts):
    """Forward through all T steps (float32, no projection); arrays as
    ``kernels.seq_rows.lstm_seq_fwd_rows`` (gates may be a one-step buffer, as there).  wp:
    ``pack_gates(w_hh_t, H)``.  Scratch: h_state (2, B, H) (the state read and the state
    written, swapped every step), c_state (B, H).  ``parts`` threads split the unit blocks
    (1 runs serially).
    """
    T = xproj.shape[0]
    P = wp.shape[0]
    h_state[0] = h0
    c_state[:] = c0
    for s in range(T):
        t = T - 1 - s if reverse else s
        src, dst, g_t = h_state[s % 2], h_state[(s + 1) % 2], gates[min(t, gates.shape[0] - 1)]
        if parts == 1:  # no fork/join: a parallel region per step costs more than a tiny step
            lstm_block_fwd_units(xproj[t], wp, t, lengths, act, src, dst, c_state, h[t], c[t],
                                 g_t, 0, P)
            continue
        for part in prange(parts):
            lstm_block_fwd_units(xproj[t], wp, t, lengths, act, src, dst, c_state, h[t], c[t],
                                 g_t, part * P // parts, (part + 1) * P // parts)


@njit(**KERNEL)
def _units_bwd_scalar(gates, c, c_prev, dh, act, dc, dz, u0, n):
    """The scalar backward cell (``kernels.step``'s row loop) for units u0..u0+n of one batch
    row."""
    H = c.shape[0]
    # Gate slices as separate views: LLVM vectorises this loop, not the same loop written with
    # offsets into whole rows.
    gi, gf, gg, go = (gates[u0:u0 + n], gates[H + u0:H + u0 + n],
                      gates[2 * H + u0:2 * H + u0 + n], gates[3 * H + u0:3 * H + u0 + n])
    zi, zf, zg, zo = (dz[u0:u0 + n], dz[H + u0:H + u0 + n], dz[2 * H + u0:2 * H + u0 + n],
                      dz[3 * H + u0:3 * H + u0 + n])
    cr, cp, dhr, dcr = c[u0:u0 + n], c_prev[u0:u0 + n], dh[u0:u0 + n], dc[u0:u0 + n]
    for v in range(n):
        zi[v], zf[v], zg[v], zo[v], dcr[v] = lstm_cell_bwd(gi[v], gf[v], gg[v], go[v], cr[v],
                                                           cp[v], dhr[v], dcr[v], act)


@njit(**KERNEL)
def lstm_block_bwd_units(dout, gates, c, c0, wp, lengths, act, dh, dc, dz, c_prev, dh_tot,
                         rec, t, p, t_next, p0, p1):
    """Step t for the H-columns of panels p0..p1-1: first dh (the gradient from step t_next,
    -1 for none) = dz[t_next] @ W_hh on those columns, then the cell backward of step t.
    The same bookkeeping as ``kernels.seq_rows.lstm_block_bwd_rows``, on columns instead of
    rows."""
    B, H = dh.shape
    u0, u1 = p0 * NR, min(p1 * NR, H)
    if t_next >= 0:
        gemm_packed(dz[t_next], wp[p0:p1], rec[:, u0:], 0, B, False, None)
        keep_valid_rows(rec[:, u0:u1], t_next, lengths, dh[:, u0:u1])
    if t < 0:
        return
    gather_prev(c[:, :, u0:u1], c0[:, u0:u1], p, lengths, c_prev[:, u0:u1])
    add_rows(dout[t][:, u0:u1], dh[:, u0:u1], dh_tot[:, u0:u1])
    for b in range(B):
        if t < lengths[b]:
            _units_bwd_scalar(gates[t, b], c[t, b], c_prev[b], dh_tot[b], act, dc[b],
                              dz[t, b], u0, u1 - u0)
        else:
            for q in range(4):
                dz[t, b, q * H + u0:q * H + u1] = 0.0


@njit(parallel=True, **KERNEL)
def lstm_seq_bwd_units(dout, gates, c, c0, wp, lengths, act, reverse, dh, dc, dz, c_prev,
                       dh_tot, rec, parts):
    """BPTT through all T steps, arguments as ``kernels.seq_rows.lstm_seq_bwd_rows`` (no
    projection), with wp = ``pack_weights(W_hh)`` and scratch c_prev, dh_tot, rec (B, H).
    ``parts`` threads split the panels of H columns."""
    T = dout.shape[0]
    P = wp.shape[0]
    for s in range(T - 1, -2, -1):  # s = -1: only the last product (dh on the initial state)
        t, p = step_index(s, T, reverse) if s >= 0 else (-1, -1)
        t_next = step_index(s + 1, T, reverse)[0] if s + 1 < T else -1
        if parts == 1:
            lstm_block_bwd_units(dout, gates, c, c0, wp, lengths, act, dh, dc, dz, c_prev,
                                 dh_tot, rec, t, p, t_next, 0, P)
            continue
        for part in prange(parts):
            lstm_block_bwd_units(dout, gates, c, c0, wp, lengths, act, dh, dc, dz, c_prev,
                                 dh_tot, rec, t, p, t_next, part * P // parts,
                                 (part + 1) * P // parts)
