"""Kernels of lstm-engine: every Numba kernel, and the NumPy reference they are tested against.

The folder ``kernels/`` of the repository installs as ``engine.kernels`` (a bare ``kernels``
would collide with other projects in site-packages).  Modules refer to each other relatively
and never import ``engine``: the kernels depend only on NumPy, Numba and llvmlite.

===================  ============================================================================
``isa``              the vector ISA Numba compiles for, and the widths and tiles every kernel uses
``reference``        plain NumPy float64 forward/backward of one layer: the oracle of every kernel
``gates``            the LSTM cell math, written once for scalar, vector and CUDA code
``simd``             float32 vectors of the ISA's width (``isa``) for ``@njit`` code
``gemm``             the float32 GEMM (packed panels, register-blocked micro-kernels)
``blas``             float64 GEMMs on single-threaded BLAS, split over Numba's threads
``step``             one time step's fused pointwise cell update over a batch, forward/backward
``seq_rows``         whole-sequence time loops, threads owning batch rows (``..._fwd_rows``)
``seq_units``        whole-sequence time loops, threads owning hidden units (``..._fwd_units``)
``common``           small helpers of the CPU loops: step order, row blocks, padded rows
``finite``           the parallel all-finite check of float32 inputs
``cuda``             the ``@cuda.jit`` kernels of the GPU backend
``cuda_persistent``  persistent ``@cuda.jit`` kernels: all T steps of a layer in one launch
``ctc``              the CTC loss fused with log-softmax, forward-backward per sequence
``ctc_cuda``         the CTC loss as ``@cuda.jit`` kernels
===================  ============================================================================

Layout of every time-loop kernel, CPU and CUDA (time-major, C-contiguous, one layer and one
direction):

    xproj   (T, B, G)  x_t @ W_ih^T + b_ih + b_hh for every step, one GEMM done by the caller
    w_hh_t  (H, G)     W_hh transposed, so the recurrent product is h_prev @ w_hh_t
    w_hh    (G, H)     W_hh as stored, for dh_prev = dz_t @ w_hh in the backward
    lengths (B,)       int64 valid steps per sequence, 1..T (all T for a full batch)
    h, c    (T, B, H)  hidden and cell state after every step (h is the layer output)
    w_hr_t  (H, P)     optional projection (LSTMP, ``proj_size=P``): h = (o * act(c)) @ W_hr^T;
                       then h is (T, B, P), w_hh_t is (P, G), and h_raw (T, B, H) keeps
                       o * act(c) for the backward.  None (the default) means no projection.
    gates   (T, B, G)  activated gates i, f, g, o: all the backward needs besides c.  The
                       forward also takes a (1, B, G) buffer: no backward follows, and the
                       row-split loop stores no gates (a kernel may also use it as scratch,
                       step t in gates[min(t, len(gates) - 1)])
    dz      (T, B, G)  gate pre-activation gradients, input to the weight-gradient GEMMs

``reverse`` runs time from T-1 down to 0; results stay indexed by real time t.  Step t of
sequence b is valid when t < lengths[b].  Padded steps write zeros to h and c, get dz = 0, and
pass the state gradient through unchanged; the state entering a sequence's first valid step is
its h0/c0 (for ``reverse`` that is step lengths[b]-1).  This is pack_padded_sequence semantics.

A whole CPU time loop lives inside one @njit function, so a step costs no Python overhead, and
nothing is allocated inside it: every buffer, scratch included, comes from the caller.

Gate order everywhere is PyTorch's: i, f, g, o, stacked along the G = 4H axis.
Dimension letters: T time, B batch, I input, H hidden, G = 4H gates, P projection.

Unless a figure names another machine, the measured figures in these docstrings were taken on
a 2-core AMD EPYC Zen 5 with AVX-512 (2026-11); ``python -m bench.kernels`` re-runs the
kernel-level ones on the machine at hand.
"""
import contextlib
import errno
import functools
import hashlib
import os
import time

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; Numba's cache goes unguarded there
    fcntl = None

# Activation codes passed to kernels (Numba kernels take plain ints, not strings); see
# kernels.gates.  ACT_FAST is or-ed in by a backend for float32 work.
ACT_TANH = 0
ACT_RELU = 1
ACT_FAST = 2
ACTIVATIONS = {"tanh": ACT_TANH, "relu": ACT_RELU}

