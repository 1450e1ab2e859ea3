"""Benchmark cases: configurations, FLOP counts, the check against PyTorch, interleaved timing.

A *case* is one configuration in one mode for one contender: the shipped ``engine.LSTM`` or
``torch.nn.LSTM`` loaded with the engine's weights (``state_dict`` keys are the same).  Both
contenders get the same input x (T, B, I) and, in training mode, the same output gradient
g (T, B, H), both standard normal float32, and start from the zero state.

    check_case(cfg, mode)  ->  run both once, compare every result (FAILED rows are not timed)
    time_row(...)          ->  warm up, then time engine and torch interleaved; medians

The runner (``bench.run``), the pytest-benchmark file and the smoke test all use these.
"""
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np

import engine

MODES = ("inference", "training")


@dataclass(frozen=True)
class Config:
    """One LSTM shape: T time steps, B batch, I input size, H hidden size, stacked layers."""
    name: str
    T: int
    B: int
    I: int
    H: int
    layers: int = 1


# The grid of issue 5 (CPU targets are measured on it).
CONFIGS = {c.name: c for c in (
    Config("S", 50, 16, 32, 64),
    Config("M", 100, 64, 128, 256),
    Config("L", 200, 128, 256, 512),
    Config("B1", 100, 1, 128, 256),
    Config("M2", 100, 64, 128, 256, 2),
)}
QUICK_CONFIGS = ("S", "B1")

# The real-hardware grid of the GPU issue (issue 3): T=100, B in {1,16,64,256}, I=H in {128,512}.
GPU_CONFIGS = {c.name: c for c in (
    Config(f"H{H}-B{B}", 100, B, H, H) for H in (128, 512) for B in (1, 16, 64, 256))}

# Float32 check tolerance: |engine - torch| <= rtol*|torch| + atol*max(1, max|torch|).
# The absolute part is scaled by the array's largest magnitude because gradients of the
# weights are sums over all T*B rows: their rounding error grows with that magnitude, and an
# entry that cancels to ~0 cannot be held to 1e-4 of itself.
CHECK_TOL = {np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5)}


def gemm_flops(cfg, mode):
    """FLOPs of one call, counting the GEMMs only (the pointwise gate math is O(T*B*H), < 1%).

    Forward, per layer (and direction):  2 * T * B * 4H * (I_l + H)
        the input projection x @ W_ih^T (2*T*B*4H*I_l) plus T recurrent products
        h @ W_hh^T (2*T*B*4H*H); I_l = I for layer 0 and H for the layers above.
    Training step (forward + full BPTT):  3 * forward
        the forward, the data gradients (dx = dz @ W_ih and dh = dz @ W_hh) and the weight
        gradients (dW_ih = dz^T x, dW_hh = dz^T h) each cost one forward's GEMMs.
    """
    fwd = 0
    for layer in range(cfg.layers):
        in_size = cfg.I if layer == 0 else cfg.H
        fwd += 2 * cfg.T * cfg.B * 4 * cfg.H * (in_size + cfg.H)
    return fwd if mode == "inference" else 3 * fwd


def to_numpy(a):
    """A NumPy copy of a NumPy, CuPy or torch array."""
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


# ---------------------------------------------------------------------------- contenders
class EngineCase:
    """``engine.LSTM`` on one config and mode; ``step()`` runs one timed call."""

    label = "engine"

    def __init__(self, cfg, mode, x, g, backend="cpu", seed=0):
        self.mode = mode
        self.model = engine.LSTM(cfg.I, cfg.H, cfg.layers, dtype="float32", backend=backend,
                                 seed=seed)
        self._sync = self.model.backend.synchronize
        xp = self.model.backend.xp
        self.x, self.g = xp.asarray(x), xp.asarray(g)

    def step(self):
        if self.mode == "inference":  # as torch's case runs under inference_mode()
            with engine.no_grad():
                return self.model.forward(self.x), None
        out, state = self.model.forward(self.x)
        return (out, state), self.model.backward(self.g)

    def sync(self):
        self._sync()

    def results(self):
        """{name: NumPy array} of everything the check compares, from one fresh step."""
        (out, (h_n, c_n)), bwd = self.step()
        self.sync()
        res = {"output": out, "h_n": h_n, "c_n": c_n}
        if bwd is not None:
            res["grad_input"] = bwd[0]
            res.update({"grad." + k: v for k, v in self.model.grads.items()})
        return {k: to_numpy(v) for k, v in res.items()}


