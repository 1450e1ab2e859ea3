"""The sections of ``python -m bench.kernels``: each builds its inputs, checks every variant
against the reference, then times the variants side by side (``bench.kernels.time_variants``).
Imported only after ``bench.kernels`` has pinned the thread counts."""
import numba
import numpy as np
from numba import njit

import engine
from bench.kernels import check_close, table, time_variants
from engine.backends import threads
from engine.kernels import ACT_FAST, ACT_TANH, KERNEL
from engine.kernels.common import cut_rows
from engine.kernels.gemm import (LANES, NR, gemm_packed, pack_weights, six_row_tiles, tile1, tile4,
                                 tile6, zero_row)
from engine.kernels.gemm import gemm as engine_gemm
from engine.kernels.isa import TILE_ROWS
from engine.kernels.reference import (lstm_bwd_packed_reference, lstm_fwd_packed_reference,
                                      lstm_step_bwd_reference, lstm_step_fwd_reference)
from engine.kernels.seq_rows import lstm_seq_bwd_rows, lstm_seq_fwd_rows, step_rows
from engine.kernels.seq_units import lstm_seq_bwd_units, lstm_seq_fwd_units, pack_gates
from engine.kernels.simd import fma, load, splat, store
from engine.kernels.step import (lstm_step_bwd_scalar, lstm_step_bwd_vec, lstm_step_fwd_scalar,
                                 lstm_step_fwd_vec)

F32 = np.float32
# Checks before timing: relative to the largest entry of the float64 result.
PRODUCT_RTOL = 1e-5   # float32 sums of up to 6400 products
CELL_RTOL = 1e-5      # the fast float32 cell against float64
LOOP_RTOL = 1e-4      # 100 float32 steps against float64 (TOL[float32] of the tests)


def _rng():
    return np.random.default_rng(0)


# ---------------------------------------------------------------------------- gemm
def gemm(repeats):
    """The engine's float32 GEMM against NumPy's SGEMM, same operands and threads."""
    engine.get_backend("cpu")  # configures the threads as the engine runs them
    rng, parts = _rng(), numba.get_num_threads()
    rows = []
    for case, a, b in _gemm_operands(rng):
        want = a.astype(np.float64) @ b.astype(np.float64)
        c_eng, c_np = np.empty(want.shape, F32), np.empty(want.shape, F32)
        calls = {"engine kernels.gemm": lambda: engine_gemm(a, b, c_eng, False, parts),
                 "NumPy matmul (BLAS)": lambda: np.matmul(a, b, out=c_np)}
        for name, call in calls.items():
            call()
            check_close(f"{case}: {name}", c_eng if name.startswith("engine") else c_np, want,
                        PRODUCT_RTOL)
        flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
        rows += [(case, name, s, f"{flops / s / 1e9:.0f} GFLOP/s")
                 for name, s in time_variants(calls, repeats).items()]
    table(f"float32 GEMM, {parts} threads", rows)


def _gemm_operands(rng):
    """(name, a, b) of the products an LSTM at M (T=100, B=64, I=128, H=256) runs, and L's
    recurrent weight gradient, in the layouts the layer passes (transposed views)."""
    x = rng.standard_normal((6400, 128), dtype=F32)
    w_ih = rng.standard_normal((1024, 128), dtype=F32)
    dz = rng.standard_normal((6400, 1024), dtype=F32)
    h = rng.standard_normal((6400, 256), dtype=F32)
    sq = rng.standard_normal((2048, 2048), dtype=F32)
    return [("M input projection x @ W_ih.T", x, w_ih.T),
            ("M dW_hh = dz.T @ h", dz.T, h),
            ("M input grad dz @ W_ih", dz, w_ih),
            ("2048^2", sq, sq.T.copy())]


# ---------------------------------------------------------------------------- tiles
@njit(cache=False)
def _tiles(a, panel, c, reps, six, four):
    """c = a @ panel by 6-row tiles (up to ``six`` of them), then 4-row tiles (up to
    ``four``), then single rows, ``reps`` times over."""
    K, M = a.shape[1], a.shape[0]
    for _ in range(reps):
        i = 0
        for _ in range(six):
            tile6(a, i, panel, K, c, i, 0, False, zero_row())
            i += 6
        n = 0
        while i + 4 <= M and n < four:
            tile4(a, i, panel, K, c, i, 0, False, zero_row())
            i += 4
            n += 1
        while i < M:
            tile1(a, i, panel, K, c, i, 0, False, zero_row())
            i += 1


