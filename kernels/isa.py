"""The vector ISA Numba compiles for, and the shapes every CPU kernel takes from it: one place.

Numba compiles for the host CPU, or for ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` when they are
set.  ``target_isa`` asks LLVM, through the very target machine Numba compiles with, how it
lowers a 16-lane float vector and an 8-lane fused multiply-add (a probe of a few instructions,
compiled once at import): 512-bit registers mean AVX-512, 256-bit ones with FMA mean AVX2, and
anything else (SSE, NEON, AVX without FMA, ...) is "other".  So the shapes below always match
the machine code Numba makes, and Numba's on-disk cache, which keys its machine code on the
same CPU name and features, never hands one ISA's kernels to another.

=================  =====================  ===================  ==============================
shape              AVX-512                AVX2 (16 registers)  other
=================  =====================  ===================  ==============================
``LANES``          16 (one zmm)           8 (one ymm)          4
``GEMM_VECS``      4 (a 64-column panel)  2 (16 columns)       2
``TILE_ROWS``      6, 4, 1                6, 4, 1              6, 4, 1
accumulators       24 of 32 registers     12 of 16             12
``GATE_ROWS``      4 (16 accumulators)    2 (8 accumulators)   2
``ENGINE_GEMM``    yes                    yes                  no: float32 products on BLAS
``PACK_A_COLUMNS`` 512                    0 (always)           512
``GEMM_KC``        256 (64 KB panel, L2)  512 (32 KB panel)    256
=================  =====================  ===================  ==============================

``GEMM_VECS`` vectors make one k-row of a packed panel (``kernels.gemm``); a tile of
``TILE_ROWS[0]`` rows keeps ``TILE_ROWS[0] * GEMM_VECS`` accumulators in registers, plus the
panel's vectors and a broadcast.  The AVX2 shape is BLIS's Haswell sgemm micro-tile (6 x 16);
``python -m bench.kernels tiles`` measures the shapes side by side.  ``GATE_ROWS`` is the rows
of the unit-split forward's fused epilogue, whose panels always hold four gate vectors.
"""
import llvmlite.binding as ll

ISAS = ("avx512", "avx2", "other")

# Lowered by the target machine: which registers and instructions it picks tells the ISA.
_PROBE = """
define void @probe(<16 x float>* %p, <8 x float>* %q) {
  %a = load <16 x float>, <16 x float>* %p
  %b = fadd <16 x float> %a, %a
  store <16 x float> %b, <16 x float>* %p
  %c = load <8 x float>, <8 x float>* %q
  %d = call <8 x float> @llvm.fma.v8f32(<8 x float> %c, <8 x float> %c, <8 x float> %c)
  store <8 x float> %d, <8 x float>* %q
  ret void
}
declare <8 x float> @llvm.fma.v8f32(<8 x float>, <8 x float>, <8 x float>)
"""


def target_isa():
    """"avx512", "avx2" or "other": what Numba's target machine (host, or NUMBA_CPU_NAME and
    NUMBA_CPU_FEATURES) does with 512-bit vectors and fused multiply-adds."""
    from numba.core.registry import cpu_target

    tm = cpu_target.target_context.codegen()._tm
    module = ll.parse_assembly(_PROBE)
    module.triple = tm.triple
    asm = tm.emit_assembly(module)
    if "zmm" in asm:
        return "avx512"
    if "ymm" in asm and "vfmadd" in asm:
        return "avx2"
    return "other"


ISA = target_isa()
LANES = {"avx512": 16, "avx2": 8, "other": 4}[ISA]
GEMM_VECS = {"avx512": 4, "avx2": 2, "other": 2}[ISA]
TILE_ROWS = (6, 4, 1)
GATE_ROWS = {"avx512": 4, "avx2": 2, "other": 2}[ISA]
ENGINE_GEMM = ISA != "other"
# The weight gradients (dW = dz^T x, a strided a) copy each block of a into rows when b has at
# least this many columns to share the copy.  Zen 5 (AVX-512), 2 threads: dW_hh at L (512
# columns) 380 -> 429 GFLOP/s with the copy, dW_ih at M (128) 389 -> 351 without it, the copy's
# cache misses no longer hidden behind FMAs.  Zen 3 (AVX2): every product gains, dW_hh at M
# (256 columns) 58-71 -> 95-101 GFLOP/s and dW_ih (128) 54-71 -> 90-96, alternating runs.
PACK_A_COLUMNS = {"avx512": 512, "avx2": 0, "other": 512}[ISA]
# Rows of b that ``kernels.gemm`` packs per block; each block re-reads and re-writes all of c,
# so fewer blocks move less of a large c.  Zen 3 (AVX2), alternating runs, 512 against 256:
# the input gradient dz @ W_ih at M (K = 1024) +10-15% on 2 threads, +10-14% on one, the
# 2048^2 product +1-8%, the other products of an LSTM step within +-3%.  A 16-column panel of
# 512 rows is 32 KB; AVX-512's 64-column panel keeps 256 rows (64 KB), as measured on Zen 5.
GEMM_KC = {"avx512": 256, "avx2": 512, "other": 256}[ISA]


def describe():
    """One line for reports: the ISA and the shapes in use."""
    return (f"{ISA}: {LANES}-lane vectors, {TILE_ROWS[0]} x {LANES * GEMM_VECS} GEMM tile, "
            f"{GATE_ROWS}-row gate epilogue, float32 products on "
            f"{'the engine GEMM' if ENGINE_GEMM else 'BLAS'}")
