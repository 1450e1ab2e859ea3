"""kernels.common: the row blocks that split batches and GEMMs over threads."""
import itertools

import pytest

from engine.kernels.common import part_rows


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
