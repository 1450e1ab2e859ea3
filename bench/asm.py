"""The GEMM micro-kernels' inner loops as Numba compiles them for a named x86 target, run or
not: what a machine without AVX-512 can still check of the AVX-512 path (and the reverse).

    python -m bench.asm [--cpu NAME] [--features FEATURES]

Each target compiles in a subprocess of its own with ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES``
set (``kernels.isa`` then picks that target's shapes) and an empty, throw-away Numba cache (a
cached kernel has no assembly to show).  Nothing runs: the code of a target the CPU lacks
would not.  For ``kernels.gemm.gemm_packed`` on float32 it prints every loop body with four
or more FMAs (tile6, tile4, tile1: their FMAs, broadcasts, loads and prefetches) and the vector
registers it spills to the stack, which is what a tile too large for the register file shows.
Default: the AVX-512 target (skylake-avx512) and the AVX2 one (haswell).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

TARGETS = (("skylake-avx512", ""), ("haswell", ""))
_SPILL = re.compile(r"vmov\w*\s+%[xyz]mm\d+, -?\w*\(%rsp\)|vmov\w*\s+-?\w*\(%rsp\), %[xyz]mm")


def loop_bodies(asm, min_fma=4):
    """[(label, {mnemonic: count}, spills)] of the basic blocks of ``asm`` with >= min_fma
    FMAs; spills: vector register moves to or from the stack in the block."""
    blocks, cur = [], []
    for line in asm.splitlines():
        if re.match(r"^\.?LBB\S*:", line):
            blocks.append(cur)
            cur = [line]
        else:
            cur.append(line)
    blocks.append(cur)
    out = []
    for block in blocks:
        body = [line for line in block[1:]
                if line.strip() and not line.strip().startswith((".", "#"))]
        ops = [line.split()[0] for line in body]
        mix = {op: ops.count(op) for op in dict.fromkeys(ops)}
        if sum(n for op, n in mix.items() if op.startswith("vfmadd")) >= min_fma:
            spilled = sum(bool(_SPILL.search(line)) for line in body)
            out.append((block[0].strip().rstrip(":"), mix, spilled))
    return out


def report():
    """Compile gemm_packed (float32) for this process's target and print its loop bodies."""
    from numba import types as nt

    from engine.kernels import gemm, isa

    m2, m3 = nt.float32[:, ::1], nt.float32[:, :, ::1]
    sig = (m2, m3, m2, nt.int64, nt.int64, nt.boolean, nt.none, nt.none, nt.boolean)
    gemm.gemm_packed.compile(sig)
    asm = gemm.gemm_packed.inspect_asm(sig)
    print(f"{os.environ.get('NUMBA_CPU_NAME', 'host')}: kernels {isa.describe()}")
    for label, mix, spilled in loop_bodies(asm):
        top = ", ".join(f"{op} {n}" for op, n in sorted(mix.items(), key=lambda kv: -kv[1]))
        print(f"  loop {label}: {sum(mix.values())} instructions, {spilled} vector spills: "
              f"{top}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", help="one NUMBA_CPU_NAME (default: skylake-avx512 and haswell)")
    p.add_argument("--features", default="", help="NUMBA_CPU_FEATURES for --cpu")
    p.add_argument("--here", action="store_true", help=argparse.SUPPRESS)  # the subprocess
    args = p.parse_args(argv)
    if args.here:
        report()
        return 0
    targets = [(args.cpu, args.features)] if args.cpu else TARGETS
    status = 0
    for name, features in targets:
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CPU_NAME=name, NUMBA_CPU_FEATURES=features,
                       NUMBA_CACHE_DIR=cache)
            run = subprocess.run([sys.executable, "-m", "bench.asm", "--here"], env=env)
            status = status or run.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
