"""Float32 vectors for @njit code: just enough to write a GEMM micro-kernel and the cell.

LLVM's auto-vectoriser does well on the pointwise loops, but not on a GEMM: it cannot keep a
tile of C in registers across the k loop, so every FMA would load and store C.  These
intrinsics give @njit code an explicit ``<LANES x float>`` value, ``LANES`` from ``kernels.isa``:
one register of the target (16 lanes on AVX-512, 8 on AVX2, 4 elsewhere).  Values of this
type live in SSA registers: a kernel that holds 12 of them across a loop compiles to 12
accumulator registers, no memory traffic, as long as the target has that many.

    load(a, i, j)          a[i, j:j+LANES] of a 2-D float32 array whose rows are contiguous
    load_n(a, i, j, n)     the same, lanes >= n read as 0 and never touch memory (edges)
    gather_n(a, i, j, n)   load_n for any column stride (a transposed view): one gather
    store(a, i, j, v)      a[i, j:j+LANES] = v
    store_n(a, i, j, v, n) the first n lanes only
    load_upto(a, i, j, n)  load when n >= LANES, else load_n: a plain load where the vector is
    store_upto(a, i, j, v, n)  whole (masked moves cost far more: a masked load crossing a page
                           on Zen 5, any masked store on AMD's AVX2 parts, which microcode it)
    splat(x)               x in every lane
    prefetch(a, i, j, w)   hint that a[i, j]'s cache line is read (w=0) or written (w=1) soon
    fma(x, y, acc)         x * y + acc, one rounding where the target has FMA (llvm.fmuladd);
                           also on float32 and float64 scalars
    fma4(x, b, r)          fma over a tuple of four vectors b and accumulators r
    x + y, x - y, x * y, x / y, -x, min(x, y), max(x, y)   lane by lane; a scalar operand
                           (float or int) is splat first
    muladd(x, y, z)        x * y + z on vectors or scalars (a scalar beside a vector is splat):
                           ``fma`` on the CPU, written out on a GPU (kernels.gates)
"""
import operator

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

from . import KERNEL
from .isa import LANES

_VEC = ir.VectorType(ir.FloatType(), LANES)
_I32 = ir.IntType(32)
_MASK = ir.VectorType(ir.IntType(1), LANES)
_I64 = ir.IntType(64)
_I64XL = ir.VectorType(_I64, LANES)
_ALIGN = 4  # rows of a float32 array are only guaranteed 4-byte aligned


class F32xL(types.Type):
    """The type of a ``<LANES x float>`` value."""

    def __init__(self):
        super().__init__(name=f"f32x{LANES}")


f32xL = F32xL()


@register_model(F32xL)
class _F32xLModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VEC)


def _is_f32_matrix(a):
    return isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 2


def _item_ptr(context, builder, sig, args):
    """Pointer to a[i, j] for an intrinsic whose first three arguments are a, i, j (no bounds
    or wraparound handling), and a's array structure."""
    arr = context.make_array(sig.args[0])(context, builder, args[0])
    idx = [context.cast(builder, v, t, types.intp) for v, t in zip(args[1:3], sig.args[1:3])]
    return cgutils.get_item_pointer(context, builder, sig.args[0], arr, idx,
                                    wraparound=False), arr


def _vec_ptr(context, builder, sig, args):
    """Pointer to a[i, j] as a <LANES x float>*."""
    return builder.bitcast(_item_ptr(context, builder, sig, args)[0], _VEC.as_pointer())


def _splat_lanes(builder, x, vec_type):
    """x in every lane of a vector of ``vec_type``."""
    v = builder.insert_element(ir.Constant(vec_type, ir.Undefined), x, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, ir.Constant(vec_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


def _lane_mask(context, builder, n, nty):
    """<LANES x i1>: lane k is on when k < n."""
    n32 = _splat_lanes(builder, context.cast(builder, n, nty, types.int32),
                       ir.VectorType(_I32, LANES))
    lanes = ir.Constant(ir.VectorType(_I32, LANES), list(range(LANES)))
    return builder.icmp_signed("<", lanes, n32)


def _masked_read(context, builder, name, ptrs, n, nty):
    """A call of the masked load or gather intrinsic ``name`` on ``ptrs``: lanes >= n are 0
    and touch no memory."""
    fn = _intrinsic_fn(builder, name, _VEC, [ptrs.type, _I32, _MASK, _VEC])
    return builder.call(fn, [ptrs, ir.Constant(_I32, _ALIGN),
                             _lane_mask(context, builder, n, nty),
                             ir.Constant(_VEC, [0.0] * LANES)])


def _intrinsic_fn(builder, name, ret, args):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, args), name)