def tiles(repeats, M=32, K=256, reps=200):
    """The micro-kernels over one packed 64-column panel (K rows), one core."""
    rng = _rng()
    a = rng.standard_normal((M, K), dtype=F32)
    w = rng.standard_normal((K, NR), dtype=F32)
    panel = pack_weights(w)[0]
    want = a.astype(np.float64) @ w
    variants = {f"tile6 x{six_row_tiles(M)} then tile4 (shipped)": (six_row_tiles(M), M),
                "tile4 only": (0, M), "tile1 only": (0, 0)}
    calls = {}
    for name, (six, four) in variants.items():
        c = np.full((M, NR), np.nan, F32)
        _tiles(a, panel, c, 1, six, four)
        check_close(name, c, want, PRODUCT_RTOL)
        calls[name] = lambda six=six, four=four, c=c: _tiles(a, panel, c, reps, six, four)
    flops = 2 * M * K * NR * reps
    table(f"micro-kernels: {M} rows x {K} x {NR} columns, one core",
          [(f"{M} rows, K={K}", n, s, f"{flops / s / 1e9:.0f} GFLOP/s")
           for n, s in time_variants(calls, repeats).items()])


# ---------------------------------------------------------------------------- shapes
# Candidate micro-tiles of MR rows x V vectors, generated here for the comparison only (the
# shipped tile is the one kernels.isa picks): their k loop keeps MR * V accumulators, V panel
# vectors and a broadcast live, which is what decides whether they fit the registers.
_SHAPE_SRC = """
def tile(a, panel, c, reps):
    K = a.shape[1]
    for _ in range(reps):
        z = splat(0.0)
        {init}
        for k in range(K):
            {loads}
            {rows}
        {stores}
"""


def _shape_kernel(mr, v):
    """An @njit function (a, panel, c, reps) for one MR x V tile, c = a @ panel."""
    acc = [[f"c{r}_{q}" for q in range(v)] for r in range(mr)]
    init = "; ".join(f"{x} = z" for row in acc for x in row)
    loads = "; ".join(f"b{q} = load(panel, k, {q * LANES})" for q in range(v))
    rows = "\n            ".join(
        f"x = splat(a[{r}, k]); " + "; ".join(f"{acc[r][q]} = fma(x, b{q}, {acc[r][q]})"
                                               for q in range(v)) for r in range(mr))
    stores = "; ".join(f"store(c, {r}, {q * LANES}, {acc[r][q]})"
                       for r in range(mr) for q in range(v))
    scope = {"splat": splat, "load": load, "store": store, "fma": fma}
    exec(_SHAPE_SRC.format(init=init, loads=loads, rows=rows, stores=stores), scope)
    return njit(cache=False, **{k: v for k, v in KERNEL.items() if k != "cache"})(scope["tile"])


@njit(cache=False)
def _fma_peak(reps):
    """Twelve independent FMA chains on registers only: the core's FMA rate."""
    x, y = splat(0.9999999), splat(1.0000001)
    c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = c8 = c9 = c10 = c11 = splat(1.0)
    for _ in range(reps):
        c0, c1, c2, c3 = fma(x, y, c0), fma(x, y, c1), fma(x, y, c2), fma(x, y, c3)
        c4, c5, c6, c7 = fma(x, y, c4), fma(x, y, c5), fma(x, y, c6), fma(x, y, c7)
        c8, c9, c10, c11 = fma(x, y, c8), fma(x, y, c9), fma(x, y, c10), fma(x, y, c11)
    out = np.empty((1, LANES), F32)
    store(out, 0, 0, c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11)
    return out[0, 0]


SHAPES = ((6, 2), (4, 3), (3, 4), (2, 4), (6, 4), (4, 4))  # (rows, vectors)


