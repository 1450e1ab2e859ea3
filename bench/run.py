"""``make bench``: the engine against ``torch.nn.LSTM``, one table, JSON and a PNG.

    python -m bench.run [--backend cpu|gpu] [--grid issue|gpu] [--configs S,M,...]
                        [--paths persistent,graph,fused,gemm] [--repeats N]
                        [--budget SECONDS] [--threads N] [--quick] [--out bench/results]

For every configuration and mode (inference, training step): check the engine's results
against PyTorch with the same weights (a FAILED row is not timed), warm up, time both
interleaved and report medians, GFLOP/s, speedup = torch time / engine time and the fraction
of the SGEMM roofline measured in the same run.  On the CPU backend it also measures the peak
memory of the L training step and the time to first result (in subprocesses, see
``bench.memory``) and prints each target of issue 5 as PASS/FAIL.  On the GPU backend,
``--paths`` runs every config once per GPU path (``engine.backends.gpu``: rows
"<config>/<path>", each against cuDNN in the same run), side by side.

Threads: Numba, both OpenBLAS builds (NumPy's and SciPy's) and PyTorch all get ``--threads``
(default: the cores this process may use), set before any of them is imported.
"""
import argparse
import sys

from bench.threads import available_cores, pin_threads

DEFAULT_OUT = "bench/results"
# engine.backends.gpu.FWD_VARIANTS, named here because importing the engine (and so Numba)
# before pin_threads would fix the thread counts too early.
GPU_PATHS = ("auto", "persistent", "graph", "fused", "gemm")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=("cpu", "gpu"), default="cpu",
                   help="engine backend; gpu compares against torch on CUDA (cuDNN)")
    p.add_argument("--grid", choices=("issue", "gpu"), default="issue",
                   help="issue: S, M, L, B1, M2; gpu: T=100, B in 1..256, I=H in {128, 512}")
    p.add_argument("--configs", help="comma-separated subset of the grid's configs, e.g. S,M")
    p.add_argument("--paths", help="with --backend gpu: comma-separated GPU paths to run "
                   "side by side (persistent, graph, fused, gemm, auto); default: auto only")
    p.add_argument("--repeats", type=int, default=21,
                   help="most timed rounds per row (fewer, but at least 3, for slow rows)")
    # 30 s gives the L rows 6-9 rounds: with 3 (at 10 s), L training on a 2-core Zen 3 read
    # 0.89x in one run and 1.21x in the next.
    p.add_argument("--budget", type=float, default=30.0,
                   help="seconds of timed rounds per row that set the repeat count")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for Numba, BLAS and torch (default: available cores)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: only S and B1, 5 repeats, no memory measurement")
    p.add_argument("--out", default=DEFAULT_OUT, help="directory for the JSON and the PNG")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.budget <= 0:
        p.error("--repeats must be >= 1 and --budget > 0")
    args.paths = [v.strip() for v in args.paths.split(",") if v.strip()] if args.paths \
        else [None]
    if args.paths != [None]:
        bad = [v for v in args.paths if v not in GPU_PATHS]
        if args.backend != "gpu" or bad:
            p.error(f"--paths needs --backend gpu and paths among {', '.join(GPU_PATHS)}")
    if args.quick:
        args.repeats = min(args.repeats, 5)
        args.budget = min(args.budget, 2.0)
    return args


def select_configs(args):
    from bench.cases import CONFIGS, GPU_CONFIGS, QUICK_CONFIGS

    grid = GPU_CONFIGS if args.grid == "gpu" else CONFIGS
    if args.configs:
        names = [n.strip() for n in args.configs.split(",") if n.strip()]
    elif args.quick and args.grid == "issue":
        names = list(QUICK_CONFIGS)
    else:
        names = list(grid)
    unknown = [n for n in names if n not in grid]
    if unknown:
        sys.exit(f"unknown config(s) {', '.join(unknown)}; the {args.grid} grid has "
                 f"{', '.join(grid)}")
    return [grid[n] for n in names]


def gpu_unavailable_reason():
    """None when both the engine's GPU backend and torch on CUDA can run, else why not."""
    try:
        from engine.backends import get_backend

        get_backend("gpu")
    except Exception as e:  # noqa: BLE001 - any failure means: not usable, say why
        return f"the engine's GPU backend is not usable: {e}"
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA device (a CPU-only torch build, or no driver)"
    return None


def run_rows(configs, args, sgemm):
    """Check and time every config and mode, printing a progress line per row."""
    from bench.cases import MODES, bench_case
    from bench.report import format_progress

    rows = []
    n = len(configs) * len(MODES) * len(args.paths)
    for cfg in configs:
        for mode in MODES:
            for path in args.paths:
                try:
                    row = bench_case(cfg, mode, backend=args.backend, repeats=args.repeats,
                                     budget_s=args.budget, sgemm=sgemm, path=path)
                except Exception as e:  # noqa: BLE001 - one broken row must not hide others
                    row = error_row(cfg, mode, e)
                    if path is not None:
                        row.update(config=f"{cfg.name}/{path}", path=path)
                rows.append(row)
                print(format_progress(len(rows), n, row), flush=True)
    return rows


def error_row(cfg, mode, e):
    """The row of a config and mode whose check or timing raised ``e``."""
    from bench.cases import row_head

    return dict(row_head(cfg, mode), status="ERROR", error=f"{type(e).__name__}: {e}")


def cpu_extras(configs, args):
    """Peak memory of the L training step, time to first result and generation one step per
    call at B1's sizes (CPU backend only)."""
    from bench import memory, report
    from bench.cases import CONFIGS, bench_generation

    try:
        gen = bench_generation(CONFIGS["B1"], repeats=args.repeats, budget_s=args.budget)
    except Exception as e:  # noqa: BLE001 - as in run_rows: report it, keep the rest
        gen = error_row(CONFIGS["B1"], "generation", e)
    print(report.format_generation(gen), flush=True)
    extras = {"memory": None, "first_result": memory.first_result(), "generation": gen}
    if not args.quick and any(c.name == "L" for c in configs):
        extras["memory"] = memory.peak_memory("L")
    return extras


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    pin_threads(args.threads or available_cores())
    configs = select_configs(args)
    if args.backend == "gpu":
        why = gpu_unavailable_reason()
        if why:
            sys.exit(f"--backend gpu: {why}")

    from bench import report
    from bench.cases import gemm_pair_gflops, sgemm_gflops, torch_sgemm_gflops

    cpu_start = report.cpu_snapshot()
    info = report.machine_info(args.backend)
    print(report.format_info(info), flush=True)
    sgemm = [sgemm_gflops(backend=args.backend)]
    rows = run_rows(configs, args, max(sgemm))
    sgemm.append(sgemm_gflops(backend=args.backend))
    extras = cpu_extras(configs, args) if args.backend == "cpu" else {}
    if args.backend == "cpu":
        pair = gemm_pair_gflops()
        extras["engine_gemm_gflops"] = pair["engine"]
        extras["numpy_gemm_paired_gflops"] = pair["numpy"]
    extras["torch_sgemm_gflops"] = torch_sgemm_gflops(backend=args.backend)
    result = report.assemble(info, args, rows, sgemm, extras, cpu_start)
    print(report.format_summary(result), flush=True)
    paths = report.write_outputs(result, args.out, plot=not args.no_plot)
    print("wrote " + ", ".join(paths))
    failed = [r for r in rows + [extras.get("generation")] if r and r["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