@intrinsic
def load(typingctx, a, i, j):
    if not _is_f32_matrix(a):
        return None

    def codegen(context, builder, sig, args):
        return builder.load(_vec_ptr(context, builder, sig, args), align=_ALIGN)
    return f32xL(a, i, j), codegen


@intrinsic
def load_n(typingctx, a, i, j, n):
    if not _is_f32_matrix(a):
        return None

    def codegen(context, builder, sig, args):
        return _masked_read(context, builder, f"llvm.masked.load.v{LANES}f32.p0",
                            _vec_ptr(context, builder, sig, args), args[3], sig.args[3])
    return f32xL(a, i, j, n), codegen


@intrinsic
def gather_n(typingctx, a, i, j, n):
    """a[i, j:j+n] from a float32 matrix with any strides, lanes >= n read as 0."""
    if not _is_f32_matrix(a):
        return None

    def codegen(context, builder, sig, args):
        ptr, arr = _item_ptr(context, builder, sig, args)
        stride = cgutils.unpack_tuple(builder, arr.strides, 2)[1]  # bytes between columns
        lanes = ir.Constant(_I64XL, list(range(LANES)))
        addrs = builder.add(builder.mul(lanes, _splat_lanes(builder, stride, _I64XL)),
                            _splat_lanes(builder, builder.ptrtoint(ptr, _I64), _I64XL))
        ptrs = builder.inttoptr(addrs, ir.VectorType(ptr.type, LANES))
        return _masked_read(context, builder, f"llvm.masked.gather.v{LANES}f32.v{LANES}p0", ptrs,
                            args[3], sig.args[3])
    return f32xL(a, i, j, n), codegen


@intrinsic
def store(typingctx, a, i, j, v):
    if not _is_f32_matrix(a) or v != f32xL:
        return None

    def codegen(context, builder, sig, args):
        builder.store(args[3], _vec_ptr(context, builder, sig, args), align=_ALIGN)
        return context.get_dummy_value()
    return types.void(a, i, j, v), codegen


@intrinsic
def store_n(typingctx, a, i, j, v, n):
    if not _is_f32_matrix(a) or v != f32xL:
        return None

    def codegen(context, builder, sig, args):
        ptr = _vec_ptr(context, builder, sig, args)
        mask = _lane_mask(context, builder, args[4], sig.args[4])
        fn = _intrinsic_fn(builder, f"llvm.masked.store.v{LANES}f32.p0", ir.VoidType(),
                           [_VEC, ptr.type, _I32, _MASK])
        builder.call(fn, [args[3], ptr, ir.Constant(_I32, _ALIGN), mask])
        return context.get_dummy_value()
    return types.void(a, i, j, v, n), codegen