def shapes(repeats, K=256, reps=20000):
    """Micro-tile shapes on one core, panel in L1, against the core's FMA peak."""
    rng, rows = _rng(), []
    peak_reps = 10 ** 7
    _fma_peak(10)
    peak = min(time_variants({"peak": lambda: _fma_peak(peak_reps)}, repeats).values())
    peak_gflops = 12 * 2 * LANES * peak_reps / peak / 1e9
    for mr, v in SHAPES:
        a = rng.standard_normal((mr, K), dtype=F32)
        panel = rng.standard_normal((K, v * LANES), dtype=F32)
        c = np.empty((mr, v * LANES), F32)
        kernel = _shape_kernel(mr, v)
        kernel(a, panel, c, 1)
        check_close(f"{mr} x {v * LANES}", c, a.astype(np.float64) @ panel, PRODUCT_RTOL)
        s = time_variants({"t": lambda kernel=kernel, a=a, panel=panel, c=c:
                           kernel(a, panel, c, reps)}, repeats)["t"]
        gflops = 2 * mr * K * v * LANES * reps / s / 1e9
        # Time per vector FMA, so that "vs first" compares throughput across shapes.
        rows.append((f"{LANES}-lane vectors, K={K}", f"{mr} x {v * LANES} ({mr * v} acc.)",
                     s / (reps * K * mr * v),
                     f"{gflops:.0f} GFLOP/s, {gflops / peak_gflops:.0%} of peak"))
    table(f"micro-tile shapes on one core; register-only FMA peak {peak_gflops:.0f} GFLOP/s "
          f"(shipped: {TILE_ROWS[0]} x {NR}); ns per vector FMA", rows, unit="ns")


# ---------------------------------------------------------------------------- split
def split(repeats, H=256, batches=(12, 20, 28, 36, 64), parts=2):
    """A time step's recurrent product per row block (one core each), the slowest block
    setting the step: rows cut at multiples of 4 or of 6; ``seq_rows.step_rows`` ships the
    one its cost model prefers."""
    rng = _rng()
    w = rng.uniform(-0.06, 0.06, (H, 4 * H)).astype(F32)  # W_hh.T
    wp = pack_weights(w)
    rows = []
    for B in batches:
        h = rng.standard_normal((B, H), dtype=F32)
        rec = np.empty((B, 4 * H), F32)
        calls, blocks = {}, {}
        shipped = [step_rows(p, parts, B) for p in range(parts)]
        for multiple in (4, 6):
            blocks[multiple] = [cut_rows(p, parts, B, multiple) for p in range(parts)]
            for lo, hi in blocks[multiple]:
                calls[(lo, hi)] = lambda lo=lo, hi=hi: gemm_packed(h, wp, rec, lo, hi, False,
                                                                   None)
        for call in calls.values():
            call()
        check_close(f"B={B} recurrent product", rec, h.astype(np.float64) @ w, PRODUCT_RTOL)
        seconds = time_variants(calls, repeats)
        for multiple, bl in blocks.items():
            sizes = "+".join(str(hi - lo) for lo, hi in bl)
            rows.append((f"B={B}, {parts} threads", f"multiples of {multiple}: {sizes}"
                         + (" (shipped)" if bl == shipped else ""),
                         max(seconds[b] for b in bl), "slowest block"))
    table(f"row split of one step's recurrent product (H={H})", rows)


# ---------------------------------------------------------------------------- step
@njit(cache=False)
def _repeat_fwd(kernel, reps, x, rec, c_prev, t, lengths, act, h, c, gates):
    for _ in range(reps):
        kernel(x, rec, c_prev, t, lengths, act, h, c, gates, True)


@njit(cache=False)
def _repeat_bwd(kernel, reps, gates, c, c_prev, dh, t, lengths, act, dc, dz):
    for _ in range(reps):
        kernel(gates, c, c_prev, dh, t, lengths, act, dc, dz)


def step(repeats, B=32, H=256, reps=50):
    """The pointwise step, scalar row loop against LANES-lane vectors (float32, fast tanh)."""
    rng, G, act = _rng(), 4 * H, ACT_TANH | ACT_FAST
    lengths = np.ones(B, np.int64)
    pre = (2 * rng.standard_normal((B, G))).astype(F32)
    zero = np.zeros((B, G), F32)
    c_prev = rng.standard_normal((B, H), dtype=F32)
    # The reference computes the same cell from pre-activations pre @ I + 0.
    h_ref, c_ref, g_ref = lstm_step_fwd_reference(
        pre.astype(np.float64), np.zeros((B, H)), c_prev.astype(np.float64), np.eye(G),
        np.zeros((G, H)), np.zeros(G), np.zeros(G))
    outs, calls = {}, {}
    for name, kernel in (("scalar rows", lstm_step_fwd_scalar),
                         (f"{LANES}-lane vectors", lstm_step_fwd_vec)):
        o = outs[name] = tuple(np.empty(s, F32) for s in ((B, H), (B, H), (B, G)))
        kernel(pre, zero, c_prev, 0, lengths, act, *o, True)
        for got, want in zip(o, (h_ref, c_ref, g_ref)):
            check_close(f"forward {name}", got, want, CELL_RTOL)
        calls[name] = lambda k=kernel, o=o: _repeat_fwd(k, reps, pre, zero, c_prev, 0, lengths,
                                                        act, *o)
    _same_bits("forward", outs)
    vectors = B * H / LANES
    rows = [(f"forward B={B}, H={H}", n, s / reps, f"{s / reps * 1e9 / vectors:.1f} ns a vector")
            for n, s in time_variants(calls, repeats).items()]
    rows += _step_bwd_rows(rng, B, H, reps, repeats)
    table("pointwise step (kernels.step), one core", rows)


