"""engine.backends.cpu: each of its strategies (row blocks over threads, threads over hidden
units, BLAS with unpacked weights for short single sequences) against torch.nn.LSTM, and which
one runs when."""
import numpy as np
import pytest
import torch

import engine
import engine.backends.cpu as backends
from engine.backends.cpu import GEMV_MAX_STEPS
from engine.backends.threads import MIN_ROWS_PER_THREAD, batch_parts
from engine.kernels.isa import ENGINE_GEMM
from tests.helpers import assert_pairs_close, run_both

torch.set_num_threads(1)


def test_large_batch_uses_parallel_row_blocks_and_matches_torch(rng):
    """B >= 2 * MIN_ROWS_PER_THREAD: the time loop splits the batch over threads."""
    B = 2 * MIN_ROWS_PER_THREAD + 3
    if batch_parts(B) < 2:
        pytest.skip("one Numba thread: nothing to split")
    pairs = run_both(rng, 5, B, 4, 6, 2, True, False, False, True, "float32",
                     lengths=rng.integers(1, 6, B))
    assert_pairs_close(pairs, "float32")


@pytest.mark.parametrize("B,H,lengths", [
    (2, 200, [6, 3]),   # small batch, wide layer: threads split the hidden units (fwd + bwd)
    (40, 20, None),     # 40 rows: threads split the batch
])
def test_threaded_time_loops_match_torch(rng, B, H, lengths):
    """Float32 sizes large enough for the engine's threaded kernels (engine.backends.threads)."""
    lengths = None if lengths is None else np.array(lengths)
    pairs = run_both(rng, 6, B, 7, H, 2, True, False, False, True, "float32", lengths=lengths)
    assert_pairs_close(pairs, "float32")


@pytest.mark.parametrize("T", [1, GEMV_MAX_STEPS, GEMV_MAX_STEPS + 1])
@pytest.mark.parametrize("unbatched", [False, True])
def test_single_short_sequence_matches_torch(rng, T, unbatched):
    """B = 1 (generation, one token at a time): up to GEMV_MAX_STEPS the float32 products run
    on BLAS with the weights as they are, from one step more on the packed kernels."""
    pairs = run_both(rng, T, 1, 5, 40, 2, True, False, unbatched, True, "float32")
    assert_pairs_close(pairs, "float32")


def test_single_short_sequence_packs_no_weights(rng, monkeypatch):
    """Up to GEMV_MAX_STEPS the weights stay as they are, for BLAS; from one step more they are
    packed for the engine's GEMM, on CPUs that have it (kernels.isa.ENGINE_GEMM)."""
    packed = []
    for name in ("pack_weights", "pack_gates"):
        real = getattr(backends, name)
        monkeypatch.setattr(backends, name,
                            lambda *a, real=real, name=name: packed.append(name) or real(*a))
    m = engine.LSTM(5, 40, num_layers=2, seed=0)
    longer = ["pack_gates", "pack_weights"] if ENGINE_GEMM else []
    for T, expected in [(GEMV_MAX_STEPS, []), (GEMV_MAX_STEPS + 1, longer)]:
        packed.clear()
        out, _ = m(rng.standard_normal((T, 1, 5)).astype(np.float32))
        m.backward(rng.standard_normal(out.shape).astype(np.float32))
        assert sorted(set(packed)) == expected, T


@pytest.mark.parametrize("bias_dtype", [None, np.float32, np.float64])
@pytest.mark.parametrize("b_layout", ["C", "W.T"])
def test_matmul_takes_any_layout_and_bias_dtype(rng, b_layout, bias_dtype):
    """The float32 product runs on one compiled GEMM (kernels.gemm); a float64 bias row is
    cast for it rather than refused."""
    a = rng.standard_normal((9, 7)).astype(np.float32)
    w = rng.standard_normal((11, 7)).astype(np.float32)
    b = np.ascontiguousarray(w.T) if b_layout == "C" else w.T
    bias = None if bias_dtype is None else rng.standard_normal(11).astype(bias_dtype)
    out = backends.CPUBackend().matmul(a, b, bias=bias)
    want = a.astype(np.float64) @ b + (0 if bias is None else bias)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
