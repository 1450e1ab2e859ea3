"""Numba's on-disk cache of the kernels is dropped when any kernel source changes, stays
right when several processes compile into it at once, and has them compile each kernel once.

Numba itself only checks the file that defines a cached function: edit a function it calls
(kernels/gates.py for every cell) and the caller's cached machine code runs the old version.
"""
import errno
import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from numba.core import caching

import engine.kernels as kernels
from engine.kernels import drop_stale_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(kernels.__file__)))


def _write(path, text):
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))


def _package(tmp_path, rng):
    """A package with one source, and a cache of Numba files and one Python .pyc."""
    pkg = tmp_path / "pkg"
    (pkg / "__pycache__").mkdir(parents=True)
    _write(pkg / "a.py", f"K = {rng.integers(1 << 30)}\n")
    for name in ("a.f-3.py311.nbi", "a.f-3.py311.1.nbc", "a.cpython-311.pyc"):
        (pkg / "__pycache__" / name).write_bytes(rng.bytes(16))
    return pkg


def _cached(pkg):
    return sorted(os.listdir(pkg / "__pycache__"))


def test_cache_without_a_stamp_is_dropped_once(tmp_path, rng):
    pkg = _package(tmp_path, rng)
    assert drop_stale_cache(str(pkg))
    assert _cached(pkg) == ["a.cpython-311.pyc", "numba.lock", "sources.sha256"]
    (pkg / "__pycache__" / "a.f-3.py311.nbi").write_bytes(rng.bytes(16))
    assert not drop_stale_cache(str(pkg))
    assert "a.f-3.py311.nbi" in _cached(pkg)


def test_cache_is_dropped_when_any_source_changes(tmp_path, rng):
    pkg = _package(tmp_path, rng)
    drop_stale_cache(str(pkg))
    (pkg / "__pycache__" / "a.f-3.py311.nbi").write_bytes(rng.bytes(16))
    _write(pkg / "b.py", "L = 1\n")  # a new file counts as a change, as an edit does
    assert drop_stale_cache(str(pkg))
    assert _cached(pkg) == ["a.cpython-311.pyc", "numba.lock", "sources.sha256"]


def test_cache_it_may_not_write_is_left_alone(tmp_path, rng, monkeypatch):
    """A read-only install (simulated: the tests may run as root, which ignores modes)."""
    pkg = _package(tmp_path, rng)

    def refuse(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "remove", refuse)
    before = _cached(pkg)
    assert not drop_stale_cache(str(pkg))
    assert [n for n in _cached(pkg) if n != "numba.lock"] == before


def _run(pkg_parent, x):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(pkg_parent), REPO])
    out = subprocess.run([sys.executable, "-c", f"from pk.caller import g; print(g({x}))"],
                         env=env, capture_output=True, text=True, check=True)
    return float(out.stdout)


def test_edited_callee_reaches_a_cached_caller(tmp_path, rng):
    """With Numba alone, the second run would print the first run's result (checked)."""
    pk = tmp_path / "pk"
    pk.mkdir()
    _write(pk / "__init__.py", """\
        import os
        from engine.kernels import drop_stale_cache
        drop_stale_cache(os.path.dirname(os.path.abspath(__file__)))
        """)
    _write(pk / "callee.py", """\
        from numba import njit
        @njit(cache=True)
        def f(x):
            return x + 1.0
        """)
    _write(pk / "caller.py", """\
        from numba import njit
        from pk.callee import f
        @njit(cache=True)
        def g(x):
            return f(x) * 2.0
        """)
    x = float(np.round(rng.uniform(1, 9), 3))
    assert _run(tmp_path, x) == (x + 1.0) * 2.0
    assert any(n.startswith("caller.g") for n in os.listdir(pk / "__pycache__"))  # cached
    _write(pk / "callee.py", (pk / "callee.py").read_text().replace("x + 1.0", "x + 100.0"))
    assert _run(tmp_path, x) == (x + 100.0) * 2.0


def _add_signatures(cache_dir, worker, start):
    """One process adding its own signatures to a function's index, as a suite half or an MPI
    rank compiling a kernel does."""
    index = caching.IndexDataCacheFile(cache_dir, "m.f-1.py311", "stamp")
    write_index = index._save_index

    def write_index_slowly(overloads):  # widens Numba's read-modify-write window
        time.sleep(0.005)
        write_index(overloads)

    index._save_index = write_index_slowly
    start.wait()
    for k in range(8):
        index.save(("sig", worker, k), f"code of {worker}.{k}")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks the writers")
