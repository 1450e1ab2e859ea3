"""GPU backend: numba.cuda step kernels with CuPy buffers and cuBLAS GEMMs.

``GPUBackend`` implements ``engine.backends.base.Backend``.  Device buffers are
CuPy arrays (the orchestrator allocates them through ``backend.xp``); the input projection
and the weight gradients are cuBLAS GEMMs through CuPy; the time loop here is a Python loop of
kernel launches (``kernels.cuda``) and per-step cuBLAS GEMMs, with every buffer allocated
before it: no allocation and no host/device copy inside the loop.

Forward variants (``GPUBackend(fwd_variant=...)`` or ``ENGINE_GPU_FWD``):

- ``"fused"``: one ``lstm_step_fwd_kernel`` per step computes the recurrent product with W_hh
  tiles staged through shared memory and applies the gates in the same launch.
- ``"gemm"``: the cuDNN/haste split: gather h_prev, cuBLAS ``h_prev @ W_hh^T``, then the fused
  pointwise ``lstm_step_pointwise_fwd_kernel``.
- ``"auto"`` (default): ``fused`` when B <= FUSED_MAX_BATCH, else ``gemm``.  The fused
  kernel re-reads W_hh once per TILE_B batch rows, so it pays only for small batches, where
  one launch instead of three (gather, GEMM, pointwise) matters most.  The threshold is
  unmeasured: no GPU has run this code yet, and 16 is a guess for the benchmark on real
  hardware (``python -m bench.run --backend gpu --grid gpu``) to replace.

The backward is the same for both: per step the fused pointwise ``lstm_step_bwd_kernel``,
a cuBLAS ``dz_t @ W_hh``, and ``keep_valid_rows_kernel``.

Streams: every CuPy operation runs on CuPy's current stream, and the Numba kernels are
launched on that same stream (``_current_stream``), so kernels and GEMMs are ordered without
any host synchronisation.  The arrays reach the kernels as Numba device arrays made once per
sequence with ``cuda.as_cuda_array(a, sync=False)``: with CAI v3 the default (sync=True)
would synchronise the exporting stream on every launch, which is needless here since
producer and consumer share one stream.

Under ``NUMBA_ENABLE_CUDASIM=1`` the backend is usable without a GPU: the kernels run in
Numba's simulator and NumPy stands in for CuPy (``xp = numpy``), so the whole orchestration is
tested on any machine.  ``"auto"`` never picks the simulator (see ``gpu_available``).
"""
import os

import numba
import numpy as np

from engine.backends.base import Backend
from engine.backends.cpu import host_all_finite

INSTALL_HINT = ("install the GPU extra: pip install 'lstm-engine[gpu]' (CUDA 12 drivers) or "
                "'lstm-engine[gpu-cuda13]' (CUDA 13 drivers)")
FWD_VARIANTS = ("auto", "fused", "gemm")
# "auto" forward variant: the fused kernel up to this batch size, cuBLAS + pointwise above.
# Unmeasured (see the module docstring).
FUSED_MAX_BATCH = 16


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


