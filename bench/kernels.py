"""Kernel variants side by side, llm.c's ``dev/cuda`` habit: every variant is first checked
against ``kernels/reference.py`` (or float64 NumPy for products), and only then timed,
interleaved with its rivals in one process, on the machine at hand.

    python -m bench.kernels [gemm|tiles|shapes|split|step|loops|gpu|all] [--repeats N]
                            [--threads N] [--save]

``--save`` also writes the tables to ``bench/results/kernels-<machine>.txt``, one file per kind
of machine (CPU model, core and vector ISA), as ``make bench`` does its results.

- ``gemm``:  the engine's float32 GEMM (``kernels.gemm.gemm``) against NumPy's SGEMM on the
             products an LSTM runs (input projection, weight gradients, a square product).
- ``tiles``: the micro-kernels on one packed panel (K = 256, 32 rows, one core): the shipped
             mix (``tile6`` then ``tile4``, ``six_row_tiles``) against ``tile4`` and ``tile1``.
- ``shapes``: candidate micro-tile shapes (rows x vectors, generated for the comparison) on
             one core, against the core's register-only FMA peak: how kernels.isa's tile
             was chosen.
- ``split``: how the row split of a time step serves the tiles: per split of B rows at
             multiples of 4 and of 6, the slowest block's recurrent product on one core; the
             one ``kernels.seq_rows.step_rows`` picks is marked shipped.
- ``step``:  the pointwise step (``kernels.step``), scalar row loop against 16-lane vectors,
             forward and backward, on M's rows (B = 32 per thread, H = 256).
- ``loops``: the whole-sequence loops, row-split (``kernels.seq_rows``) against unit-split
             (``kernels.seq_units``), forward and backward, T = 100, H = 256, several B.
- ``gpu``:   the GPU forward variants (``fused``, ``gemm``) where a GPU is present.

The variants are the shipped kernels (imported, never copied), called with the arguments that
select them.  Each table names the CPU (model, core, vector ISA) it ran on; docstrings that
quote "measured X -> Y" for variants still in the code name the section that re-runs them.
Figures of variants no longer in the code are history, labelled with the machine they ran on.
"""
import argparse
import os
import statistics
import sys
import time

from bench.threads import available_cores, pin_threads

SECTIONS = ("gemm", "tiles", "shapes", "split", "step", "loops", "gpu")
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.kernels", description=__doc__.split("\n")[0])
    p.add_argument("sections", nargs="*", metavar="SECTION",
                   help=f"any of {', '.join(SECTIONS)}, or all (default)")
    p.add_argument("--repeats", type=int, default=15, help="timed rounds per variant")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for Numba and BLAS (default: the cores this process may use)")
    p.add_argument("--save", action="store_true",
                   help="also write the tables to bench/results/kernels-<machine>.txt")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    unknown = [s for s in args.sections if s not in SECTIONS + ("all",)]
    if unknown:
        p.error(f"unknown section {unknown[0]!r}: choose from {', '.join(SECTIONS)}, all")
    if not args.sections or "all" in args.sections:
        args.sections = list(SECTIONS)
    return args


def time_variants(calls, repeats):
    """{name: median seconds} of zero-argument ``calls`` ({name: fn}), after one warm-up call
    each, timed in alternating order (forward on even rounds, reversed on odd ones)."""
    names = list(calls)
    for name in names:
        calls[name]()
    samples = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(s) for name, s in samples.items()}


def table(title, rows, unit="us"):
    """Print rows of (case, variant, seconds, extra text) with each case's time relative to its
    first variant."""
    scale = {"ns": 1e9, "us": 1e6, "ms": 1e3}[unit]
    print(f"\n{title}")
    print(f"  {'case':<30}{'variant':<28}{unit:>10}{'vs first':>10}  note")
    first = {}
    for case, variant, seconds, note in rows:
        base = first.setdefault(case, seconds)
        value = seconds * scale
        shown = f"{value:.1f}" if value >= 10 else f"{value:.3f}"
        print(f"  {case:<30}{variant:<28}{shown:>10}{base / seconds:>9.2f}x  {note}")


def check_close(name, got, want, rtol):
    """Raise (and so never time) a variant whose result is off: max |got - want| must stay
    within ``rtol`` of the largest |want|."""
    import numpy as np

    err = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-30))
    if not np.isfinite(got).all() or err > rtol:
        raise AssertionError(f"{name}: relative error {err:.2e} > {rtol:.0e}: not timed")
    return err


class _Tee:
    """sys.stdout that also keeps what is printed."""

    def __init__(self, out):
        self.out, self.parts = out, []

    def write(self, text):
        self.parts.append(text)
        return self.out.write(text)

    def flush(self):
        self.out.flush()


def main(argv=None):
    args = parse_args(argv)
    threads = args.threads or available_cores()
    pin_threads(threads)  # before NumPy, SciPy and Numba load
    from bench import kernel_cases
    from bench.report import cpu_slug, machine_label

    tee = sys.stdout = _Tee(sys.stdout)
    try:
        print(f"python -m bench.kernels {' '.join(args.sections)} --repeats {args.repeats}, "
              f"{time.strftime('%Y-%m-%d')}\nkernel variants on {machine_label()}; {threads} "
              f"threads; medians of {args.repeats} interleaved rounds")
        for section in args.sections:
            getattr(kernel_cases, section)(args.repeats)
    finally:
        sys.stdout = tee.out
    if args.save:
        path = os.path.join(RESULTS, f"kernels-cpu-{cpu_slug()}.txt")
        with open(path, "w") as f:
            f.write("".join(tee.parts))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
