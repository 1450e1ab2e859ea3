"""The GPU backend against the CPU backend, end to end through ``engine.LSTM``.

Outputs, final states, the input and initial-state gradients and every parameter gradient must
agree within the per-dtype table ``tol``.  Without a GPU the kernels run in Numba's CUDA
simulator with NumPy standing in for CuPy (see conftest): slow, hence tiny shapes.  With a GPU
the same checks run on the device, and CuPy inputs are tested too.
"""
import sys

import numba
import numpy as np
import pytest

from engine import LSTM, get_backend
from engine.backends import CPUBackend, gpu
from engine.backends.gpu import GPUBackend
from tests.helpers import tol

SIMULATED = gpu.simulator_enabled()

# name: (LSTM kwargs, T, B, lengths or None).  Odd sizes: H=33 spans two 32-unit tiles,
# B=3 leaves a row of the 4-row batch tile idle, H=1 a single unit.
CONFIGS = {
    "deep-bidir-relu-lengths": (dict(input_size=3, hidden_size=5, num_layers=2,
                                     bidirectional=True, cell_activation="relu"), 3, 3,
                                [3, 1, 2]),
    "H33-B3-lengths": (dict(input_size=4, hidden_size=33), 3, 3, [2, 3, 1]),
    "H1-batch_first-bidir": (dict(input_size=2, hidden_size=1, batch_first=True,
                                  bidirectional=True), 4, 2, None),
    "unbatched-nobias": (dict(input_size=3, hidden_size=4, bias=False), 4, None, None),
    # LSTMP always takes the gemm path (the fused kernel has no projection).
    "proj-deep-bidir-lengths": (dict(input_size=3, hidden_size=5, proj_size=2, num_layers=2,
                                     bidirectional=True), 3, 3, [3, 1, 2]),
}


def _run(backend, kwargs, x, state, lengths, g_out, g_state):
    m = LSTM(dtype=x.dtype, backend=backend, seed=7, **kwargs)
    out, (h_n, c_n) = m(x, state, lengths=lengths)
    dx, (dh0, dc0) = m.backward(g_out, g_state)
    # The outputs come back in the caller's array type; m.grads are backend arrays, as the
    # parameters are (engine.module), so they are brought to the host here.
    return dict(out=out, h_n=h_n, c_n=c_n, dx=dx, dh0=dh0, dc0=dc0,
                **{"grad_" + k: m.backend.to_numpy(v) for k, v in m.grads.items()})


def _inputs(rng, kwargs, T, B, lengths, dtype):
    """x, (h0, c0), lengths, grad_output and grad_state in the user layout, as NumPy."""
    H, I = kwargs["hidden_size"], kwargs["input_size"]
    R = kwargs.get("proj_size") or H  # the size of h
    D = 2 if kwargs.get("bidirectional") else 1
    LD = kwargs.get("num_layers", 1) * D
    batch = () if B is None else (B,)
    xs = (B, T) if kwargs.get("batch_first") else (T, B)
    x_shape = (T, I) if B is None else xs + (I,)
    out_shape = x_shape[:-1] + (D * R,)
    r = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    state = (r(LD, *batch, R), r(LD, *batch, H))
    lengths = None if lengths is None else np.array(lengths)
    return r(*x_shape), state, lengths, r(*out_shape), (r(LD, *batch, R), r(LD, *batch, H))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", ["fused", "gemm"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_gpu_matches_cpu(rng, config, variant, dtype):
    kwargs, T, B, lengths = CONFIGS[config]
    args = _inputs(rng, kwargs, T, B, lengths, dtype)
    want = _run("cpu", kwargs, *args)
    got = _run(GPUBackend(fwd_variant=variant), kwargs, *args)
    assert got.keys() == want.keys()
    for name in want:
        assert type(got[name]) is np.ndarray, f"{name}: NumPy in must give NumPy out (the " \
            "grads are brought to the host by _run)"
        assert got[name].dtype == dtype
        np.testing.assert_allclose(got[name], want[name], err_msg=name, **tol(dtype))


@pytest.mark.skipif(SIMULATED, reason="CuPy arrays need a real GPU")
def test_cupy_in_gives_cupy_out(rng):
    import cupy

    kwargs, T, B, lengths = CONFIGS["H33-B3-lengths"]
    x, state, lengths, g_out, g_state = _inputs(rng, kwargs, T, B, lengths, np.float32)
    want = _run("cpu", kwargs, x, state, lengths, g_out, g_state)
    dev = cupy.asarray
    got = _run("gpu", kwargs, dev(x), tuple(map(dev, state)), lengths, dev(g_out),
               tuple(map(dev, g_state)))
    for name in ("out", "h_n", "c_n", "dx", "dh0", "dc0"):
        assert isinstance(got[name], cupy.ndarray), name
        np.testing.assert_allclose(cupy.asnumpy(got[name]), want[name], err_msg=name,
                                   **tol(np.float32))


