"""kernels.gemm: the float32 GEMM against float64 NumPy: plain, accumulating and biased
products, transposed views, packing layouts, and matmul_into inside @njit code."""
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from engine.kernels import gemm as gemm_module
from engine.kernels.gemm import (KC, NR, PACK_A_PANELS, PARALLEL_PACK_PANELS, STREAM_C_BYTES, gemm,
                                 matmul_into, pack, pack_weights, panels, six_row_tiles)
from tests.helpers import GEMM_TOL, NEEDS_ENGINE_GEMM, rel_err

pytestmark = NEEDS_ENGINE_GEMM

F32 = np.float32
_STREAMED = int((STREAM_C_BYTES / 4) ** 0.5) + 6  # an output too large for the caches
SHAPES = [(1, 1, 1), (3, 5, 7), (4, 64, 256), (17, 33, 132), (5, 300, 70), (130, 513, 65),
          (9, KC + 1, 129),  # K > KC (packed in blocks), N not a multiple of 64, M not of 4
          (_STREAMED, 9, _STREAMED)]  # its tiles prefetched (stream_c)


@pytest.mark.parametrize("parts", [1, 2])
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_gemm_matches_float64(rng, M, K, N, parts):
    a = rng.standard_normal((M, K)).astype(F32)
    b = rng.standard_normal((K, N)).astype(F32)
    want = a.astype(np.float64) @ b
    c = np.full((M, N), np.nan, F32)  # every element must be written
    gemm(a, b, c, False, parts, None)  # None spelt out, as the callers do
    assert rel_err(c, want) < GEMM_TOL

    c0 = rng.standard_normal((M, N)).astype(F32)
    c = c0.copy()
    gemm(a, b, c, True, parts, None)
    assert rel_err(c, c0 + want) < GEMM_TOL

    bias = rng.standard_normal((1, N)).astype(F32)
    c = np.full((M, N), np.nan, F32)
    gemm(a, b, c, False, parts, bias)
    assert rel_err(c, want + bias) < GEMM_TOL


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
                                   (37, 300, NR * PACK_A_PANELS - 5)])  # a's blocks copied
@pytest.mark.parametrize("a_step", [1, 2])  # a's columns contiguous, or strided too
def test_gemm_takes_transposed_views(rng, M, K, N, a_step):
    """a.T @ b (the weight gradients) and a @ W.T (the input projection) need no copies."""
    a_t = rng.standard_normal((K, M * a_step)).astype(F32)[:, ::a_step]  # a = a_t.T
    w = rng.standard_normal((N, K)).astype(F32)    # b = w.T
    c = np.full((M, N), np.nan, F32)
    gemm(a_t.T, w.T, c, False, 2, None)
    assert rel_err(c, a_t.T.astype(np.float64) @ w.T) < GEMM_TOL


def test_every_layout_runs_on_one_compiled_version(rng):
    """x, W.T, dz.T, slices, read-only arrays, with and without a bias: no new compile for any
    of them (each took 1.5-2 s), and the right product from each."""
    a = rng.standard_normal((40, 24)).astype(F32)
    b = rng.standard_normal((24, 30)).astype(F32)
    sealed_a, sealed_b = a.copy(), b.copy()
    sealed_a.flags.writeable = sealed_b.flags.writeable = False
    bias = rng.standard_normal((1, 30)).astype(F32)
    c = np.empty((40, 30), F32)
    gemm(a, b, c, False, 1, None)
    packs = len(pack.overloads)
    for x in (a, np.asfortranarray(a), sealed_a, np.repeat(a, 2, axis=1)[:, ::2]):
        for w in (b, np.asfortranarray(b), sealed_b, np.ascontiguousarray(b.T).T[:, :]):
            for out in (c, np.zeros((40, 31), F32)[:, :30]):
                for bias_row in (None, bias):
                    gemm(x, w, out, False, 2, bias_row)
                    want = a.astype(np.float64) @ b + (0 if bias_row is None else bias_row)
                    assert rel_err(out, want) < GEMM_TOL
            pack_weights(w)
    assert len(gemm_module._gemm.overloads) == 1
    assert len(pack.overloads) == packs


def test_gemm_does_not_write_outside_its_rows_and_columns(rng):
    a, b = rng.standard_normal((6, 9)).astype(F32), rng.standard_normal((9, 20)).astype(F32)
    big = np.full((8, 30), 7.0, F32)
    gemm(a, b, big[1:7, 3:23], False, 1, None)  # a view: rows strided, 20 of 30 columns
    assert rel_err(big[1:7, 3:23], a.astype(np.float64) @ b) < GEMM_TOL
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


def test_packed_and_plain_matmul_into_agree(rng):
    a = rng.standard_normal((6, 40)).astype(F32)
    w = rng.standard_normal((40, 100)).astype(F32)
    bp = pack_weights(w)
    c1, c2 = np.empty((6, 100), F32), np.empty((6, 100), F32)
    @njit
    def both(a, w, bp, c1, c2):
        matmul_into(a, w, c1)
        matmul_into(a, bp, c2)
    both(a, w, bp, c1, c2)
    assert rel_err(c2, c1.astype(np.float64)) < GEMM_TOL


def test_threads_that_call_gemm_first_together_all_get_the_product(tmp_path):
    """The first call compiles and then locks the kernel's types; threads that make it at the
    same time wait for that rather than fail (a fresh process with an empty cache, so that the
    others arrive while the first compiles)."""
    script = tmp_path / "first_calls.py"
    script.write_text(
        "import threading, numpy as np\n"
        "from engine.kernels.gemm import gemm\n"
        "rng = np.random.default_rng(0)\n"
        "a, b = rng.standard_normal((2, 20, 20)).astype(np.float32)\n"
        "outs = [np.zeros((20, 20), np.float32) for _ in range(4)]\n"
        "threads = [threading.Thread(target=gemm, args=(a, b, c, False, 1)) for c in outs]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "assert all(np.allclose(c, a @ b, atol=1e-4) for c in outs), 'a thread failed'\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Exception" not in done.stderr, done.stderr[-2000:]