def test_processes_adding_signatures_at_once_keep_each_ones_code(tmp_path):
    """Without engine.kernels.guard_numba_cache two writers take the same data file number:
    signatures go missing and others load the wrong code (checked: every run failed)."""
    fork = multiprocessing.get_context("fork")
    start = fork.Barrier(4)
    writers = [fork.Process(target=_add_signatures, args=(str(tmp_path), w, start))
               for w in range(4)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(60)
        assert p.exitcode == 0
    index = caching.IndexDataCacheFile(str(tmp_path), "m.f-1.py311", "stamp")
    loaded = {(w, k): index.load(("sig", w, k)) for w in range(4) for k in range(8)}
    assert loaded == {(w, k): f"code of {w}.{k}" for w in range(4) for k in range(8)}


_COMPILER = """\
import os, sys, time
import numpy as np
import engine.kernels  # noqa: F401  (guards Numba's cache, as importing engine does)
from pk.heavy import f
open(sys.argv[1] + ".ready", "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
f(np.arange(5.0))
print(sum(f.stats.cache_misses.values()), sum(f.stats.cache_hits.values()))
"""


def test_processes_compiling_the_same_signature_at_once_compile_it_once(tmp_path):
    """Two processes ask for the same new signature together: one compiles it, the other waits
    and loads it from the cache (Numba alone compiles it in both)."""
    pk = tmp_path / "pk"
    pk.mkdir()
    _write(pk / "__init__.py", "")
    _write(pk / "heavy.py", """\
        import numpy as np
        from numba import njit
        @njit(cache=True)
        def f(x):
            s = 0.0
            for i in range(x.size):
                s += np.sin(x[i]) * np.cos(x[:i + 1]).sum()
            return s + np.linalg.norm(x) + np.sort(x)[-1]
        """)
    _write(tmp_path / "compiler.py", _COMPILER)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), REPO])
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "compiler.py"),
                               str(tmp_path / f"p{k}"), str(go)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(2)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"p{k}.ready").exists() for k in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.touch()
    counts = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        counts.append(tuple(int(n) for n in out.split()))
    assert sorted(counts) == [(0, 1), (1, 0)], counts  # (compiled, loaded) per process


def test_a_compile_lock_held_too_long_is_passed_by(tmp_path, monkeypatch):
    """A process that holds a signature's lock past COMPILE_WAIT_S (hung, or a compile longer
    than any kernel's) only makes the next one compile it too, as Numba alone would."""
    key = ("m.f-1.py311.nbi", ("float64",), ("x86_64", "cpu", ""))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from engine.kernels import compile_lock\n"
         f"with compile_lock({str(tmp_path)!r}, {key!r}):\n"
         "    print('held', flush=True); time.sleep(60)"],
        env=dict(os.environ, PYTHONPATH=REPO), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(kernels, "COMPILE_WAIT_S", 0.3)
        start = time.monotonic()
        with kernels.compile_lock(str(tmp_path), key):
            waited = time.monotonic() - start
        assert 0.3 <= waited < 5, waited
        start = time.monotonic()
        with kernels.compile_lock(str(tmp_path), key[:2] + (("x86_64", "other", ""),)):
            assert time.monotonic() - start < 0.3  # another target's key is free
    finally:
        holder.kill()
        holder.wait()
    start = time.monotonic()
    with kernels.compile_lock(str(tmp_path), key):  # dropped with the process that held it
        assert time.monotonic() - start < 0.3


def test_a_filesystem_without_record_locks_compiles_at_once(tmp_path, monkeypatch):
    """Where the file system refuses record locks (ENOLCK on some network mounts), compiles
    go on without waiting, as Numba alone does."""
    def refuse(fd, cmd, *args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(kernels.fcntl, "lockf", refuse)
    start = time.monotonic()
    with kernels.compile_lock(str(tmp_path), ("m.f-1.py311.nbi", ("float64",), ())):
        assert time.monotonic() - start < 0.3


_TRAIN_STEP = """\
import hashlib, json, sys
import numpy as np
import engine
from engine.kernels import gemm, seq_rows, seq_units, step

seed = int(sys.argv[1])
rng = np.random.default_rng(seed)
digest = hashlib.sha256()
for B in (2, 5, 9):  # seq_units one row at a time, its 4-row tiles; seq_rows
    lstm = engine.LSTM(3, 64, batch_first=True)
    lstm.load_state_dict({k: rng.normal(0, 0.3, v.shape).astype(np.float32)
                          for k, v in lstm.state_dict().items()})
    x = rng.normal(0, 1, (B, 24, 3)).astype(np.float32)
    out, (h, c) = lstm.forward(x)
    dx = lstm.backward(rng.normal(0, 1, out.shape).astype(np.float32))[0]
    for a in (out, h, c, dx, *(lstm.grads[k] for k in sorted(lstm.grads))):
        digest.update(np.ascontiguousarray(a).tobytes())
stats = [f.stats for m in (gemm, seq_rows, seq_units, step) for f in vars(m).values()
         if hasattr(f, "stats")]
print(json.dumps({"digest": digest.hexdigest(),
                  "compiled": sum(sum(s.cache_misses.values()) for s in stats),
                  "loaded": sum(sum(s.cache_hits.values()) for s in stats)}))
"""


def test_a_step_computes_the_same_whether_its_kernels_compile_or_load(tmp_path, rng):
    """The same forward and backward, in a process that compiles the kernels into an empty
    cache and in one that loads them from it, give the same bits.  With the "contract"
    fast-math flag they did not (B = 2 differed from step 1 on): LLVM fused the other product
    of f * c + i * g in the copy of the cell compiled into each caller, and which copy runs
    depends on what the process loaded first (kernels.KERNEL)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    seed = str(rng.integers(1 << 30))

    def run():
        out = subprocess.run([sys.executable, "-c", _TRAIN_STEP, seed], env=env,
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    compiled, loaded = run(), run()
    assert compiled["compiled"] > 0 and compiled["loaded"] == 0
    assert loaded["loaded"] > 0 and loaded["compiled"] == 0
    assert loaded["digest"] == compiled["digest"]