class TorchCase:
    """``torch.nn.LSTM`` with the engine's weights; the training step includes zeroing grads."""

    label = "torch"

    def __init__(self, cfg, mode, x, g, state_dict, device="cpu"):
        import torch

        match_torch_threads()
        self.torch, self.mode, self.device = torch, mode, device
        if device != "cpu":
            # float32 against float32: cuDNN would otherwise use TF32 tensor cores.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.model = torch.nn.LSTM(cfg.I, cfg.H, cfg.layers).to(device)
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})
        self.x = torch.from_numpy(x).to(device).requires_grad_(mode == "training")
        self.g = torch.from_numpy(g).to(device)

    def step(self):
        if self.mode == "inference":
            with self.torch.inference_mode():
                return self.model(self.x)
        # Zeroing is part of a training step; set_to_none is PyTorch's default and cheapest,
        # and matches the engine, whose backward overwrites its gradients.
        self.x.grad = None
        self.model.zero_grad(set_to_none=True)
        out, state = self.model(self.x)
        out.backward(self.g)
        return out, state

    def sync(self):
        if self.device != "cpu":
            self.torch.cuda.synchronize()

    def results(self):
        out, (h_n, c_n) = self.step()
        self.sync()
        res = {"output": out, "h_n": h_n, "c_n": c_n}
        if self.mode == "training":
            res["grad_input"] = self.x.grad
            res.update({"grad." + k: p.grad for k, p in self.model.named_parameters()})
        return {k: to_numpy(v) for k, v in res.items()}


def match_torch_threads():
    """Give PyTorch the engine's thread count (Numba's; BLAS is pinned to it by the runner)."""
    import numba
    import torch

    n = numba.get_num_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def engine_backend(backend, path=None):
    """The engine's ``backend=`` argument: the name, or with a GPU ``path`` ("persistent",
    "graph", "fused", "gemm"; ``engine.backends.gpu``) a GPUBackend held to that path."""
    if path is None:
        return backend
    from engine.backends.gpu import GPUBackend

    return GPUBackend(fwd_variant=path)