@intrinsic
def prefetch(typingctx, a, i, j, write):
    """Hint: the cache line holding a[i, j] will be read (write=0) or written (1) soon."""
    if not (isinstance(a, types.Array) and a.ndim == 2) or not isinstance(write, types.Literal):
        return None

    def codegen(context, builder, sig, args):
        ptr = builder.bitcast(_item_ptr(context, builder, sig, args)[0],
                              ir.IntType(8).as_pointer())
        fn = _intrinsic_fn(builder, "llvm.prefetch.p0", ir.VoidType(),
                           [ptr.type, _I32, _I32, _I32])
        rw = ir.Constant(_I32, sig.args[3].literal_value)
        builder.call(fn, [ptr, rw, ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        return context.get_dummy_value()
    return types.void(a, i, j, write), codegen


@intrinsic
def splat(typingctx, x):
    if not isinstance(x, (types.Float, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return _splat_lanes(builder, context.cast(builder, args[0], sig.args[0], types.float32),
                            _VEC)
    return f32xL(x), codegen


_FMA_TYPES = {f32xL: (f"v{LANES}f32", _VEC), types.float32: ("f32", ir.FloatType()),
              types.float64: ("f64", ir.DoubleType())}


@intrinsic
def fma(typingctx, x, y, acc):
    if not (x == y == acc and x in _FMA_TYPES):
        return None
    suffix, ty = _FMA_TYPES[x]

    def codegen(context, builder, sig, args):
        # fmuladd: fused on targets with FMA (every AVX2 and AVX-512 CPU), a multiply and an
        # add elsewhere, where llvm.fma would call the C library's fmaf lane by lane.  The
        # target decides, not the code around the call, so every compiled copy of a function
        # rounds alike (kernels.KERNEL: why there is no "contract" flag).
        fn = _intrinsic_fn(builder, f"llvm.fmuladd.{suffix}", ty, [ty] * 3)
        return builder.call(fn, args)
    return x(x, y, acc), codegen


# ---------------------------------------------------------------------------- arithmetic
# +, -, *, /, unary -, min and max on vectors (a scalar operand is splat), so that the scalar
# cell math of kernels.gates also compiles for a vector of LANES units: one definition of the
# LSTM cell serves the scalar kernels and the GEMM epilogue.

def _vector_op(emit):
    """A two-vector intrinsic whose IR is ``emit(builder, x, y)``."""
    @intrinsic
    def op(typingctx, x, y):
        if not (x == y == f32xL):
            return None

        def codegen(context, builder, sig, args):
            return emit(builder, *args)
        return f32xL(x, y), codegen
    return op


def _arith(instr):
    return _vector_op(lambda builder, x, y: getattr(builder, instr)(x, y))


def _select(predicate):
    """min/max by compare and select: the NaN-propagating x86 minps/maxps form."""
    return _vector_op(lambda builder, x, y:
                      builder.select(builder.fcmp_ordered(predicate, y, x), y, x))


_add, _sub, _mul, _div = (_arith(i) for i in ("fadd", "fsub", "fmul", "fdiv"))
_min, _max = _select("<"), _select(">")


def _is_scalar(t):
    return isinstance(t, (types.Float, types.Integer))


def _overload_binary(fn, vector_op):
    @overload(fn)
    def impl(x, y):
        if x == f32xL and y == f32xL:
            return lambda x, y: vector_op(x, y)
        if x == f32xL and _is_scalar(y):
            return lambda x, y: vector_op(x, splat(y))
        if _is_scalar(x) and y == f32xL:
            return lambda x, y: vector_op(splat(x), y)
    return impl


for _fn, _op in ((operator.add, _add), (operator.sub, _sub), (operator.mul, _mul),
                 (operator.truediv, _div), (min, _min), (max, _max)):
    _overload_binary(_fn, _op)


@overload(operator.neg)
def _neg(x):
    if x == f32xL:
        return lambda x: _sub(splat(0.0), x)


# ---------------------------------------------------------------------------- muladd
def muladd(x, y, z):
    """x * y + z for scalars or vectors, in the cell math that CPU and GPU kernels share
    (kernels.gates).  On the CPU it is ``fma``: one rounding on FMA targets, in every
    compiled copy of the caller alike (kernels.KERNEL).  On a GPU it is written out, and
    NVVM fuses it as it fuses every product that feeds a sum."""
    return x * y + z


@overload(muladd, target="generic")
def _muladd_generic(x, y, z):
    return lambda x, y, z: x * y + z


@overload(muladd, target="cpu")
def _muladd_cpu(x, y, z):
    args = (x, y, z)
    if f32xL in args and all(t == f32xL or _is_scalar(t) for t in args):
        return lambda x, y, z: fma(_vector(x), _vector(y), _vector(z))
    if all(isinstance(t, types.Float) for t in args):
        if types.float64 in args:
            return lambda x, y, z: fma(np.float64(x), np.float64(y), np.float64(z))
        return lambda x, y, z: fma(np.float32(x), np.float32(y), np.float32(z))


def _vector(x):
    """x as a vector: itself, or a scalar in every lane."""


@overload(_vector)
def _vector_impl(x):
    if x == f32xL:
        return lambda x: x
    if _is_scalar(x):
        return lambda x: splat(x)


# ---------------------------------------------------------------------------- whole or part
@njit(**KERNEL)
def load_upto(a, i, j, n):
    """a[i, j:j+n] (n <= LANES, lanes past n zero): a plain load when the vector is whole."""
    if n >= LANES:
        return load(a, i, j)
    return load_n(a, i, j, n)


@njit(**KERNEL)
def store_upto(a, i, j, v, n):
    """The first n lanes of v to a[i, j:j+n]: a plain store when the vector is whole."""
    if n >= LANES:
        store(a, i, j, v)
    else:
        store_n(a, i, j, v, n)


@njit(**KERNEL)
def fma4(x, b, r):
    """r[q] + x * b[q] for the four vectors of a tuple: one row of a four-vector tile (the
    GEMM's AVX-512 panel row, the unit-split loops' four gates)."""
    return fma(x, b[0], r[0]), fma(x, b[1], r[1]), fma(x, b[2], r[2]), fma(x, b[3], r[3])
