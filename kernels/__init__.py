"""Kernels of lstm-engine.

- ``gates``: the scalar LSTM cell math, written once and called from CPU and CUDA kernels.
- ``reference``: plain NumPy float64 forward/backward of one layer, the oracle for every kernel.
- ``cpu``: ``@numba.njit`` kernels (fused step, whole-sequence loops).
- ``simd``, ``gemm``: 16-lane float32 vectors, the float32 GEMM and the small-batch time loops.
- ``steps``: helpers shared by the CPU time loops.
- ``cuda``: the ``@cuda.jit`` kernels of the GPU backend.

Gate order everywhere is PyTorch's: i, f, g, o, stacked along the G = 4H axis.
Dimension letters: T time, B batch, I input, H hidden, G = 4H gates.
"""

# Activation codes passed to kernels (Numba kernels take plain ints, not strings); see
# kernels.gates.  ACT_FAST is or-ed in by a backend for float32 work.
ACT_TANH = 0
ACT_RELU = 1
ACT_FAST = 2
ACTIVATIONS = {"tanh": ACT_TANH, "relu": ACT_RELU}

# Options of every CPU @njit kernel: cached compilation, NumPy's error model (Numba's
# ZeroDivisionError check would keep LLVM from vectorising the pointwise loops), and of the
# fast-math flags only "contract": a * b + c may become one fused multiply-add (one rounding
# instead of two, never less exact).  The rational tanh's polynomials then take half the
# instructions (measured: the forward cell update at M 11.4 -> 9.2 us a step).  No flag that
# assumes finite values or reorders sums.
KERNEL = dict(cache=True, error_model="numpy", fastmath={"contract"})
