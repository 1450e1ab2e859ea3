"""Compile every CUDA kernel the GPU tests launch to PTX, on a machine without a GPU.

The CUDA simulator, which runs the GPU tests here, executes each ``@cuda.jit`` kernel as
Python: it never types or lowers the kernels for the device, so a change that numba-cuda
cannot compile (a CPU-only overload reached from ``kernels.gates``, say) passes every test
here and fails on the first GPU.  This closes that gap in two steps:

    python -m bench.cuda_ptx record SIGS.pkl      # the project's venv: runs the GPU tests in
                                                  # the simulator, noting each launch's types
    PY -m bench.cuda_ptx compile SIGS.pkl [--cc 9.0]   # PY: a venv with libnvvm (below)

``compile`` needs NVIDIA's NVVM and NVRTC libraries, which PyPI ships (about 450 MB), and the
same numba and numba-cuda as the recording venv; no GPU and no driver::

    .venv/bin/python -m venv /tmp/nvvm && /tmp/nvvm/bin/pip install numba==<same> \\
        'numba-cuda[cu13]==<same>' numpy scipy tqdm threadpoolctl

It prints one line per kernel and signature (its PTX size and fused multiply-adds) and exits 1
if any fails to compile.
"""
import argparse
import os
import pickle
import sys
import types as pytypes

TESTS = ["tests/kernels/test_cuda.py", "tests/kernels/test_cuda_persistent.py",
         "tests/backends/test_gpu.py", "tests/backends/test_gpu_paths.py", "tests/test_ctc.py"]


def record(out):
    """Run the GPU tests in the simulator; pickle {(module, name): {argument types}}."""
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    import numba
    import pytest
    from numba.cuda.simulator import kernel as sim

    seen = {}
    launch = sim.FakeCUDAKernel.__call__

    def noting(self, *args):
        if not (self._device or sim._kernel_context):  # a launch, not a device call
            key = (self.fn.__module__, self.fn.__qualname__)
            seen.setdefault(key, set()).add(tuple(numba.typeof(getattr(a, "_ary", a))
                                                  for a in args))
        return launch(self, *args)

    sim.FakeCUDAKernel.__call__ = noting
    code = pytest.main(["-q", "-p", "no:cacheprovider", *TESTS])
    with open(out, "wb") as f:
        pickle.dump(seen, f)
    print(f"{sum(map(len, seen.values()))} signatures of {len(seen)} kernels -> {out}")
    return int(code)


def compile_all(path, cc):
    """Compile each recorded kernel and signature to PTX for compute capability ``cc``."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        sys.exit("compile: unset NUMBA_ENABLE_CUDASIM (the simulator compiles nothing)")
    import importlib

    import numba.cuda.dispatcher as dispatcher
    from numba import cuda

    # numba-cuda asks the current device for its compute capability when it compiles a
    # kernel's device functions, even under compile_ptx(cc=...); without a driver that
    # fails, so the device is the one asked for.
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=cc)
    with open(path, "rb") as f:
        seen = pickle.load(f)  # written by `record` on this machine: trusted
    failed = 0
    for (module, name), sigs in sorted(seen.items()):
        kernel = getattr(importlib.import_module(module), name)
        for sig in sorted(sigs, key=str):
            try:
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
                print(f"ok    {name}({_short(sig)}): {len(ptx)} bytes, "
                      f"{ptx.count('fma.rn')} fma")
            except Exception as e:  # report every failure, then fail
                failed += 1
                print(f"FAIL  {name}({_short(sig)}): {type(e).__name__}: {str(e)[:300]}")
    print(f"{failed} of {sum(map(len, seen.values()))} failed (compute capability {cc})")
    return 1 if failed else 0


def _short(sig):
    """float32[3d], int64, ...: a signature on one line."""
    return ", ".join(f"{t.dtype}[{t.ndim}d]" if hasattr(t, "ndim") else str(t) for t in sig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    sub.add_parser("record").add_argument("out")
    c = sub.add_parser("compile")
    c.add_argument("sigs")
    c.add_argument("--cc", default="9.0", help="compute capability, as 9.0 (default: H100)")
    a = p.parse_args(argv)
    if a.step == "record":
        return record(a.out)
    return compile_all(a.sigs, tuple(int(v) for v in a.cc.split(".")))


if __name__ == "__main__":
    sys.exit(main())
