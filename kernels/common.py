"""Small ``@njit`` helpers shared by the CPU kernels: step order, row blocks (``part_rows``,
also used to split GEMMs), and the per-row state bookkeeping of padded batches (the
pack_padded_sequence semantics are in the package docstring).  Row arguments may be column
slices of larger arrays.
"""
from numba import njit

from . import KERNEL


@njit(**KERNEL)
def gather_prev(s, s0, p, lengths, out):
    """out[b] = s[p, b] if step p is valid for sequence b, else s0[b] (its initial state)."""
    B = out.shape[0]
    for b in range(B):
        if 0 <= p < lengths[b]:
            out[b] = s[p, b]
        else:
            out[b] = s0[b]


@njit(**KERNEL)
def add_rows(a, b, out):
    """out = a + b for (B, n) arrays, without allocating (``a[i] + b[i]`` would build a
    temporary row)."""
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = a[i, j] + b[i, j]


@njit(**KERNEL)
def keep_valid_rows(src, t, lengths, dst):
    """dst[b] = src[b] where step t is valid for b; padded rows keep dst (the carried value)."""
    for b in range(dst.shape[0]):
        if t < lengths[b]:
            dst[b] = src[b]


@njit(**KERNEL)
def step_index(s, T, reverse):
    """Real time index of the s-th step taken, and the index of the step before it."""
    if reverse:
        return T - 1 - s, T - s
    return s, s - 1


@njit(**KERNEL)
def part_rows(part, parts, B):
    """Rows [lo, hi) of row block ``part`` out of ``parts``, cut at multiples of 4 (the rows
    of the 4-row tile).  The time loops cut by ``seq_rows.step_rows``, which also weighs cuts
    at the 6-row tile."""
    return cut_rows(part, parts, B, 4)


@njit(**KERNEL)
def cut_rows(part, parts, B, multiple):
    """Rows [lo, hi) of row block ``part`` out of ``parts``, cut at multiples of ``multiple``
    and as even as those allow."""
    q = (B + multiple - 1) // multiple
    return (min(multiple * (part * q // parts), B),
            min(multiple * ((part + 1) * q // parts), B))
