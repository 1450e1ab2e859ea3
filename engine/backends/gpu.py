"""GPU backend: numba.cuda kernels with CuPy buffers and cuBLAS GEMMs.

``GPUBackend`` implements ``engine.backends.base.Backend``.  Device buffers are
CuPy arrays (the orchestrator allocates them through ``backend.xp``); the input projection
and the weight gradients are cuBLAS GEMMs through CuPy.  The time loop of a layer and
direction runs on one of three paths (``choose_path``), forward and backward alike:

- ``"persistent"``: one launch of ``kernels.cuda_persistent``'s kernel runs all T steps; each
  block keeps its slice of W_hh in shared memory and the grid synchronises between steps.
  Not with ``proj_size``, and only where its plan fits: the weights of a slice in 48 KiB of
  shared memory and every block co-resident (``kernels.cuda_persistent.plan``).
- ``"graph"``: the per-step launches below, captured once into a CUDA graph by CuPy's stream
  capture and replayed: one host call a sequence, plus a few copies into backend-owned
  buffers (the graph is bound to addresses; see ``_fwd_graph``).  The first sequence of a
  shape runs per step (it compiles the kernels); a failed capture warns and falls back to
  per step for good.  Needs CuPy: under the simulator it runs per step (the tests put
  ``EmulatedGraphs`` in its place).
- per step: a Python loop of launches, each step one fused kernel (``"fused"``: the
  recurrent product through shared-memory tiles of W_hh, and the gates) or the cuDNN/haste
  split (``"gemm"``: gather h_prev, a cuBLAS ``h_prev @ W_hh^T``, the pointwise kernel); the
  backward: the pointwise kernel, a cuBLAS ``dz_t @ W_hh`` and ``keep_valid_rows_kernel``.
  Every buffer is allocated before the loop.

``GPUBackend(fwd_variant=...)`` or ``ENGINE_GPU_FWD`` chooses: ``"persistent"`` (where it
fits, else as ``"auto"`` without it), ``"graph"`` (where capture works, else per step),
``"fused"`` or ``"gemm"`` (per step), or ``"auto"`` (default): persistent up to
PERSISTENT_MAX_CELLS = B * H cells a step where it fits, else the graph where the sequence can
be captured (``_capturable``), else per step; the per-step kernel inside a graph or loop is
``fused`` up to FUSED_MAX_CELLS, else ``gemm``; a projection always takes ``gemm``.  The rule
was set from the grid measured on an NVIDIA H200 (``bash bench/device.sh lease``; figures in
``bench/results/gpu-nvidia-h200-paths.md``): T = 100, H in {128, 512}, B in {1, 16, 64, 256},
each path against cuDNN in the same run.  There the persistent kernels were the fastest path
at every shape up to 32768 cells and the slowest above it, and the fused per-step kernel beat
cuBLAS + pointwise up to the same size.  CuPy refuses cuBLAS calls inside a stream capture, so
on a GPU only a forward on the fused kernel is captured; the backward, which needs a GEMM a
step, runs per step.  None of the paths reaches cuDNN at these sizes yet (see that file).

Streams: every CuPy operation runs on CuPy's current stream, and the Numba kernels are
launched on that same stream (``_current_stream``), so kernels and GEMMs are ordered without
any host synchronisation.  The arrays reach the kernels as Numba device arrays made once per
sequence with ``cuda.as_cuda_array(a, sync=False)``: with CAI v3 the default (sync=True)
would synchronise the exporting stream on every launch, which is needless here since
producer and consumer share one stream.  Every launch and array operation of the time loops
goes through ``_launch``, ``_gemm``, ``_add`` and ``_copy``: one place to record a capture or
count launches.

Under ``NUMBA_ENABLE_CUDASIM=1`` the backend is usable without a GPU: the kernels run in
Numba's simulator and NumPy stands in for CuPy (``xp = numpy``), so the whole orchestration is
tested on any machine.  There the persistent kernel runs as one block owning SIM_SLICES slices
(the simulator's cooperative grids have one block).  ``backend="auto"`` never picks the
simulator (see ``gpu_available``).
"""
import contextlib
import functools
import os
import warnings

import numba
import numpy as np

from engine.backends.base import Backend
from engine.backends.cpu import host_all_finite

