"""The GPU backend's paths (``choose_path``): persistent kernels, one CUDA graph per sequence,
and per-step launches, against the CPU backend, with the selection rule and launch counts.

In the simulator (see conftest) the persistent kernels run as one block owning SIM_SLICES
unit slices (``kernels.cuda_persistent``; tests/kernels/test_cuda_persistent.py runs several
real blocks), and CuPy's stream capture is replaced by ``EmulatedGraphs``, which records the
launches a capture would and replays them: what is tested is that a sequence issued through
the backend's launch points can be captured and replayed with the same results and a host
cost that does not grow with T, not the CUDA driver's capture itself.
"""
import collections

import numpy as np
import pytest

from engine import LSTM
from engine.backends import gpu
from engine.backends.gpu import GPUBackend
from tests.backends.test_gpu import CONFIGS, _inputs, _run
from tests.helpers import tol


def _backend(path):
    b = GPUBackend(fwd_variant=path)
    if path == "graph" or path == "auto":
        b.graphs = gpu.EmulatedGraphs()
    return b


def _check(got, want, dtype):
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == dtype
        np.testing.assert_allclose(got[name], want[name], err_msg=name, **tol(dtype))


# H33: 3 slices of 11 units, 33 items on 32 threads (split 1, two passes); the deep config's
# H=5: slices of 1, 2, 2 units (split 4, tree reductions); relu, lengths, both directions.
@pytest.mark.parametrize("config,dtype", [
    ("deep-bidir-relu-lengths", np.float32), ("deep-bidir-relu-lengths", np.float64),
    ("H33-B3-lengths", np.float64), ("H1-batch_first-bidir", np.float32)])
def test_persistent_matches_cpu(rng, config, dtype):
    kwargs, T, B, lengths = CONFIGS[config]
    args = _inputs(rng, kwargs, T, B, lengths, dtype)
    b = _backend("persistent")
    _check(_run(b, kwargs, *args), _run("cpu", kwargs, *args), dtype)
    H = kwargs["hidden_size"]
    assert b.choose_path("fwd", B, H, dtype)[0] == "persistent"


@pytest.mark.parametrize("config,dtype", [("deep-bidir-relu-lengths", np.float32),
                                          ("proj-deep-bidir-lengths", np.float64)])
def test_graph_matches_cpu(rng, config, dtype):
    """One model, three calls with new input buffers each (the graphs work on staged copies):
    a shape's first sequence runs per step (warm-up), later ones are captured once per layer,
    direction and pass, then replayed."""
    kwargs, T, B, lengths = CONFIGS[config]
    b = _backend("graph")
    models = {k: LSTM(dtype=dtype, backend=k, seed=7, **kwargs) for k in (b, "cpu")}
    for call in range(3):
        x, state, lengths_, g_out, g_state = _inputs(rng, kwargs, T, B, lengths, dtype)
        got, want = ({name: m.backend.to_numpy(v) for name, v in
                      _results(m, x, state, lengths_, g_out, g_state).items()}
                     for m in models.values())
        _check(got, want, dtype)
    passes = 2 * kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    assert b.graphs.captures == passes  # forward and backward of each layer and direction


def _results(m, x, state, lengths, g_out, g_state):
    out, (h_n, c_n) = m(x, state, lengths=lengths)
    dx, (dh0, dc0) = m.backward(g_out, g_state)
    return dict(out=out, h_n=h_n, c_n=c_n, dx=dx, dh0=dh0, dc0=dc0,
                **{"grad_" + k: v for k, v in m.grads.items()})


# ----------------------------------------------------------------------------- selection
def _plans_fit_below(b, H_max):
    """Hold ``b``'s persistent plans to "fits" for H <= H_max and "does not fit" above, on a
    GPU as in the simulator (where whether a shape fits depends on the device)."""
    b._make_plan = lambda op, B, H, itemsize, args: "plan" if H <= H_max else None