def make_cases(cfg, mode, backend="cpu", seed=0, path=None):
    """(EngineCase, TorchCase) sharing weights, input and output gradient."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg.T, cfg.B, cfg.I), dtype=np.float32)
    g = rng.standard_normal((cfg.T, cfg.B, cfg.H), dtype=np.float32)
    eng = EngineCase(cfg, mode, x, g, backend=engine_backend(backend, path), seed=seed)
    ref = TorchCase(cfg, mode, x, g, eng.model.state_dict(),
                    device="cuda" if backend == "gpu" else "cpu")
    return eng, ref


# ---------------------------------------------------------------------------- generation
class _Generation:
    """Generation one token at a time: ``T`` forward calls of one step each on a single
    sequence (B = 1), the state carried from call to call, no gradients.  This is how the text
    app samples; each call pays whatever a contender does once per call (weight packing,
    oneDNN's weight reorder), which a 100-step sequence spreads over its steps."""

    def __init__(self, model, x):
        self.model, self.x = model, x

    def step(self):
        state, outs = None, []
        with self._no_grad():
            for t in range(len(self.x)):
                out, state = self.model(self.x[t:t + 1], state)
                outs.append(out)
        return outs, state

    def results(self):
        outs, (h_n, c_n) = self.step()
        self.sync()
        return {"output": np.concatenate([to_numpy(o) for o in outs]), "h_n": to_numpy(h_n),
                "c_n": to_numpy(c_n)}


class EngineGeneration(_Generation):
    label = "engine"

    def __init__(self, cfg, x, backend="cpu", seed=0):
        model = engine.LSTM(cfg.I, cfg.H, cfg.layers, dtype="float32", backend=backend,
                            seed=seed)
        super().__init__(model, model.backend.xp.asarray(x))
        self._no_grad, self.sync = engine.no_grad, model.backend.synchronize


class TorchGeneration(_Generation):
    label = "torch"

    def __init__(self, cfg, x, state_dict, device="cpu"):
        ref = TorchCase(cfg, "inference", x, x, state_dict, device)
        super().__init__(ref.model, ref.x)
        self._no_grad, self.sync = ref.torch.inference_mode, ref.sync


def bench_generation(cfg, backend="cpu", repeats=15, budget_s=10.0, seed=0):
    """Check, then time ``cfg.T`` one-step calls on one sequence (cfg's B is ignored: B = 1),
    as ``bench_case`` does a config; the row adds microseconds per generated step."""
    cfg = Config(cfg.name, cfg.T, 1, cfg.I, cfg.H, cfg.layers)
    x = np.random.default_rng(seed).standard_normal((cfg.T, 1, cfg.I), dtype=np.float32)
    eng = EngineGeneration(cfg, x, backend=backend, seed=seed)
    ref = TorchGeneration(cfg, x, eng.model.state_dict(),
                          device="cuda" if backend == "gpu" else "cpu")
    row = checked_row(row_head(cfg, "generation"), eng, ref, repeats, budget_s,
                      gemm_flops(cfg, "inference"))
    if row["status"] == "ok":
        row["engine_us_per_step"] = 1e3 * row["engine_ms"] / cfg.T
        row["torch_us_per_step"] = 1e3 * row["torch_ms"] / cfg.T
    return row


# ---------------------------------------------------------------------------- check
def compare(actual, expected, rtol, atol):
    """(worst error / allowed error, max abs error); the check passes when the ratio <= 1."""
    if actual.shape != expected.shape:
        return math.inf, math.inf
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    err = np.abs(a - e)
    allowed = rtol * np.abs(e) + atol * max(1.0, float(np.abs(e).max()))
    worst = float((err / allowed).max())
    return (worst if np.isfinite(a).all() else math.inf), float(err.max())


def check(eng, ref, dtype=np.float32):
    """Compare every result of one step; returns {"ok", "worst", "ratio", "max_abs_err",
    "call_s"}, the last the seconds each contender's step took (compilation included)."""
    tol = CHECK_TOL[np.dtype(dtype)]
    t0 = time.perf_counter()
    got = eng.results()
    t1 = time.perf_counter()
    want = ref.results()
    call_s = {eng.label: t1 - t0, ref.label: time.perf_counter() - t1}
    missing = sorted(set(want) ^ set(got))
    if missing:
        return {"ok": False, "worst": "missing: " + ", ".join(missing), "ratio": math.inf,
                "max_abs_err": math.inf, "call_s": call_s}
    scores = {k: compare(got[k], want[k], **tol) for k in want}
    worst = max(scores, key=lambda k: scores[k][0])
    ratio, abs_err = scores[worst]
    return {"ok": ratio <= 1.0, "worst": worst, "ratio": ratio, "max_abs_err": abs_err,
            "call_s": call_s}


# ---------------------------------------------------------------------------- timing
def _timed(case):
    case.sync()
    t0 = time.perf_counter()
    case.step()
    case.sync()
    return time.perf_counter() - t0


# A case whose call is shorter than this makes an untimed lead-in call before each timed one.
LEAD_IN_MAX_S = 1.0
# A round longer than this needs no warm-up round beyond the check.
WARMUP_SKIP_S = 5.0


def sizes_from_check(checked_s):
    """{label: [seconds]} from the check's calls when they can size the row, else None.

    Only when every contender's call was long (half of WARMUP_SKIP_S): the engine's first call
    includes compilation, which alone made rounds look long, so those rows got the minimum of
    3 rounds and no warm-up (Zen 5 AVX-512, S inference: 0.80x with 39% noise; 1.06x and 2%
    when sized).
    """
    if checked_s and min(checked_s.values()) > WARMUP_SKIP_S / 2:
        return {k: [v] for k, v in checked_s.items()}
    return None


def time_interleaved(cases, repeats, warmup=1, lead_in=None):
    """Seconds per call of each case, taken in alternating order after ``warmup`` rounds.

    Round r runs every case in turn, in order on even rounds and reversed on odd ones
    (engine, torch, torch, engine, ...), so drift hits both alike.  Cases whose label is in
    ``lead_in`` (default: all) make one untimed call right before each timed one: switching
    contenders costs something that back-to-back use does not (the other library's
    BLAS/OpenMP threads still spin for up to ~0.1 s after it returns, caches are cold), and
    the lead-in call absorbs it, so each sample is a steady-state call.
    Returns {label: [seconds, ...]}.
    """
    lead_in = {c.label for c in cases} if lead_in is None else set(lead_in)
    samples = {c.label: [] for c in cases}
    for r in range(warmup + repeats):
        order = cases if r % 2 == 0 else cases[::-1]
        for c in order:
            if c.label in lead_in:
                c.step()
            dt = _timed(c)
            if r >= warmup:
                samples[c.label].append(dt)
    return samples


def spread(xs):
    """Interquartile range over median: how noisy a set of timings is (0 = identical)."""
    if len(xs) < 2:
        return 0.0
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return (q[2] - q[0]) / statistics.median(xs)


def plan_repeats(round_s, repeats, budget_s, min_repeats=3):
    """How many timed rounds fit ``budget_s`` when one round takes ``round_s``."""
    fit = int(budget_s / max(round_s, 1e-9))
    return max(min_repeats, min(repeats, fit))


def time_row(eng, ref, repeats, budget_s, flops, sgemm=None, checked_s=None):
    """Warm up, time both contenders interleaved, and summarise one row (times in ms).

    A first untimed round warms up and sizes the run; when ``checked_s`` ({label: seconds}
    of the check's calls, which already compiled everything) shows every call long
    (``sizes_from_check``), those sizes are used instead and the round is skipped: at that
    length a call has nothing left to warm.  Calls shorter than LEAD_IN_MAX_S get a lead-in
    call (for longer ones the switching cost is a few percent at most, and a lead-in would
    double the run time).  The number of rounds is what fits ``budget_s``, at least 3, at most
    ``repeats``, with two more warm-up rounds when rounds are short.
    """
    first = sizes_from_check(checked_s) or time_interleaved([eng, ref], repeats=1, warmup=0,
                                                            lead_in=())
    lead = {k for k, v in first.items() if v[0] < LEAD_IN_MAX_S}
    round_s = sum(v[0] * (2 if k in lead else 1) for k, v in first.items())
    n = plan_repeats(round_s, repeats, budget_s)
    samples = time_interleaved([eng, ref], repeats=n, warmup=2 if round_s < 0.5 else 0,
                               lead_in=lead)
    e_s = statistics.median(samples[eng.label])
    t_s = statistics.median(samples[ref.label])
    row = {
        "engine_ms": 1e3 * e_s, "torch_ms": 1e3 * t_s,
        "engine_gflops": flops / e_s / 1e9, "torch_gflops": flops / t_s / 1e9,
        "speedup": t_s / e_s, "repeats": n, "lead_in": sorted(lead),
        "engine_min_ms": 1e3 * min(samples[eng.label]),
        "torch_min_ms": 1e3 * min(samples[ref.label]),
        "spread": max(spread(v) for v in samples.values()),
        "engine_samples_ms": [1e3 * s for s in samples[eng.label]],
        "torch_samples_ms": [1e3 * s for s in samples[ref.label]],
    }
    if sgemm:
        row["sgemm_fraction"] = row["engine_gflops"] / sgemm
    return row


def row_head(cfg, mode):
    """The fields that name a result row (also those of a row that raised)."""
    return {"config": cfg.name, "mode": mode, "T": cfg.T, "B": cfg.B, "I": cfg.I, "H": cfg.H,
            "layers": cfg.layers}


def checked_row(row, eng, ref, repeats, budget_s, flops, sgemm=None):
    """``row`` completed: the check of eng against ref, then, if it passes, ``time_row``."""
    row.update(gflop=flops / 1e9, check=check(eng, ref))
    if not row["check"]["ok"]:
        row["status"] = "FAILED"
        return row
    row["status"] = "ok"
    row.update(time_row(eng, ref, repeats, budget_s, flops, sgemm, row["check"]["call_s"]))
    return row


def bench_case(cfg, mode, backend="cpu", repeats=15, budget_s=10.0, sgemm=None, seed=0,
               path=None):
    """Check one config and mode against PyTorch, then time it; one result row (a dict).

    ``path``: a GPU path to hold the engine to (``engine_backend``); the row's config is then
    named "<config>/<path>" and the row has "path".
    """
    eng, ref = make_cases(cfg, mode, backend=backend, seed=seed, path=path)
    head = row_head(cfg, mode)
    if path is not None:
        head.update(config=f"{cfg.name}/{path}", path=path)
    return checked_row(head, eng, ref, repeats, budget_s, gemm_flops(cfg, mode), sgemm)


# ---------------------------------------------------------------------------- roofline
SGEMM_N = {"cpu": 2048, "gpu": 8192}


def _matmul_gflops(n, matmul, sync, repeats):
    """Median GFLOP/s of ``matmul()`` (one n x n x n product) over ``repeats`` timed calls
    after two untimed ones; ``sync`` waits for a device."""
    times = []
    for r in range(2 + repeats):
        sync()
        t0 = time.perf_counter()
        matmul()
        sync()
        if r >= 2:
            times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def torch_sgemm_gflops(n=None, repeats=7, backend="cpu"):
    """Median GFLOP/s of torch's n x n float32 matmul (MKL/oneDNN on the CPU): not the
    roofline of the targets, which is NumPy's, but shows what the contender's BLAS reaches."""
    import torch

    match_torch_threads()
    n = n or SGEMM_N[backend]
    dev = "cuda" if backend == "gpu" else "cpu"
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    a, b = (torch.randn(n, n, device=dev) for _ in range(2))
    c = torch.empty(n, n, device=dev)
    return _matmul_gflops(n, lambda: torch.mm(a, b, out=c), sync, repeats)


def gemm_pair_gflops(n=None, repeats=7):
    """Median GFLOP/s of the engine's own float32 GEMM (kernels.gemm, CPU backend) and of
    NumPy's SGEMM, n x n, timed alternately in the same rounds so that drift hits both: the
    rate the engine's kernels run against, and how far it is from the BLAS one."""
    from engine.backends import CPUBackend

    n = n or SGEMM_N["cpu"]
    matmul = CPUBackend().matmul
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    c = np.empty((n, n), np.float32)
    calls = {"engine": lambda: matmul(a, b, out=c), "numpy": lambda: np.matmul(a, b, out=c)}
    times = {k: [] for k in calls}
    for r in range(2 + repeats):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            if r >= 2:
                times[name].append(time.perf_counter() - t0)
    return {k: 2 * n ** 3 / statistics.median(v) / 1e9 for k, v in times.items()}


def sgemm_gflops(n=None, repeats=7, backend="cpu"):
    """Median GFLOP/s of an n x n float32 matmul (NumPy's BLAS, or CuPy's cuBLAS on a GPU)."""
    n = n or SGEMM_N[backend]
    if backend == "gpu":
        import cupy as xp

        sync = xp.cuda.get_current_stream().synchronize
    else:
        xp, sync = np, (lambda: None)
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    b = xp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    c = xp.empty((n, n), np.float32)
    return _matmul_gflops(n, lambda: xp.matmul(a, b, out=c), sync, repeats)