@pytest.mark.skipif(SIMULATED, reason="CuPy's allocator exists only on a real GPU")
@pytest.mark.parametrize("variant", ["fused", "gemm"])
def test_time_loops_allocate_nothing(rng, variant):
    """seq_fwd and seq_bwd make no CuPy allocation: every buffer comes from the caller."""
    import cupy

    T, B, H = 5, 3, 33
    r = lambda *s: cupy.asarray(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    xproj, w_hh, h0, c0, dout = r(T, B, 4 * H), r(4 * H, H), r(B, H), r(B, H), r(T, B, H)
    w_hh_t, lengths = cupy.ascontiguousarray(w_hh.T), cupy.asarray([5, 2, 4])
    h, c, gates, dz = r(T, B, H), r(T, B, H), r(T, B, 4 * H), r(T, B, 4 * H)
    dh, dc = r(B, H), r(B, H)
    scratch = {"h_prev": r(B, H), "c_prev": r(B, H), "rec": r(B, 4 * H), "dh_rec": r(B, H)}
    b = GPUBackend(variant)

    def both():
        b.seq_fwd(xproj, w_hh_t, h0, c0, lengths, 0, False, h, c, gates, scratch)
        b.seq_bwd(dout, gates, c, c0, w_hh, lengths, 0, False, dh, dc, dz, scratch)

    both()  # compiles the kernels
    pool, sizes = cupy.get_default_memory_pool(), []

    def counting(size):
        sizes.append(size)
        return pool.malloc(size)

    with cupy.cuda.using_allocator(counting):
        both()
    b.synchronize()
    assert sizes == []


def test_auto_variant_rule():
    b = GPUBackend()
    assert b.fwd_variant == "auto"
    cells = gpu.FUSED_MAX_CELLS  # B * H
    assert b.choose_fwd_variant(cells // 512, 512) == "fused"
    assert b.choose_fwd_variant(cells // 128 + 1, 128) == "gemm"
    assert b.choose_fwd_variant(1, cells + 1) == "gemm"
    assert GPUBackend("gemm").choose_fwd_variant(1, 8) == "gemm"


def test_variant_from_environment_and_bad_variant(monkeypatch):
    monkeypatch.setenv("ENGINE_GPU_FWD", "gemm")
    assert GPUBackend().fwd_variant == "gemm"
    with pytest.raises(ValueError, match="fwd_variant"):
        GPUBackend(fwd_variant="cudnn")


# ----------------------------------------------------------------------------- selection
def test_backend_selection(monkeypatch):
    assert isinstance(get_backend("gpu"), GPUBackend)
    assert isinstance(get_backend("GPU"), GPUBackend)
    monkeypatch.setenv("ENGINE_BACKEND", "gpu")
    assert LSTM(2, 3).backend.name == "gpu"
    monkeypatch.delenv("ENGINE_BACKEND")
    assert LSTM(2, 3).backend.name == "cpu"
    b = GPUBackend(fwd_variant="gemm")
    assert LSTM(2, 3, backend=b).backend is b


def test_auto_picks_gpu_only_on_real_hardware():
    want = "cpu" if SIMULATED else "gpu"  # the simulator is a test tool, never chosen by auto
    assert get_backend("auto").name == want
    assert gpu.gpu_available(allow_simulator=False)[0] is (not SIMULATED)


@pytest.mark.parametrize("why", ["no usable CUDA driver", "CuPy is not installed"])
def test_gpu_requested_but_unusable_raises_clearly(monkeypatch, why):
    monkeypatch.setattr(gpu, "gpu_available",
                        lambda allow_simulator=True: (False, why + "; " + gpu.INSTALL_HINT))
    for request in (lambda: get_backend("gpu"), lambda: LSTM(2, 3, backend="gpu")):
        with pytest.raises(RuntimeError) as e:
            request()
        msg = str(e.value)
        assert why in msg and "pip install 'lstm-engine[gpu]'" in msg
        assert "lstm-engine[gpu-cuda13]" in msg
    assert isinstance(get_backend("auto"), CPUBackend)


def test_gpu_available_reasons(monkeypatch):
    """The real-hardware checks, each failure faked: no driver, then no CuPy."""
    from numba import cuda

    monkeypatch.setattr(numba.config, "ENABLE_CUDASIM", 0)
    monkeypatch.setattr(cuda, "is_available", lambda: False, raising=False)
    ok, why = gpu.gpu_available()
    assert not ok and "CUDA driver" in why and "lstm-engine[gpu]" in why
    monkeypatch.setattr(cuda, "is_available", lambda: True, raising=False)
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    ok, why = gpu.gpu_available()
    assert not ok and "CuPy is not installed" in why and "lstm-engine[gpu-cuda13]" in why



def test_no_grad_forward_matches_cpu(rng):
    """Under engine.no_grad() the kernels write one reused gates buffer; outputs unchanged."""
    import engine
    kwargs, T, B, lengths = CONFIGS["H33-B3-lengths"]
    x, state, lengths, _, _ = _inputs(rng, kwargs, T, B, lengths, np.float32)
    with engine.no_grad():
        out_gpu, (h_gpu, c_gpu) = LSTM(dtype=np.float32, backend="gpu", seed=7, **kwargs)(
            x, state, lengths=lengths)
    out_cpu, (h_cpu, c_cpu) = LSTM(dtype=np.float32, backend="cpu", seed=7, **kwargs)(
        x, state, lengths=lengths)
    tol = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out_gpu, out_cpu, **tol)
    np.testing.assert_allclose(h_gpu, h_cpu, **tol)
    np.testing.assert_allclose(c_gpu, c_cpu, **tol)


def test_sequential_predict_with_states_matches_cpu(rng):
    """Sequential.predict carrying states across chunks on the GPU backend (its states come
    back as NumPy and go in again) gives the CPU backend's one-shot outputs."""
    from engine import Dense, Embedding, Sequential

    def model(backend):
        return Sequential([Embedding(7, 3, backend=backend, seed=0),
                           LSTM(3, 4, batch_first=True, backend=backend, seed=1),
                           Dense(4, 7, backend=backend, seed=2)])

    ids = rng.integers(0, 7, (2, 4))
    want, (want_state,) = model("cpu").predict(ids, return_states=True)
    m = model("gpu")
    head, st = m.predict(ids[:, :3], return_states=True)
    tail, (state,) = m.predict(ids[:, 3:], states=st, return_states=True)
    assert isinstance(state[0], np.ndarray)
    np.testing.assert_allclose(np.concatenate([head, tail], axis=1), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(state[1], want_state[1], rtol=1e-4, atol=1e-5)