# Options of every CPU @njit kernel: cached compilation and NumPy's error model (Numba's
# ZeroDivisionError check would keep LLVM from vectorising the pointwise loops).  No fast-math
# flag, not even "contract": with it LLVM chose per compiled copy which product of
# f * c + i * g to fuse, and Numba runs whichever copy of a function loaded first (a function
# called from several kernels is compiled into each), so a network trained in a process that
# compiled its kernels differed in the last bits from one that loaded them from the cache,
# and a long training run grew that into a different model (tests/kernels/test_cache.py).  The
# fused multiply-adds are written out instead (kernels.simd: fma, muladd), one rounding
# wherever the target has FMA.
KERNEL = dict(cache=True, error_model="numpy")


def drop_stale_cache(package_dir):
    """Delete Numba's cached machine code in ``package_dir/__pycache__`` unless it was written
    from the package's ``*.py`` files as they are now.  Returns whether it was deleted.

    Numba checks only the timestamp of the file that defines a cached function, not of the
    files it calls into: after an edit to ``gates.py`` the cached kernels of ``cpu.py`` would
    keep running the old cell math (``tests/kernels/test_cache.py`` shows it on a two-file
    package).  Here the cache is keyed on every source of the package instead.  It must run
    before the first kernel call (loading from the cache happens then, not at import).  The
    check and the drop hold the cache's lock (``cache_lock``), so of several processes started
    at once one drops and the others keep what it compiles from then on.  Only
    the in-tree cache is kept fresh: where the package directory is read-only, or
    ``NUMBA_CACHE_DIR`` is set, Numba caches elsewhere and nothing here touches that.
    """
    cache = os.path.join(package_dir, "__pycache__")
    digest = hashlib.sha256()
    for name in sorted(f for f in os.listdir(package_dir) if f.endswith(".py")):
        with open(os.path.join(package_dir, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read() + b"\0")
    stamp = os.path.join(cache, "sources.sha256")
    if _read(stamp) == digest.hexdigest():
        return False
    try:
        os.makedirs(cache, exist_ok=True)
        with cache_lock(cache, exclusive=True):
            if _read(stamp) == digest.hexdigest():  # another process dropped it meanwhile
                return False
            _drop_numba_files(cache)
            tmp = f"{stamp}.{os.getpid()}"
            with open(tmp, "w") as f:
                f.write(digest.hexdigest())
            os.replace(tmp, stamp)  # atomic: a concurrent import reads the old or the new stamp
    except OSError:  # not ours to write (a read-only install)
        return False
    return True


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _drop_numba_files(cache):
    for name in os.listdir(cache):
        if name.endswith((".nbi", ".nbc")):
            with contextlib.suppress(FileNotFoundError):  # another process got there first
                os.remove(os.path.join(cache, name))


@contextlib.contextmanager
def cache_lock(cache_dir, exclusive):
    """Hold ``cache_dir/numba.lock``: exclusive to change the directory's cached code, shared
    to read it.  Where the lock file cannot be created (a read-only directory, which nobody
    writes to either) or the platform has no ``fcntl``, nothing is locked."""
    try:
        fd = os.open(os.path.join(cache_dir, "numba.lock"), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        fd = None
    try:
        if fd is not None and fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def _under_cache_lock(method, exclusive):
    @functools.wraps(method)
    def locked(self, *args):
        with cache_lock(self._cache_path, exclusive):
            return method(self, *args)
    locked.under_cache_lock = True
    return locked


# How long a process waits for another one compiling the same function and signature before
# it compiles them itself, as it would without the lock (a compile takes up to about a minute
# on a 2-core first-generation Zen).
COMPILE_WAIT_S = 300.0
_lock_files = {}  # cache directory -> descriptor of its compile.lock, open for the process's life
_held = set()     # (descriptor, byte) this process holds


@contextlib.contextmanager
def compile_lock(cache_dir, key):
    """Hold the byte of ``cache_dir/compile.lock`` that ``key`` hashes to while this process
    compiles what ``key`` names.  Another process about to compile the same waits, then finds
    the machine code in the cache instead of compiling it a second time beside the first.

    POSIX record locks, one byte per key, so one file serves every function and signature.
    They belong to the process (a nested ``compile_lock`` of a held key holds nothing more)
    and drop when it exits, however it ends.  A lock that cannot be had within
    ``COMPILE_WAIT_S``, or a directory where the file cannot be created, only costs the
    duplicate compile this saves.
    """
    fd = _lock_file(cache_dir)
    byte = int(hashlib.sha256(repr(key).encode()).hexdigest()[:10], 16)  # below 2**40
    got = fd is not None and (fd, byte) not in _held and _lock_byte(fd, byte)
    if got:
        _held.add((fd, byte))
    try:
        yield
    finally:
        if got:
            _held.discard((fd, byte))
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, byte)


def _lock_file(cache_dir):
    if fcntl is None:
        return None
    if cache_dir not in _lock_files:
        try:  # never closed: closing any descriptor of the file drops the process's locks on it
            os.makedirs(cache_dir, exist_ok=True)
            _lock_files[cache_dir] = os.open(os.path.join(cache_dir, "compile.lock"),
                                             os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            _lock_files[cache_dir] = None
    return _lock_files[cache_dir]


def _lock_byte(fd, byte):
    deadline, pause = time.monotonic() + COMPILE_WAIT_S, 0.01
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
            return True
        except OSError as e:  # EACCES, EAGAIN: another process holds it
            if e.errno not in (errno.EACCES, errno.EAGAIN) or time.monotonic() > deadline:
                return False  # or no record locks here (ENOLCK on some network file systems)
            time.sleep(pause)
            pause = min(2 * pause, 0.2)


def _compiling_once(compile):
    """``Dispatcher.compile`` under ``compile_lock`` for every function with an on-disk cache,
    keyed on what Numba's cache index keys the machine code on: the function, the argument
    types and the target (CPU name and features)."""
    from numba.core import caching, sigutils
    from numba.core.compiler_lock import global_compiler_lock

    @functools.wraps(compile)
    def once(self, sig):
        if not isinstance(self._cache, caching.Cache):
            return compile(self, sig)
        with global_compiler_lock:  # one thread of the process compiles at a time, as in compile
            args, _ = sigutils.normalize_signature(sig)
            if tuple(args) in self.overloads:
                return compile(self, sig)
            key = (self._cache._cache_file._index_name, tuple(args),
                   self.targetctx.codegen().magic_tuple())
            with compile_lock(self._cache.cache_path, key):
                return compile(self, sig)
    once.compiling_once = True
    return once


def guard_numba_cache():
    """Make Numba's on-disk cache safe for processes that compile at the same time, and have
    them compile each function and signature once between them.

    Numba's ``IndexDataCacheFile.save`` reads a function's index, takes the first free data
    file number and writes the index back, unlocked.  Two processes adding different
    signatures at once (the suite's halves from a fresh clone; the ranks of an MPI run on a
    fresh install) can take the same number: the index then maps one signature to the machine
    code of the other.  CI saw it: ``gemm`` called with a bias row ran the code compiled for
    ``bias=None`` and ignored the bias.  Saving under an exclusive lock on the cache directory,
    and loading under a shared one, closes that window (``tests/kernels/test_cache.py``).
    Processes started together from a fresh install (``make test``'s halves, the ranks of an
    MPI run) also ask for the same kernels at about the same time, and each compiled all of
    them: ``compile_lock`` makes one compile and the others load (from a fresh clone on a
    2-core first-generation Zen, the suite's two halves compiled 89 of the same signatures,
    about 75 s each).
    It applies to every ``cache=True`` function of the process, the user's own included.
    """
    from numba.core import caching, dispatcher
    cls = caching.IndexDataCacheFile
    if not getattr(cls.save, "under_cache_lock", False):
        cls.save = _under_cache_lock(cls.save, exclusive=True)
        cls.load = _under_cache_lock(cls.load, exclusive=False)
    if not getattr(dispatcher.Dispatcher.compile, "compiling_once", False):
        dispatcher.Dispatcher.compile = _compiling_once(dispatcher.Dispatcher.compile)


guard_numba_cache()
drop_stale_cache(os.path.dirname(os.path.abspath(__file__)))