INSTALL_HINT = ("install the GPU extra: pip install 'lstm-engine[gpu]' (CUDA 12 drivers) or "
                "'lstm-engine[gpu-cuda13]' (CUDA 13 drivers)")
FWD_VARIANTS = ("auto", "persistent", "graph", "fused", "gemm")
# "auto": the persistent kernels up to this many cells (B * H) a step, where they fit; per step,
# the fused kernel up to FUSED_MAX_CELLS, cuBLAS + pointwise above.  Both measured on an H200
# (module docstring): at H = 512, B = 256 (131072 cells) cuBLAS + pointwise took 17 ms for
# inference against the fused kernel's 41 ms and the persistent kernel's 37 ms.
PERSISTENT_MAX_CELLS = 32768
FUSED_MAX_CELLS = 32768

# Captured graphs kept (one per layer, direction, forward/backward and buffer set).
GRAPH_CACHE_SIZE = 32
# The simulator's persistent launch: one block of SIM_THREADS threads owning SIM_SLICES unit
# slices (its cooperative grids have one block; Python threads make big blocks slow).
SIM_SLICES = 3
SIM_THREADS = 32


def auto_wants_persistent(B, H):
    """Whether "auto" tries the persistent kernels for B rows and H units (where they fit)."""
    return B * H <= PERSISTENT_MAX_CELLS


def auto_variant(B, H):
    """The per-step forward kernel "auto" takes for B rows and H units."""
    return "fused" if B * H <= FUSED_MAX_CELLS else "gemm"


def simulator_enabled():
    """Whether numba.cuda runs in its simulator (NUMBA_ENABLE_CUDASIM=1 before import)."""
    return bool(numba.config.ENABLE_CUDASIM)


def gpu_available(allow_simulator=True):
    """(usable, reason): whether the GPU backend can run here, and if not, why.

    With ``allow_simulator`` (the default, what ``backend="gpu"`` uses) the CUDA simulator
    counts as usable; ``backend="auto"`` passes False, since the simulator is a test tool,
    hundreds of times slower than the CPU backend.
    """
    if simulator_enabled():
        if allow_simulator:
            return True, "CUDA simulator (NUMBA_ENABLE_CUDASIM=1), NumPy standing in for CuPy"
        return False, "only the CUDA simulator is enabled (NUMBA_ENABLE_CUDASIM=1)"
    from numba import cuda

    try:
        if not cuda.is_available():
            return False, "no usable CUDA driver or NVIDIA GPU found; " + INSTALL_HINT
    except Exception as e:  # a broken driver install raises instead of answering False
        return False, f"the CUDA driver could not be loaded ({e}); " + INSTALL_HINT
    try:
        import cupy
    except ImportError as e:
        return False, f"CuPy is not installed ({e}); " + INSTALL_HINT
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return False, f"CuPy cannot reach a GPU ({e}); " + INSTALL_HINT
    if n < 1:
        return False, "CuPy sees no GPU; " + INSTALL_HINT
    return True, f"CUDA with {n} device(s)"


@functools.cache
def use_rank_device(simulated):
    """The GPU this process computes on, chosen once per process: its local rank (from the
    MPI or Slurm launcher's environment) modulo the devices it sees
    (``engine.distributed.device_for_rank``), so the ranks of one machine spread over its
    GPUs; device 0 for a process started alone.  Selected in CuPy and Numba alike."""
    from numba import cuda

    from engine.distributed import device_for_rank

    device = device_for_rank(len(cuda.gpus))
    if device and not simulated:
        import cupy

        cupy.cuda.Device(device).use()
        cuda.select_device(device)
    return device


