"""kernels.common: the row blocks that split batches and GEMMs over threads."""
import itertools

import pytest

from engine.kernels.common import part_rows
from engine.kernels.seq_rows import block_cost, step_rows


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


@pytest.mark.parametrize("B", [0, 1, 5, 8, 12, 13, 36, 64, 101])
@pytest.mark.parametrize("parts", [1, 2, 3])
def test_step_rows_tile_the_batch_and_never_cost_more_than_a_cut_at_4(B, parts):
    blocks = [step_rows(p, parts, B) for p in range(parts)]
    assert blocks[0][0] == 0 and blocks[-1][1] == B
    assert all(lo <= hi == nxt for (lo, hi), (nxt, _) in itertools.pairwise(blocks))
    at4 = [part_rows(p, parts, B) for p in range(parts)]
    assert (max(block_cost(hi - lo) for lo, hi in blocks)
            <= max(block_cost(hi - lo) for lo, hi in at4))


def test_step_rows_give_12_rows_one_6_row_tile_each():
    """The case the cost model was fitted to: 4 + 8 runs two tiles in its larger block."""
    assert [step_rows(p, 2, 12) for p in range(2)] == [(0, 6), (6, 12)]
    assert [step_rows(p, 2, 64) for p in range(2)] == [(0, 32), (32, 64)]
    assert [step_rows(p, 2, 11) for p in range(2)] == [(0, 6), (6, 11)]  # test_seq_rows's
    assert [step_rows(p, 3, 11) for p in range(3)] == [(0, 4), (4, 8), (8, 11)]
    assert block_cost(8) > block_cost(6) + 2  # 4 + 4 rows: one tile pass more than 6 rows