class GPUBackend(Backend):
    """numba.cuda kernels, CuPy arrays (NumPy under the simulator), cuBLAS GEMMs.

    Args:
        fwd_variant: "fused", "gemm" or "auto"; None reads ``ENGINE_GPU_FWD`` (default
            "auto").  See the module docstring.

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
        if self.simulated:
            self.xp = np
        else:
            import cupy

            self.xp = cupy

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
        """The forward variant used for a batch of B rows and H units."""
        if self.fwd_variant != "auto":
            return self.fwd_variant
        return "fused" if B <= FUSED_MAX_BATCH else "gemm"

    def seq_fwd(self, xproj, w_hh_t, h0, c0, lengths, act, reverse, h, c, gates, scratch,
                w_hr_t=None, h_raw=None):
        """``Backend.seq_fwd``.

        scratch: workspace buffers "h_prev" (B,R) and "rec" (B,G), used by the gemm variant.
        With a projection (w_hr_t (H,P), h_raw (T,B,H)) the gemm variant always runs: its
        pointwise kernel writes o * act(c) to h_raw[t] and a cuBLAS GEMM projects it to h[t].
        """
        w_hh_t = self.xp.ascontiguousarray(w_hh_t)  # the orchestrator passes W_hh.T as a view
        if w_hr_t is not None:
            w_hr_t = self.xp.ascontiguousarray(w_hr_t)
        from engine.kernels import cuda as K

        T, B, H = c.shape
        cfg, stream = K.launch_config(B, H), self._current_stream()
        k_xproj, k_w, k_h0, k_c0, k_len, k_h, k_c, k_gates = self._kernel_args(
            xproj, w_hh_t, h0, c0, lengths, h, c, gates)
        if w_hr_t is None and self.choose_fwd_variant(B, H) == "fused":
            step = K.lstm_step_fwd_kernel[cfg.grid, cfg.block, stream]
            for t, p in step_order(T, reverse):
                step(k_xproj, k_w, k_h0, k_c0, k_len, t, p, act, k_h, k_c, k_gates)
            return
        h_prev, rec = scratch["h_prev"], scratch["rec"]
        k_h_prev, k_rec = self._kernel_args(h_prev, rec)
        k_cell_out = k_h if h_raw is None else self._kernel_args(h_raw)[0]
        gather = K.gather_prev_kernel[cfg.grid, cfg.block, stream]
        pointwise = K.lstm_step_pointwise_fwd_kernel[cfg.grid, cfg.block, stream]
        for t, p in step_order(T, reverse):
            gather(k_h, k_h0, p, k_len, k_h_prev)
            self.xp.matmul(h_prev, w_hh_t, out=rec)
            pointwise(k_xproj, k_rec, k_c0, k_len, t, p, act, k_cell_out, k_c, k_gates)
            if h_raw is not None:
                self.xp.matmul(h_raw[t], w_hr_t, out=h[t])

    def seq_bwd(self, dout, gates, c, c0, w_hh, lengths, act, reverse, dh, dc, dz, scratch,
                w_hr=None, dh_proj=None):
        """``Backend.seq_bwd``.

        dh, dc (B,H) updated in place (final-state gradients in, h0/c0 gradients out).
        scratch: workspace buffer "dh_rec" (B,H) for the GEMM dz_t @ W_hh.
        """
        from engine.kernels import cuda as K

        T, B, H = c.shape
        cfg, stream = K.launch_config(B, H), self._current_stream()
        dh_rec = scratch["dh_rec"]
        if w_hr is not None:
            # The pointwise kernel takes dout[t] + dh on o * act(c): with a projection that is
            # (dout[t] + dh) @ W_hr, formed per step into dh_raw[t] with a zero carry.
            dh_raw, zero = self.xp.empty((T, B, H), c.dtype), self.xp.zeros((B, H), c.dtype)
        k_dout, k_gates, k_c, k_c0, k_len, k_dh, k_dc, k_dz, k_dh_rec = self._kernel_args(
            dout if w_hr is None else dh_raw, gates, c, c0, lengths, dh, dc, dz, dh_rec)
        k_dh_step = k_dh if w_hr is None else self._kernel_args(zero)[0]
        step = K.lstm_step_bwd_kernel[cfg.grid, cfg.block, stream]
        keep = K.keep_valid_rows_kernel[cfg.grid, cfg.block, stream]
        for t, p in reversed(step_order(T, reverse)):
            if w_hr is not None:
                self.xp.add(dout[t], dh, out=dh_proj[t])
                self.xp.matmul(dh_proj[t], w_hr, out=dh_raw[t])
            step(k_gates, k_c, k_c0, k_dout, k_len, t, p, act, k_dh_step, k_dc, k_dz)
            self.xp.matmul(dz[t], w_hh, out=dh_rec)
            keep(k_dh_rec, t, k_len, k_dh)

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


def step_order(T, reverse):
    """[(t, p)] of the forward's steps in order: the time index of each step and of the step
    before it (``kernels.common.step_index`` in plain Python, built once per sequence rather
    than asking an @njit function from Python at every step)."""
    if reverse:
        return [(T - 1 - s, T - s) for s in range(T)]
    return [(s, s - 1) for s in range(T)]
