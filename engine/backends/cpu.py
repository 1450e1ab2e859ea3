"""The CPU backend: NumPy arrays, Numba ``@njit`` time loops, and GEMMs: float32 ones on the
engine's packed-panel kernel (``kernels.gemm``, shaped for AVX-512 or AVX2 by ``kernels.isa``),
float64 ones, and float32 ones on CPUs with neither, on BLAS (``kernels.blas``).  Threads and
their split of the work: ``engine.backends.threads``.  Figures in the comments were measured on
a 2-core AMD EPYC Zen 5 with AVX-512 unless they name another machine.
"""
import numba
import numpy as np

from engine.backends import threads
from engine.backends.base import Backend
from engine.kernels import ACT_FAST
from engine.kernels.blas import blas_gemm, blas_gemm_tn
from engine.kernels.ctc import ctc_loss_kernel
from engine.kernels.finite import all_finite_f32
from engine.kernels.gemm import gemm, pack_weights, panels
from engine.kernels.isa import ENGINE_GEMM
from engine.kernels.seq_rows import lstm_seq_bwd_rows, lstm_seq_fwd_rows
from engine.kernels.seq_units import lstm_seq_bwd_units, lstm_seq_fwd_units, pack_gates

# A single sequence (B = 1) of at most this many steps runs on BLAS with the float32 weights as
# they are, not packed for ``kernels.gemm``: its products are vector-matrix products, which
# BLAS's GEMV does in one pass over the weights, while packing alone takes about two (read and
# write).  This is generation, one token at a time.  Measured per call on a Zen 5 (AVX-512;
# I = 65, B = 1): H = 256, T = 1 91 -> 43 us, T = 2 95 -> 75, T = 3 102 -> 90; H = 1024, T = 1
# 1947 -> 432 us, T = 4 2308 -> 1338.  With 2 rows or more BLAS's GEMM is the slower one (T = 1,
# B = 2: 98 -> 154 us).
GEMV_MAX_STEPS = 3