class GPUBackend(Backend):
    """numba.cuda kernels, CuPy arrays (NumPy under the simulator), cuBLAS GEMMs.

    Args:
        fwd_variant: "auto", "persistent", "graph", "fused" or "gemm"; None reads
            ``ENGINE_GPU_FWD`` (default "auto").  See the module docstring.

    ``graphs``: how CUDA graphs are captured (``CupyGraphs`` on a GPU; None, no graphs, in
    the simulator, where tests may set ``EmulatedGraphs()``).

    Raises RuntimeError, saying why and how to install, when the GPU is not usable.
    """

    name = "gpu"

    def __init__(self, fwd_variant=None):
        ok, why = gpu_available()
        if not ok:
            raise RuntimeError(f"backend='gpu' is not usable: {why}")
        if fwd_variant is None:
            fwd_variant = os.environ.get("ENGINE_GPU_FWD", "auto") or "auto"
        if fwd_variant not in FWD_VARIANTS:
            raise ValueError(f"fwd_variant must be one of {FWD_VARIANTS}, got {fwd_variant!r}")
        self.fwd_variant = fwd_variant
        self.simulated = simulator_enabled()
        self.device = use_rank_device(self.simulated)
        self._plans, self._bufs, self._graph_cache, self._warm = {}, {}, {}, set()
        self._sink = None  # a list while EmulatedGraphs captures
        if self.simulated:
            self.xp = np
            self.graphs = None  # no CuPy: no stream capture (tests set EmulatedGraphs())
        else:
            import cupy

            self.xp = cupy
            self.graphs = CupyGraphs()

    def __repr__(self):
        return f"GPUBackend(fwd_variant={self.fwd_variant!r}, simulated={self.simulated})"

    # ------------------------------------------------------------------ arrays
    def asarray(self, a):
        """Bring user input onto the device (no copy when it already is a device array)."""
        return self.xp.asarray(a)

    def to_user(self, a, like):
        """``a`` as the user's array type: a NumPy copy unless ``like`` is a CuPy array."""
        if type(like).__module__.startswith("cupy"):
            return a
        return self.to_numpy(a)

    def to_numpy(self, a):
        if self.simulated or isinstance(a, np.ndarray):
            return np.asarray(a)
        return self.xp.asnumpy(a)

    def matmul(self, a, b, out=None, bias=None):
        out = self.xp.matmul(a, b, out=out)
        if bias is not None:
            out += bias
        return out

    def all_finite(self, a):
        if isinstance(a, np.ndarray):  # host data (the training stack checks it before copying)
            return host_all_finite(a)
        return bool(self.xp.isfinite(a).all())

    def scatter_add(self, target, idx, rows):
        if self.simulated:
            np.add.at(target, idx, rows)
        else:
            import cupyx

            cupyx.scatter_add(target, idx, rows)

    def synchronize(self):
        if not self.simulated:
            self.xp.cuda.get_current_stream().synchronize()

    # ------------------------------------------------------------------ sequence loops
    def choose_fwd_variant(self, B, H):
        """The per-step forward kernel ("fused" or "gemm") for a batch of B rows and H units:
        the one named, else fused up to FUSED_MAX_CELLS = B * H.  The graph path captures it
        too."""
        if self.fwd_variant in ("fused", "gemm"):
            return self.fwd_variant
        return auto_variant(B, H)

    def choose_path(self, op, B, H, dtype, proj=False, args=None):
        """(path, detail) that runs ``op`` ("fwd" or "bwd") for B rows and H units.

        ("persistent", Plan) when the persistent kernel is asked for or "auto" has B * H <=
        PERSISTENT_MAX_CELLS, without a projection, and its plan fits (``_persistent_plan``);
        else ("graph", variant) when this sequence can be captured here (``_capturable``);
        else ("step", variant): a host loop of per-step launches.  variant is the per-step forward
        kernel (``choose_fwd_variant``; "gemm" with a projection).  "fused"/"gemm" always run
        per step.  ``args``: a thunk giving the persistent kernel's arguments (to ask the
        driver how many blocks fit); unused in the simulator.
        """
        variant = "gemm" if proj else self.choose_fwd_variant(B, H)
        if self.fwd_variant in ("fused", "gemm"):
            return "step", variant
        want = self.fwd_variant == "persistent" or (
            self.fwd_variant == "auto" and auto_wants_persistent(B, H))
        if want and not proj:
            plan = self._persistent_plan(op, B, H, dtype, args)
            if plan is not None:
                return "persistent", plan
        if self._capturable(op, variant):
            return "graph", variant
        return "step", variant

    def _capturable(self, op, variant):
        """Whether the per-step launches of ``op`` with this forward variant can be captured
        into a graph here: graphs exist and they record GEMMs, or the sequence has none (a
        forward on the fused kernel; every backward step has a cuBLAS product)."""
        if self.graphs is None:
            return False
        return self.graphs.records_gemm or (op == "fwd" and variant == "fused")

    def _persistent_plan(self, op, B, H, dtype, args):
        """The launch plan of the persistent ``op`` kernel, or None where it cannot run (see
        ``kernels.cuda_persistent.plan``); cached per shape.  In the simulator: one block
        owning min(H, SIM_SLICES) slices, within the same shared-memory limit.  If the plan
        cannot be made (the kernel does not compile for this device), warn once per shape and
        answer None: the other paths run."""
        key = (op, B, H, np.dtype(dtype))
        if key not in self._plans:
            try:
                self._plans[key] = self._make_plan(op, B, H, np.dtype(dtype).itemsize, args)
            except Exception as e:  # noqa: BLE001 - e.g. the kernel does not compile here
                warnings.warn(f"the persistent {op} kernel cannot run here ({type(e).__name__}: "
                              f"{e}); this shape takes the other GPU paths", RuntimeWarning,
                              stacklevel=4)
                self._plans[key] = None
        return self._plans[key]

    def _make_plan(self, op, B, H, itemsize, args):
        from engine.kernels import cuda_persistent as P

        if self.simulated:
            plan = P.plan_virtual(B, H, itemsize, SIM_SLICES, threads=SIM_THREADS)
            return plan if plan.shared_bytes <= P.SHARED_LIMIT else None
        from numba import cuda

        kernel = P.lstm_seq_fwd_persistent_kernel if op == "fwd" else \
            P.lstm_seq_bwd_persistent_kernel
        sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
        return P.plan(B, H, itemsize, sms,
                      lambda nbytes: P.coresident_blocks(kernel, args(), P.THREADS, nbytes))

    def seq_fwd(self, xproj, w_hh_t, h0, c0, lengths, act, reverse, h, c, gates, scratch,
                w_hr_t=None, h_raw=None):
        """``Backend.seq_fwd`` on the path ``choose_path`` gives.

        scratch: workspace buffers "h_prev" (B,R) and "rec" (B,G), used by the gemm variant.
        With a projection (w_hr_t (H,P), h_raw (T,B,H)) the gemm variant always runs: its
        pointwise kernel writes o * act(c) to h_raw[t] and a cuBLAS GEMM projects it to h[t].
        """
        w_hh_t = self._contiguous("w_hh_t", w_hh_t)  # the orchestrator passes W_hh.T, a view
        if w_hr_t is not None:
            w_hr_t = self._contiguous("w_hr_t", w_hr_t)
        T, B, H = c.shape
        arrays = (xproj, w_hh_t, h0, c0, lengths)
        path, detail = self.choose_path(
            "fwd", B, H, c.dtype, proj=w_hr_t is not None,
            args=lambda: self._fwd_persistent_args(*arrays, act, reverse, h, c, gates, None))
        if path == "persistent":
            self._launch_persistent_fwd(detail, *arrays, act, reverse, h, c, gates)
        elif path == "graph":
            self._fwd_graph(detail, *arrays, act, reverse, h, c, gates, scratch, w_hr_t, h_raw)
        else:
            self._fwd_steps(detail, *arrays, act, reverse, h, c, gates, scratch, w_hr_t, h_raw)

    def _fwd_steps(self, variant, xproj, w_hh_t, h0, c0, lengths, act, reverse, h, c, gates,
                   scratch, w_hr_t, h_raw):
        """The per-step forward: per step one fused kernel, or gather + cuBLAS + pointwise
        (+ the projection GEMM)."""
        from engine.kernels import cuda as K

        T, B, H = c.shape
        cfg = (*K.launch_config(B, H), self._current_stream())
        k_xproj, k_w, k_h0, k_c0, k_len, k_h, k_c, k_gates = self._kernel_args(
            xproj, w_hh_t, h0, c0, lengths, h, c, gates)
        if w_hr_t is None and variant == "fused":
            for t, p in step_order(T, reverse):
                self._launch(K.lstm_step_fwd_kernel, cfg, k_xproj, k_w, k_h0, k_c0, k_len, t,
                             p, act, k_h, k_c, k_gates)
            return
        h_prev, rec = scratch["h_prev"], scratch["rec"]
        k_h_prev, k_rec = self._kernel_args(h_prev, rec)
        k_cell_out = k_h if h_raw is None else self._kernel_args(h_raw)[0]
        for t, p in step_order(T, reverse):
            self._launch(K.gather_prev_kernel, cfg, k_h, k_h0, p, k_len, k_h_prev)
            self._gemm(h_prev, w_hh_t, rec)
            self._launch(K.lstm_step_pointwise_fwd_kernel, cfg, k_xproj, k_rec, k_c0, k_len, t,
                         p, act, k_cell_out, k_c, k_gates)
            if h_raw is not None:
                self._gemm(h_raw[t], w_hr_t, h[t])

    def _fwd_persistent_args(self, xproj, w_hh_t, h0, c0, lengths, act, reverse, h, c, gates,
                             plan):
        """The persistent forward kernel's arguments (plan None: placeholders, for typing)."""
        slices, split = (1, 1) if plan is None else (plan.slices, plan.split)
        k_x, k_w, k_h0, k_c0, k_len, k_h, k_c, k_g = self._kernel_args(
            xproj, w_hh_t, h0, c0, lengths, h, c, gates)
        return (k_x, k_w, k_h0, k_c0, k_len, act, int(reverse), slices, split, 0, c.shape[0],
                k_h, k_c, k_g)

    def _launch_persistent_fwd(self, plan, *arrays):
        from engine.kernels import cuda_persistent as P

        cfg = (plan.blocks, plan.threads, self._current_stream(), plan.shared_bytes)
        self._launch(P.lstm_seq_fwd_persistent_kernel, cfg,
                     *self._fwd_persistent_args(*arrays, plan))

    def _fwd_graph(self, variant, xproj, w_hh_t, h0, c0, lengths, act, reverse, h, c, gates,
                   scratch, w_hr_t, h_raw):
        """The per-step forward replayed as one CUDA graph.  The graph reads and writes
        backend-owned copies of what the caller may pass in new buffers from call to call
        (h0, c0, lengths, the weights, the output h); the Workspace's buffers (xproj, c, gates,
        h_raw, scratch) are part of the graph's key."""
        st = self._stage
        h0s, c0s, lens, ws = st("h0", h0), st("c0", c0), st("lengths", lengths), \
            st("w_hh_t", w_hh_t)
        wrs = None if w_hr_t is None else st("w_hr_t", w_hr_t)
        hs = self._buffer("h", h.shape, h.dtype)
        key = ("fwd", variant, act, bool(reverse), h.shape, c.shape, np.dtype(c.dtype).str,
               _ptrs(xproj, c, gates, h_raw, scratch.get("h_prev"), scratch.get("rec"), hs, h0s,
                     c0s, lens, ws, wrs))
        self._replay(key, lambda: self._fwd_steps(variant, xproj, ws, h0s, c0s, lens, act,
                                                  reverse, hs, c, gates, scratch, wrs, h_raw))
        self._copy(h, hs)

    def seq_bwd(self, dout, gates, c, c0, w_hh, lengths, act, reverse, dh, dc, dz, scratch,
                w_hr=None, dh_proj=None):
        """``Backend.seq_bwd`` on the path ``choose_path`` gives.

        dh, dc (B,H) updated in place (final-state gradients in, h0/c0 gradients out).
        scratch: workspace buffer "dh_rec" (B,H) for the per-step GEMM dz_t @ W_hh.
        """
        T, B, H = c.shape
        arrays = (dout, gates, c, c0, w_hh, lengths)
        path, detail = self.choose_path(
            "bwd", B, H, c.dtype, proj=w_hr is not None,
            args=lambda: self._bwd_persistent_args(*arrays, act, reverse, dh, dc, dz, None))
        if path == "persistent":
            self._launch_persistent_bwd(detail, *arrays, act, reverse, dh, dc, dz)
        elif path == "graph":
            self._bwd_graph(*arrays, act, reverse, dh, dc, dz, scratch, w_hr, dh_proj)
        else:
            proj = None if w_hr is None else (self._buffer("dh_raw", c.shape, c.dtype),
                                              self._zeros("zero", c.shape[1:], c.dtype))
            self._bwd_steps(*arrays, act, reverse, dh, dc, dz, scratch, w_hr, dh_proj, proj)

    def _bwd_steps(self, dout, gates, c, c0, w_hh, lengths, act, reverse, dh, dc, dz, scratch,
                   w_hr, dh_proj, proj):
        """The per-step backward: per step the pointwise kernel, a cuBLAS dz_t @ W_hh and the
        row copy.  proj: (dh_raw (T,B,H) scratch, a (B,H) zero) with a projection, else None."""
        from engine.kernels import cuda as K

        T, B, H = c.shape
        cfg = (*K.launch_config(B, H), self._current_stream())
        dh_rec = scratch["dh_rec"]
        if w_hr is not None:
            # The pointwise kernel takes dout[t] + dh on o * act(c): with a projection that is
            # (dout[t] + dh) @ W_hr, formed per step into dh_raw[t] with a zero carry.
            dh_raw, zero = proj
        k_dout, k_gates, k_c, k_c0, k_len, k_dh, k_dc, k_dz, k_dh_rec = self._kernel_args(
            dout if w_hr is None else dh_raw, gates, c, c0, lengths, dh, dc, dz, dh_rec)
        k_dh_step = k_dh if w_hr is None else self._kernel_args(zero)[0]
        for t, p in reversed(step_order(T, reverse)):
            if w_hr is not None:
                self._add(dout[t], dh, dh_proj[t])
                self._gemm(dh_proj[t], w_hr, dh_raw[t])
            self._launch(K.lstm_step_bwd_kernel, cfg, k_gates, k_c, k_c0, k_dout, k_len, t, p,
                         act, k_dh_step, k_dc, k_dz)
            self._gemm(dz[t], w_hh, dh_rec)
            self._launch(K.keep_valid_rows_kernel, cfg, k_dh_rec, t, k_len, k_dh)

    def _bwd_persistent_args(self, dout, gates, c, c0, w_hh, lengths, act, reverse, dh, dc, dz,
                             plan):
        slices, split = (1, 1) if plan is None else (plan.slices, plan.split)
        k_dout, k_g, k_c, k_c0, k_w, k_len, k_dh, k_dc, k_dz = self._kernel_args(
            dout, gates, c, c0, w_hh, lengths, dh, dc, dz)
        return (k_g, k_c, k_c0, k_dout, k_w, k_len, act, int(reverse), slices, split, 0,
                2 * c.shape[0], k_dh, k_dc, k_dz)

    def _launch_persistent_bwd(self, plan, *arrays):
        from engine.kernels import cuda_persistent as P

        cfg = (plan.blocks, plan.threads, self._current_stream(), plan.shared_bytes)
        self._launch(P.lstm_seq_bwd_persistent_kernel, cfg,
                     *self._bwd_persistent_args(*arrays, plan))

    def _bwd_graph(self, dout, gates, c, c0, w_hh, lengths, act, reverse, dh, dc, dz, scratch,
                   w_hr, dh_proj):
        """The per-step backward replayed as one CUDA graph, on backend-owned copies of dout,
        c0, lengths, the weights, dh and dc (copied back after the replay); gates, c, dz and
        the scratch come from the Workspace and key the graph (as in ``_fwd_graph``)."""
        st = self._stage
        douts, c0s, lens, ws = st("dout", dout), st("c0", c0), st("lengths", lengths), \
            st("w_hh", w_hh)
        dhs, dcs = st("dh", dh), st("dc", dc)
        wrs = proj = None
        if w_hr is not None:
            wrs = st("w_hr", w_hr)
            proj = (self._buffer("dh_raw", c.shape, c.dtype),
                    self._zeros("zero", c.shape[1:], c.dtype))
        key = ("bwd", act, bool(reverse), dout.shape, c.shape, np.dtype(c.dtype).str,
               _ptrs(gates, c, dz, scratch.get("dh_rec"), dh_proj, douts, c0s, lens, ws, dhs,
                     dcs, wrs, *(proj or ())))
        self._replay(key, lambda: self._bwd_steps(douts, gates, c, c0s, ws, lens, act, reverse,
                                                  dhs, dcs, dz, scratch, wrs, dh_proj, proj))
        self._copy(dh, dhs)
        self._copy(dc, dcs)

    def ctc(self, logits, labels, input_lengths, target_lengths, scale, blank, zero_infinity):
        """``Backend.ctc``: the three kernels of ``kernels.ctc_cuda`` on float64 work arrays."""
        from engine.kernels import ctc_cuda as K

        xp, (T, B, C), S = self.xp, logits.shape, labels.shape[1]
        logits = xp.ascontiguousarray(logits)
        logp = xp.empty((T, B, C), np.float64)
        alpha, beta = xp.empty((B, T, S)), xp.empty((B, T, S))
        nll, grad = xp.empty(B), xp.empty_like(logits)
        labels, input_lengths, target_lengths, scale = (
            xp.asarray(a) for a in (labels, input_lengths, target_lengths, scale))
        args = self._kernel_args(logits, logp, alpha, beta, nll, grad, labels, input_lengths,
                                 target_lengths, scale)
        k_logits, k_logp, k_alpha, k_beta, k_log_p, k_grad, k_lab, k_in, k_tl, k_scale = args
        (grid, block), stream = K.frame_launch(T, B), self._current_stream()
        K.ctc_log_softmax_kernel[grid, block, stream](k_logits, k_in, k_logp)
        threads = min(K.POSITION_THREADS, S)
        K.ctc_alpha_beta_kernel[B, threads, stream](k_logp, k_lab, k_in, k_tl, k_alpha, k_beta,
                                                    k_log_p)
        K.ctc_grad_kernel[grid, block, stream](k_logp, k_lab, k_in, k_tl, k_alpha,
                                                       k_beta, k_log_p, k_scale,
                                                       zero_infinity, k_grad)
        # nll holds log p until here; the infeasible ones follow zero_infinity
        nll = -nll
        if zero_infinity:
            nll[xp.isinf(nll)] = 0.0
        return nll, grad

    # ------------------------------------------------------------------ launch points
    # Every kernel launch and array operation of the time loops goes through these four, so
    # that a graph capture can be emulated (``EmulatedGraphs``) and the tests can count them.
    def _issue(self, op):
        if self._sink is not None:  # an emulated capture records instead of running
            self._sink.append(op)
        else:
            op()

    def _launch(self, kernel, config, *args):
        """kernel[config](*args); config is (grid, block, stream[, dynamic shared bytes])."""
        self._issue(lambda: kernel[config](*args))

    def _gemm(self, a, b, out):
        xp = self.xp  # bound now: a captured operation is fixed at capture
        self._issue(lambda: xp.matmul(a, b, out=out))

    def _add(self, a, b, out):
        xp = self.xp
        self._issue(lambda: xp.add(a, b, out=out))

    def _copy(self, dst, src):
        xp = self.xp
        self._issue(lambda: xp.copyto(dst, src))

    # ------------------------------------------------------------------ buffers and graphs
    def _buffer(self, role, shape, dtype):
        """A backend-owned buffer, one per (role, shape, dtype), kept for the backend's life:
        the same address on every call, which a captured graph needs."""
        key = (role, tuple(shape), np.dtype(dtype))
        if key not in self._bufs:
            self._bufs[key] = self.xp.empty(shape, dtype)
        return self._bufs[key]

    def _zeros(self, role, shape, dtype):
        """Like ``_buffer``, zero when made; nothing writes it."""
        key = (role, tuple(shape), np.dtype(dtype))
        if key not in self._bufs:
            self._bufs[key] = self.xp.zeros(shape, dtype)
        return self._bufs[key]

    def _stage(self, role, a):
        """A copy of ``a`` in the backend-owned buffer of its role (one copy launch)."""
        buf = self._buffer("stage:" + role, a.shape, a.dtype)
        self._copy(buf, a)
        return buf

    def _contiguous(self, role, a):
        """``a`` itself when C-contiguous, else a copy in the buffer of its role."""
        if a.flags.c_contiguous:
            return a
        buf = self._buffer(role, a.shape, a.dtype)
        self._copy(buf, a)
        return buf

    def _replay(self, key, record):
        """Run ``record`` (a sequence's launches) as one CUDA graph: captured on the second
        call with this key's shapes (the first runs it directly, compiling the kernels and
        initialising cuBLAS outside any capture) and replayed from then on; the most recent
        GRAPH_CACHE_SIZE graphs are kept.  If a capture fails, the backend warns once and
        runs per step from then on."""
        graph = self._graph_cache.pop(key, None)
        if graph is None:
            shapes = key[:-1]  # the key without its buffer addresses
            if shapes not in self._warm:
                self._warm.add(shapes)
                record()
                return
            try:
                graph = self.graphs.capture(self, record)
            except Exception as e:  # noqa: BLE001 - any failure: run per step, say why
                warnings.warn(f"CUDA graph capture failed ({type(e).__name__}: {e}); the GPU "
                              "backend runs the time loops per step from now on",
                              RuntimeWarning, stacklevel=4)
                self.graphs = None
                record()
                return
            while len(self._graph_cache) >= GRAPH_CACHE_SIZE:
                self._graph_cache.pop(next(iter(self._graph_cache)))  # the least recent
        self._graph_cache[key] = graph
        self.graphs.replay(graph)

    # ------------------------------------------------------------------ interop
    def _current_stream(self):
        """The stream to launch kernels on: CuPy's current one, so kernels and GEMMs are
        ordered on one stream.  CuPy's null stream (ptr 0) is CUDA's legacy default stream."""
        if self.simulated:
            return 0
        from numba import cuda

        ptr = self.xp.cuda.get_current_stream().ptr
        return cuda.external_stream(ptr) if ptr else cuda.legacy_default_stream()

    def _kernel_args(self, *arrays):
        """Numba device-array views of CuPy arrays (no copy), made once per sequence.

        sync=False: the arrays were produced on the stream the kernels are launched on, so
        the CAI v3 consumer-side synchronisation would only stall the host.
        """
        if self.simulated:
            return arrays
        from numba import cuda

        return tuple(cuda.as_cuda_array(a, sync=False) for a in arrays)


