"""Peak memory of a training step and time to first result, each measured in a fresh process.

Peak memory (``peak_memory``), engine and PyTorch each in its own subprocess
(``python -m bench.memory peak <engine|torch> <config>``), which does, in order:

1. import NumPy, ``bench.cases`` (which imports the engine, but not torch) and the contender,
   so both processes hold the same libraries apart from torch; run one tiny training step
   (T=2, B=1, I=H=1) so that the code paths, kernel caches and the BLAS / OpenMP thread
   pools are loaded;
2. allocate the config's input x (T, B, I) and output gradient g (T, B, H) as NumPy float32
   (torch wraps the same buffers with ``torch.from_numpy``, no copy);
3. baseline = current resident set size (VmRSS); then reset the kernel's high-water mark
   (``echo 5 > /proc/self/clear_refs``);
4. build the model (same initialisation for both), run a warm-up training step and a second
   training step;
5. peak = high-water mark of the resident set (VmHWM) since the reset.

Reported: peak - baseline, i.e. parameters, gradients, saved activations, workspaces and every
transient buffer of a training step, excluding the interpreter, the libraries and the inputs.
Where clear_refs cannot be written, ``ru_maxrss`` is used instead and the result says so
(it then also includes any earlier peak, e.g. during imports).

Time to first result (``first_result``): ``import engine`` plus building a small LSTM and one
forward, timed inside a fresh interpreter from before the import to the returned output.
Cold: ``NUMBA_CACHE_DIR`` points at a new empty directory, so every kernel is compiled; warm:
a second process with the same directory, so every kernel is loaded from the cache.  Python's
own bytecode caches and the OS file cache are warm in both.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak():
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _training_step(contender, T, B, I, H, layers, x, g):
    """Return a function doing one full training step (forward + backward) on x, g."""
    if contender == "engine":
        import engine

        m = engine.LSTM(I, H, layers, dtype="float32", seed=0)

        def step():
            m.forward(x)
            m.backward(g)
        return step
    import torch

    from bench.cases import match_torch_threads

    match_torch_threads()
    m = torch.nn.LSTM(I, H, layers)
    xt = torch.from_numpy(x).requires_grad_(True)
    gt = torch.from_numpy(g)

    def step():
        xt.grad = None
        m.zero_grad(set_to_none=True)
        out, _ = m(xt)
        out.backward(gt)
    return step


def _peak_child(contender, config):
    import numpy as np

    from bench.cases import CONFIGS

    cfg = CONFIGS[config]
    tiny = (np.ones((2, 1, 1), np.float32), np.ones((2, 1, 1), np.float32))
    _training_step(contender, 2, 1, 1, 1, 1, *tiny)()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((cfg.T, cfg.B, cfg.I), dtype=np.float32)
    g = rng.standard_normal((cfg.T, cfg.B, cfg.H), dtype=np.float32)
    baseline_kb = _status_kb("VmRSS")
    reset = _reset_peak()
    step = _training_step(contender, cfg.T, cfg.B, cfg.I, cfg.H, cfg.layers, x, g)
    step()
    step()
    peak_kb = _status_kb("VmHWM") if reset else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"contender": contender, "config": config, "baseline_mb": baseline_kb / 1024,
            "peak_mb": peak_kb / 1024, "step_peak_mb": (peak_kb - baseline_kb) / 1024,
            "method": "VmHWM after clear_refs" if reset else "ru_maxrss (no reset)"}


def _run_child(args, env=None, timeout=600):
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "bench.memory", *args], capture_output=True,
                       text=True, env=env, timeout=timeout, cwd=_repo_root())
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"bench.memory {' '.join(args)} failed:\n{p.stderr[-2000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["process_wall_s"] = wall
    return res


def _repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peak_memory(config="L"):
    """{"engine": {...}, "torch": {...}, "ratio": engine/torch} step peaks, in MB."""
    res = {c: _run_child(["peak", c, config]) for c in ("engine", "torch")}
    res["ratio"] = res["engine"]["step_peak_mb"] / res["torch"]["step_peak_mb"]
    return res


def _first_result_child():
    t0 = time.perf_counter()
    import engine
    t_import = time.perf_counter() - t0
    import numpy as np

    m = engine.LSTM(8, 16, dtype="float32", seed=0)
    out, _ = m.forward(np.ones((10, 2, 8), np.float32))
    assert out.shape == (10, 2, 16)
    return {"import_s": t_import, "first_result_s": time.perf_counter() - t0}


def first_result():
    """Cold and warm time to first result, in seconds, each in a fresh subprocess."""
    with tempfile.TemporaryDirectory(prefix="bench-numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold = _run_child(["first-result"], env=env)
        warm = _run_child(["first-result"], env=env)
    return {"cold": cold, "warm": warm}


def main(argv):
    if argv[:1] == ["peak"] and len(argv) == 3:
        res = _peak_child(argv[1], argv[2])
    elif argv == ["first-result"]:
        res = _first_result_child()
    else:
        sys.exit("usage: python -m bench.memory peak <engine|torch> <config> | first-result")
    print(json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1:])