class CPUBackend(Backend):
    """NumPy arrays, Numba @njit sequence loops, and GEMMs: float32 ones on the packed-panel
    kernel of ``kernels.gemm`` (AVX-512 where the CPU has it), float64 ones on BLAS."""

    name = "cpu"
    xp = np

    def __init__(self):
        threads.configure()

    def asarray(self, a):
        """Bring user input onto this backend (no copy when it already is a NumPy array)."""
        return np.asarray(a)

    def to_user(self, a, like):
        """Return ``a`` in the array type the user passed in ``like`` (always NumPy here)."""
        return a

    def to_numpy(self, a):
        return np.asarray(a)

    def matmul(self, a, b, out=None, bias=None):
        """a @ b (+ bias, a row added to every row) for 2-D arrays, split over Numba's threads
        when large (engine.backends.threads).

        float32: ``kernels.gemm``, the bias folded into the product (any strides in ``a`` and
        ``b``; ``out`` C-contiguous).  float64, float32 with one row of ``a``, and float32 on a
        CPU without the engine's GEMM (``kernels.isa.ENGINE_GEMM``): Numba's single-threaded
        BLAS; ``a`` C-contiguous or the transpose of a C-contiguous array, anything else is made
        contiguous first.
        """
        M, K = a.shape
        N = b.shape[1]
        if out is None:
            out = np.empty((M, N), np.result_type(a, b))
        parts = threads.gemm_parts(M, K, N)
        # One row: BLAS's GEMV reads b once, where kernels.gemm would first pack all of it
        # (Zen 5: K = 256, N = 1024: 47 -> 13 us).  From 2 rows on kernels.gemm is twice as fast.
        if M > 1 and ENGINE_GEMM and out.dtype == np.float32 and a.dtype == b.dtype == np.float32:
            gemm(a, b, out, False, parts,  # compiled for float32 only (kernels.gemm)
                 None if bias is None else np.ascontiguousarray(bias, np.float32).reshape(1, N))
            return out
        if a.T.flags.c_contiguous and not a.flags.c_contiguous:
            blas_gemm_tn(a.T, np.ascontiguousarray(b), out, parts)
        else:
            blas_gemm(np.ascontiguousarray(a), b if _blas_ready(b) else
                      np.ascontiguousarray(b), out, parts)
        if bias is not None:
            out += bias
        return out

    def seq_fwd(self, xproj, w_hh_t, h0, c0, lengths, act, reverse, h, c, gates, scratch,
                w_hr_t=None, h_raw=None):
        """``Backend.seq_fwd``: the unit-split loop for small float32 batches without a
        projection (``kernels.seq_units``), else the row-split loop (``kernels.seq_rows``)."""
        B, H = c0.shape
        pack = self._pack(xproj, B)
        if pack and w_hr_t is None and threads.batch_parts(B) == 1:
            # Under 8 rows: the cell update fused into the recurrent GEMM, and threads split
            # the hidden units (each core keeps its share of W_hh in its own L2).  Larger
            # batches split rows below, whose blocks run all steps without meeting (at M the
            # fused kernel took 10.1 ms against 8.2 on a Zen 5; python -m bench.kernels loops).
            wp = pack_gates(w_hh_t, H)
            lstm_seq_fwd_units(xproj, wp, h0, c0, lengths, self._act(act, xproj), reverse, h, c,
                               gates, np.empty((2, B, H), np.float32), scratch["c_prev"],
                               threads.unit_parts(B, H, wp.shape[0]))
            return
        w_hh_t, w_hr_t = self._packed(w_hh_t, pack), self._packed(w_hr_t, pack)  # (W.T views)
        lstm_seq_fwd_rows(xproj, w_hh_t, h0, c0, lengths, self._act(act, xproj), reverse, h, c,
                          gates, scratch["h_prev"], scratch["c_prev"], scratch["rec"],
                          threads.batch_parts(B), w_hr_t, h_raw)

    def seq_bwd(self, dout, gates, c, c0, w_hh, lengths, act, reverse, dh, dc, dz, scratch,
                w_hr=None, dh_proj=None):
        """``Backend.seq_bwd``, split by units or by rows as ``seq_fwd`` is."""
        B, H = dc.shape
        pack = self._pack(dz, B)
        if pack and w_hr is None and threads.batch_parts(B) == 1:
            units = threads.unit_parts(B, H, panels(H))
            if units > 1:  # small batches: threads split the hidden units, as in seq_fwd
                lstm_seq_bwd_units(dout, gates, c, c0, pack_weights(w_hh), lengths,
                                   self._act(act, gates), reverse, dh, dc, dz,
                                   scratch["c_prev"], scratch["dh_tot"], scratch["dh_rec"],
                                   units)
                return
        w_hh, w_hr = self._packed(w_hh, pack), self._packed(w_hr, pack)
        lstm_seq_bwd_rows(dout, gates, c, c0, w_hh, lengths, self._act(act, gates), reverse, dh,
                          dc, dz, scratch["c_prev"], scratch["dh_tot"], scratch["dh_rec"],
                          threads.batch_parts(B), w_hr, dh_proj)

    def all_finite(self, a):
        return host_all_finite(a)

    def ctc(self, logits, labels, input_lengths, target_lengths, scale, blank, zero_infinity):
        """``Backend.ctc``: one Numba kernel, threads over the sequences."""
        nll = np.empty(logits.shape[1])
        grad = np.empty_like(logits)
        ctc_loss_kernel(np.ascontiguousarray(logits), labels, input_lengths, target_lengths,
                        scale, blank, zero_infinity, nll, grad)
        return nll, grad

    def scatter_add(self, target, idx, rows):
        np.add.at(target, idx, rows)

    def synchronize(self):
        pass

    @staticmethod
    def _pack(a, B):
        """Whether the time loops over ``a`` (T, B, ...) get their weights packed for the
        float32 GEMM kernel; float64, short single sequences (GEMV_MAX_STEPS) and CPUs without
        the engine's GEMM (kernels.isa.ENGINE_GEMM: neither AVX2 nor AVX-512) use BLAS."""
        return (ENGINE_GEMM and a.dtype == np.float32
                and not (B == 1 and a.shape[0] <= GEMV_MAX_STEPS))

    @staticmethod
    def _packed(w, pack):
        """The weights for the time loops: packed once per sequence, or as they are for BLAS
        (which takes C- or F-contiguous arrays, W.T included, without a copy)."""
        if w is None:
            return None
        if pack:
            return pack_weights(w)
        return w if _blas_ready(w) else np.ascontiguousarray(w)

    @staticmethod
    def _act(act, a):
        """float32 work uses the vectorisable rational tanh (kernels.gates, ACT_FAST)."""
        return act | ACT_FAST if a.dtype == np.float32 else act


def _blas_ready(a):
    return a.flags.c_contiguous or a.flags.f_contiguous


# Under this many values NumPy's isfinite is as fast as the kernel's call and thread start.
FINITE_KERNEL_MIN = 1 << 16


def host_all_finite(a):
    """Whether every value of the NumPy array ``a`` is finite.  Large C-contiguous float32
    arrays (every model input) take one parallel pass of ``kernels.finite.all_finite_f32``."""
    if (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous
            and a.size >= FINITE_KERNEL_MIN):
        threads.configure()  # Numba's pool starts with the engine's settings
        return all_finite_f32(a.reshape(1, -1), numba.get_num_threads())
    return bool(np.isfinite(a).all())