class CupyGraphs:
    """CUDA graphs by CuPy's stream capture (``cupy.cuda.Stream.begin_capture``, relaxed
    mode): ``capture`` makes a private non-blocking stream current, so the cuBLAS calls and the
    Numba kernels (launched on CuPy's current stream, ``GPUBackend._current_stream``) are
    recorded, not run; ``replay`` launches the graph on the caller's current stream, ordered
    after its earlier work.

    records_gemm is False: CuPy raises NotImplementedError for any cuBLAS call on a capturing
    stream (its ``cublas.setStream``; seen on an H200 with CuPy 14.2), so sequences with a
    GEMM a step are not captured (``GPUBackend._capturable``)."""

    records_gemm = False

    def __init__(self):
        import cupy

        self._cupy = cupy
        self._stream = cupy.cuda.Stream(non_blocking=True)

    def capture(self, backend, record):
        s = self._stream
        with s:
            s.begin_capture()
            try:
                record()
            except BaseException:
                with contextlib.suppress(Exception):
                    s.end_capture()
                raise
            return s.end_capture()

    def replay(self, graph):
        graph.launch(stream=self._cupy.cuda.get_current_stream())


class EmulatedGraphs:
    """Stream capture emulated on the host, for the simulator (which has no CuPy): ``capture``
    records every operation ``record`` issues through the backend's launch points without
    running it, as a capturing stream does; ``replay`` runs the recording.  ``captures``
    counts the captures.  records_gemm: whether it records GEMMs (CuPy's capture does not;
    tests use both)."""

    def __init__(self, records_gemm=True):
        self.captures = 0
        self.records_gemm = records_gemm

    def capture(self, backend, record):
        backend._sink = []
        try:
            record()
        finally:
            ops, backend._sink = backend._sink, None
        self.captures += 1
        return ops

    def replay(self, ops):
        for op in ops:
            op()


def _ptrs(*arrays):
    """The data addresses of ``arrays`` (None stays None): the buffers a graph is bound to."""
    return tuple(None if a is None else
                 (a.data.ptr if hasattr(a.data, "ptr") else a.__array_interface__["data"][0])
                 for a in arrays)


def step_order(T, reverse):
    """[(t, p)] of the forward's steps in order: the time index of each step and of the step
    before it (``kernels.common.step_index`` in plain Python, built once per sequence rather
    than asking an @njit function from Python at every step)."""
    if reverse:
        return [(T - 1 - s, T - s) for s in range(T)]
    return [(s, s - 1) for s in range(T)]