def _step_bwd_rows(rng, B, H, reps, repeats):
    G = 4 * H
    lengths = np.ones(B, np.int64)
    gates = rng.uniform(0.05, 0.95, (B, G)).astype(F32)
    gates[:, 2 * H:3 * H] = rng.uniform(-0.9, 0.9, (B, H))
    c, c_prev, dh, dc = (rng.standard_normal((B, H), dtype=F32) for _ in range(4))
    dz_ref, dc_ref = lstm_step_bwd_reference(*(a.astype(np.float64)
                                               for a in (gates, c, c_prev, dh, dc)))
    outs, calls = {}, {}
    for name, kernel in (("scalar rows", lstm_step_bwd_scalar),
                         (f"{LANES}-lane vectors", lstm_step_bwd_vec)):
        dz, dc_io = np.empty((B, G), F32), dc.copy()
        kernel(gates, c, c_prev, dh, 0, lengths, ACT_FAST, dc_io, dz)
        check_close(f"backward {name} dz", dz, dz_ref, CELL_RTOL)
        check_close(f"backward {name} dc", dc_io, dc_ref, CELL_RTOL)
        outs[name] = (dz, dc_io)
        calls[name] = lambda k=kernel, dz=dz: _repeat_bwd(k, reps, gates, c, c_prev, dh, 0,
                                                          lengths, ACT_FAST, dc.copy(), dz)
    _same_bits("backward", outs)
    return [(f"backward B={B}, H={H}", n, s / reps, "")
            for n, s in time_variants(calls, repeats).items()]


def _same_bits(what, outs):
    first, *rest = outs.values()
    for other in rest:
        for a, b in zip(first, other):
            if not np.array_equal(a, b):
                raise AssertionError(f"{what}: the variants differ: not timed")


# ---------------------------------------------------------------------------- loops
def loops(repeats, T=100, I=128, H=256, batches=(1, 4, 8, 16, 64)):
    """The whole-sequence loops, row-split against unit-split, forward and backward."""
    engine.get_backend("cpu")
    rows = []
    for B in batches:
        rows += _loop_rows(_rng(), T, B, I, H, repeats)
    table(f"time loops (T={T}, H={H}; the backend picks rows from "
          f"{threads.MIN_ROWS_PER_THREAD * 2} rows on, with {numba.get_num_threads()} threads)",
          rows, unit="ms")


def _loop_case(rng, T, B, I, H):
    k = 1 / np.sqrt(H)
    w_ih, w_hh = (rng.uniform(-k, k, s) for s in ((4 * H, I), (4 * H, H)))
    b = rng.uniform(-k, k, 4 * H)
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((2, B, H)) * 0.5
    lengths = np.full(B, T, np.int64)
    ref = lstm_fwd_packed_reference(x, h0, c0, w_ih, w_hh, b, np.zeros(4 * H), lengths)
    xproj = (x @ w_ih.T + b).astype(F32)
    f = lambda a: np.ascontiguousarray(a, F32)  # noqa: E731
    return (x, w_ih, w_hh, h0, c0, lengths, ref), (xproj, f(w_hh), f(h0), f(c0))