def test_selection_rule():
    b, f32 = GPUBackend(), np.float32
    assert b.fwd_variant == "auto"
    b.graphs = None  # no stream capture here (the simulator has none; on a GPU, pretend)
    _plans_fit_below(b, 64)
    cells = gpu.PERSISTENT_MAX_CELLS  # B * H
    assert b.choose_path("fwd", cells // 8, 8, f32) == ("persistent", "plan")
    assert b.choose_path("bwd", 1, 8, f32) == ("persistent", "plan")
    # Above the cell cap, with a projection, or where the weights do not fit on chip:
    # graphs where the sequence can be captured, else per step with the per-step variant rule.
    assert b.choose_path("fwd", cells // 8 + 1, 8, f32) == ("step", "gemm")
    assert b.choose_path("fwd", 2, 8, f32, proj=True) == ("step", "gemm")
    assert b.choose_path("fwd", 2, 512, f32) == ("step", "fused")
    assert b.choose_path("fwd", 256, 512, f32) == ("step", "gemm")
    b.graphs = gpu.EmulatedGraphs()  # records GEMMs: every sequence can be captured
    assert b.choose_path("fwd", cells // 8 + 1, 8, f32) == ("graph", "gemm")
    assert b.choose_path("bwd", 2, 8, f32, proj=True) == ("graph", "gemm")
    assert b.choose_path("fwd", 256, 512, f32) == ("graph", "gemm")
    b.graphs = gpu.EmulatedGraphs(records_gemm=False)  # as CuPy's capture
    assert b.choose_path("fwd", 2, 512, f32) == ("graph", "fused")
    assert b.choose_path("bwd", 2, 512, f32) == ("step", "fused")  # a cuBLAS product a step
    assert b.choose_path("fwd", 256, 512, f32) == ("step", "gemm")
    assert b.choose_path("fwd", 2, 8, f32, proj=True) == ("step", "gemm")
    p = GPUBackend("persistent")
    p.graphs = None
    _plans_fit_below(p, 64)
    assert p.choose_path("fwd", 100000, 8, f32) == ("persistent", "plan")  # asked: no cap
    assert p.choose_path("fwd", 2, 512, f32) == ("step", "fused")  # does not fit: falls back
    g = GPUBackend("graph")
    g.graphs = None
    assert g.choose_path("fwd", 2, 8, f32) == ("step", "fused")  # no capture
    for v in ("fused", "gemm"):
        assert GPUBackend(v).choose_path("fwd", 1, 8, f32) == ("step", v)


def test_persistent_kernel_that_cannot_run_falls_back(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no cooperative launch on this device")

    monkeypatch.setattr(GPUBackend, "_make_plan", broken)
    b = GPUBackend()
    b.graphs = None
    with pytest.warns(RuntimeWarning, match="persistent fwd kernel cannot run"):
        assert b.choose_path("fwd", 1, 8, np.float32) == ("step", "fused")
    assert b.choose_path("fwd", 1, 8, np.float32) == ("step", "fused")  # warned once


def test_path_from_environment(monkeypatch):
    for v in ("persistent", "graph"):
        monkeypatch.setenv("ENGINE_GPU_FWD", v)
        assert GPUBackend().fwd_variant == v
    monkeypatch.setenv("ENGINE_GPU_FWD", "cudnn")
    with pytest.raises(ValueError, match="persistent"):
        GPUBackend()


def test_failed_capture_warns_and_runs_per_step(rng):
    class Broken(gpu.EmulatedGraphs):
        def capture(self, backend, record):
            raise RuntimeError("operation not permitted when stream is capturing")

    kwargs, T, B, lengths = CONFIGS["H33-B3-lengths"]
    b = _backend("graph")
    b.graphs = Broken()
    args = _inputs(rng, kwargs, T, B, lengths, np.float64)
    _run(b, kwargs, *args)  # warm-up: no capture yet
    with pytest.warns(RuntimeWarning, match="capture failed"):
        got = _run(b, kwargs, *args)
    assert b.graphs is None
    _check(got, _run("cpu", kwargs, *args), np.float64)


# ----------------------------------------------------------------------------- launch counts
class _CountingXP:
    """The array module with every function call counted (types, e.g. dtypes, are not)."""

    def __init__(self, xp, counts):
        self._xp, self._counts = xp, counts

    def __getattr__(self, name):
        attr = getattr(self._xp, name)
        if not callable(attr) or isinstance(attr, type):
            return attr

        def counted(*a, **k):
            self._counts["xp." + name] += 1
            return attr(*a, **k)
        return counted


def _host_calls(path, T, monkeypatch):
    """Host-side launches of a forward + backward of a T-step LSTM (B=1, H=2) after two
    warm-up calls (the graph path captures on the second): kernel launches and array
    operations through the backend's launch points, graph replays, and every call on the array
    module.  Also checks that every kernel launched outside a replay went through
    ``GPUBackend._launch``.  Only launches are counted here, so the simulator does not run the
    kernels (their results are checked by the tests above; the simulator takes seconds for
    the hundreds of per-step launches of the warm-up calls)."""
    from numba.cuda.simulator import kernel as sim

    b, counts = _backend(path), collections.Counter()
    for name in ("_launch", "_gemm", "_add", "_copy"):
        def counted(*a, _orig=getattr(b, name), _name=name):
            counts[_name] += 1
            return _orig(*a)
        setattr(b, name, counted)
    if b.graphs is not None:
        def replay(ops, _orig=b.graphs.replay):
            counts["replay"] += 1
            counts["in_replay"] += 1
            try:
                _orig(ops)
            finally:
                counts["in_replay"] -= 1
        b.graphs.replay = replay
    run = sim.FakeCUDAKernel.__call__

    def every_launch(self, *args):
        if self._device or sim._kernel_context:
            return run(self, *args)
        if not counts["in_replay"]:
            counts["sim_launches"] += 1

    with monkeypatch.context() as mp:
        mp.setattr(sim.FakeCUDAKernel, "__call__", every_launch)
        m = LSTM(1, 2, backend=b, seed=0, dtype=np.float64)
        x, g = np.ones((T, 1, 1)), np.ones((T, 1, 2))
        for _ in range(2):
            m(x)
            m.backward(g)
        b.xp = _CountingXP(b.xp, counts)
        counts.clear()
        m(x)
        m.backward(g)
    assert counts.pop("sim_launches", 0) == counts["_launch"]
    counts.pop("in_replay", None)
    return counts


SIMULATOR_ONLY = pytest.mark.skipif(not gpu.simulator_enabled(),
                                    reason="counts the simulator's kernel launches")


@SIMULATOR_ONLY
@pytest.mark.parametrize("path", ["persistent", "graph"])
def test_host_launches_do_not_grow_with_T(path, monkeypatch):
    short, long = _host_calls(path, 5, monkeypatch), _host_calls(path, 50, monkeypatch)
    assert short == long, (short, long)
    launches = short["_launch"] + short["_gemm"] + short["_add"] + short["replay"]
    assert launches == 2  # one persistent kernel, or one graph, each way
    print(path, dict(long))


@SIMULATOR_ONLY
def test_per_step_launches_grow_with_T(monkeypatch):
    """The same count on the per-step path: per step the fused forward kernel, then the
    backward's pointwise kernel, GEMM and row copy."""
    short, long = _host_calls("fused", 3, monkeypatch), _host_calls("fused", 6, monkeypatch)
    assert long["_launch"] - short["_launch"] == 3 * 3
    assert long["_gemm"] - short["_gemm"] == 3


# ----------------------------------------------------------------------------- on a GPU
@pytest.mark.skipif(gpu.simulator_enabled(), reason="CuPy's stream capture needs a real GPU")
@pytest.mark.parametrize("path", ["persistent", "graph"])
def test_device_paths_match_cpu_and_replay_allocates_nothing(rng, path):
    """On the device: CuPy in and out, three calls (the graph path captures on the second),
    each against the CPU backend; the last call's time loops allocate nothing from CuPy's
    pool (a graph bound to a buffer freed after capture would read freed memory)."""
    import cupy

    kwargs, T, B, lengths = CONFIGS["deep-bidir-relu-lengths"]
    b = GPUBackend(fwd_variant=path)
    models = {"gpu": LSTM(dtype=np.float32, backend=b, seed=7, **kwargs),
              "cpu": LSTM(dtype=np.float32, backend="cpu", seed=7, **kwargs)}
    for call in range(3):
        x, state, lengths_, g_out, g_state = _inputs(rng, kwargs, T, B, lengths, np.float32)
        want = _results(models["cpu"], x, state, lengths_, g_out, g_state)
        dev = cupy.asarray
        got = _results(models["gpu"], dev(x), tuple(map(dev, state)), lengths_, dev(g_out),
                       tuple(map(dev, g_state)))
        _check({k: cupy.asnumpy(v) for k, v in got.items()}, want, np.float32)
    if path == "graph":
        assert b._graph_cache, "no graph was captured"
    sizes, pool = [], cupy.get_default_memory_pool()
    seq_fwd, seq_bwd = b.seq_fwd, b.seq_bwd

    def counting(size):
        sizes.append(size)
        return pool.malloc(size)

    def fwd(*a, **k):
        with cupy.cuda.using_allocator(counting):
            seq_fwd(*a, **k)

    def bwd(*a, **k):
        with cupy.cuda.using_allocator(counting):
            seq_bwd(*a, **k)

    b.seq_fwd, b.seq_bwd = fwd, bwd
    _results(models["gpu"], dev(x), tuple(map(dev, state)), lengths_, dev(g_out),
             tuple(map(dev, g_state)))
    b.synchronize()
    assert sizes == []
