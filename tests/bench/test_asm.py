"""bench.asm: the micro-kernels' inner loops per x86 target, compiled but not run, so that
this machine checks the register use of paths it cannot execute."""
import re
import subprocess
import sys
from pathlib import Path

from bench.asm import loop_bodies

REPO = Path(__file__).resolve().parents[2]

ASM = """\
.LBB0_3:
\tvbroadcastss\t(%rdi,%rax,4), %ymm12
\tvfmadd231ps\t%ymm12, %ymm13, %ymm0
\tvmovups\t%ymm5, -64(%rsp)
\tvfmadd231ps\t%ymm12, %ymm14, %ymm1
\tjne\t.LBB0_3
.LBB0_4:
\tvfmadd231ps\t%ymm2, %ymm3, %ymm4
\tretq
"""


def test_loop_bodies_count_fmas_and_spills():
    (label, mix, spilled), = loop_bodies(ASM, min_fma=2)
    assert label == ".LBB0_3" and mix["vfmadd231ps"] == 2 and mix["vbroadcastss"] == 1
    assert spilled == 1  # the store to -64(%rsp)
    assert len(loop_bodies(ASM, min_fma=1)) == 2


def test_big_tile_keeps_its_accumulators_in_registers_on_every_x86_target():
    """The 6-row tile's k loop (6 broadcasts, 6 x GEMM_VECS FMAs) spills nothing, compiled for
    AVX-512 (6 x 64: 24 accumulators of 32 registers) and AVX2 (6 x 16: 12 of 16)."""
    out = subprocess.run([sys.executable, "-m", "bench.asm"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    targets = out.split("\n" + "haswell:")
    for text, fmas in zip(targets, (24, 12)):
        loops = re.findall(r"(\d+) vector spills: vfmadd231ps (\d+), vbroadcastss 6,", text)
        assert ("0", str(fmas)) in loops, text