def _loop_rows(rng, T, B, I, H, repeats):
    (x, w_ih, w_hh, h0, c0, lengths, ref), (xproj, w32, h032, c032) = _loop_case(rng, T, B, I, H)
    act, G = ACT_TANH | ACT_FAST, 4 * H
    rows_parts = threads.batch_parts(B)
    units_parts = max(1, min(numba.get_num_threads(), -(-H // LANES)))
    bufs = {n: (np.empty((T, B, H), F32), np.empty((T, B, H), F32), np.empty((T, B, G), F32))
            for n in ("rows", "units")}
    w_rows, w_units = pack_weights(w32.T), pack_gates(w32.T, H)
    fwd = {
        f"rows x{rows_parts}": lambda: lstm_seq_fwd_rows(
            xproj, w_rows, h032, c032, lengths, act, False, *bufs["rows"], np.empty((B, H), F32),
            np.empty((B, H), F32), np.empty((B, G), F32), rows_parts),
        f"units x{units_parts}": lambda: lstm_seq_fwd_units(
            xproj, w_units, h032, c032, lengths, act, False, *bufs["units"],
            np.empty((2, B, H), F32), np.empty((B, H), F32), units_parts)}
    for (name, call), key in zip(fwd.items(), ("rows", "units")):
        call()
        check_close(f"B={B} forward {name}", bufs[key][0], ref[0], LOOP_RTOL)
    out = [(f"B={B} forward", n, s, "") for n, s in time_variants(fwd, repeats).items()]
    return out + _loop_bwd_rows(rng, B, (x, w_ih, w_hh, c0, lengths, ref), bufs["rows"],
                                w32, c032, rows_parts, units_parts, repeats)


def _loop_bwd_rows(rng, B, case, saved, w32, c032, rows_parts, units_parts, repeats):
    x, w_ih, w_hh, c0, lengths, ref = case
    T, _, H = saved[0].shape
    _, c, gates = saved
    dout = rng.standard_normal((T, B, H))
    dhn, dcn = rng.standard_normal((2, B, H))
    _, dh0_ref, dc0_ref, dwi_ref, *_ = lstm_bwd_packed_reference(dout, dhn, dcn, ref[3])
    d32 = dout.astype(F32)
    act, wp = ACT_TANH | ACT_FAST, pack_weights(w32)
    res = {n: [np.empty((B, H), F32), np.empty((B, H), F32), np.empty((T, B, 4 * H), F32)]
           for n in ("rows", "units")}

    def run(kind):
        dh, dc, dz = res[kind]
        dh[:], dc[:] = dhn, dcn
        loop, parts = (lstm_seq_bwd_rows, rows_parts) if kind == "rows" else \
            (lstm_seq_bwd_units, units_parts)
        loop(d32, gates, c, c032, wp, lengths, act, False, dh, dc, dz,
             *(np.empty((B, H), F32) for _ in range(3)), parts)

    calls = {f"rows x{rows_parts}": lambda: run("rows"),
             f"units x{units_parts}": lambda: run("units")}
    for kind, call in zip(("rows", "units"), calls.values()):
        call()
        dh, dc, dz = res[kind]
        check_close(f"B={B} backward {kind} dh0", dh, dh0_ref, LOOP_RTOL)
        check_close(f"B={B} backward {kind} dc0", dc, dc0_ref, LOOP_RTOL)
        dwi = dz.reshape(T * B, -1).astype(np.float64).T @ x.reshape(T * B, -1)
        check_close(f"B={B} backward {kind} dW_ih", dwi, dwi_ref, LOOP_RTOL)
    return [(f"B={B} backward", n, s, "") for n, s in time_variants(calls, repeats).items()]


# ---------------------------------------------------------------------------- gpu
def gpu(repeats, T=100, H=256, batches=(1, 16, 64)):
    """The GPU forward variants side by side, each checked against the CPU backend."""
    from engine.backends import gpu as gpu_backend

    ok, why = gpu_backend.gpu_available(allow_simulator=False)
    if not ok:
        print(f"\ngpu: skipped: {why}")
        return
    rows = []
    for B in batches:
        x = _rng().standard_normal((T, B, H), dtype=F32)
        want = engine.LSTM(H, H, seed=0, backend="cpu")(x)[0]
        calls = {}
        for variant in ("fused", "gemm"):
            be = gpu_backend.GPUBackend(fwd_variant=variant)
            m = engine.LSTM(H, H, seed=0, backend=be)
            xd = be.asarray(x)
            check_close(f"B={B} {variant}", be.to_numpy(m(xd)[0]), want, LOOP_RTOL)

            def call(m=m, xd=xd, be=be):
                with engine.no_grad():
                    m(xd)
                be.synchronize()
            calls[variant] = call
        rows += [(f"forward T={T} B={B} H={H}", n, s, "")
                 for n, s in time_variants(calls, repeats).items()]
    table("GPU forward variants (engine.backends.gpu)", rows, unit="ms")
