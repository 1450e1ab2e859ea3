"""Small helpers shared by the CPU time loops (``kernels.cpu``, ``kernels.gemm``): step order,
row blocks, and the per-row state bookkeeping of padded batches (see kernels.cpu's docstring for
the pack_padded_sequence semantics).  Row arguments may be column slices of larger arrays.
"""
from numba import njit

from kernels import KERNEL


@njit(**KERNEL)
def gather_prev_cpu(s, s0, p, lengths, out):
    """out[b] = s[p, b] if step p is valid for sequence b, else s0[b] (its initial state)."""
    B = out.shape[0]
    for b in range(B):
        if 0 <= p < lengths[b]:
            out[b] = s[p, b]
        else:
            out[b] = s0[b]


@njit(**KERNEL)
def add_cpu(a, b, out):
    """out = a + b for (B, n) arrays, without allocating (``a[i] + b[i]`` would build a
    temporary row)."""
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = a[i, j] + b[i, j]


@njit(**KERNEL)
def keep_valid_rows_cpu(src, t, lengths, dst):
    """dst[b] = src[b] where step t is valid for b; padded rows keep dst (the carried value)."""
    for b in range(dst.shape[0]):
        if t < lengths[b]:
            dst[b] = src[b]


@njit(inline="always", **KERNEL)
def step_index(s, T, reverse):
    """Real time index of the s-th step taken, and the index of the step before it."""
    if reverse:
        return T - 1 - s, T - s
    return s, s - 1


@njit(inline="always", **KERNEL)
def part_rows(part, parts, B):
    """Rows [lo, hi) of row block ``part`` out of ``parts``, cut at multiples of 4: the float32
    GEMM (``kernels.gemm``) streams its weights once per 4 rows, so a 6 + 6 split of 12 rows
    streams them 3 times per block and 8 + 4 only twice."""
    q = (B + 3) // 4
    return min(4 * (part * q // parts), B), min(4 * ((part + 1) * q // parts), B)
