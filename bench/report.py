"""Machine information, the printed table, the issue's targets, and the JSON/PNG outputs."""
import datetime
import json
import math
import os
import platform
import re
import socket

# Targets of issues 5 and 19 (CPU backend, same machine, same run).
TRAIN_MIN_SPEEDUP = 1.0
TRAIN_GEOMEAN = 1.25
INFER_MIN_SPEEDUP = 1.0
L_SGEMM_FRACTION = 0.80       # of NumPy's SGEMM (issue 5) and of the engine's GEMM (issue 19)
GEMM_NUMPY_FRACTION = 0.90    # the engine's GEMM against NumPy's, timed alternately
FIRST_RESULT_WARM_S = 2.0


def _cpuinfo():
    """{key: value} of the first processor in /proc/cpuinfo ({} where there is none)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_model():
    return _cpuinfo().get("model name") or platform.processor() or "unknown-cpu"


def cpu_isa(flags=None):
    """The widest vector ISA the kernels can use here: "AVX-512", "AVX2" (with FMA), "SSE",
    "NEON" or "unknown"; from /proc/cpuinfo's flags unless ``flags`` is given."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split()) \
        if flags is None else set(flags)
    if "avx512f" in flags:
        return "AVX-512"
    if {"avx2", "fma"} <= flags:
        return "AVX2"
    if {"asimd", "neon"} & flags or platform.machine() in ("aarch64", "arm64"):
        return "NEON"
    return "SSE" if "sse2" in flags else "unknown"


# AMD's family 25 (0x19) holds Zen 3 and Zen 4 parts, told apart by model number; family 23
# (0x17) Zen, Zen+ (Pinnacle Ridge 0x08, Picasso 0x18) and Zen 2 (0x30 and up).
_ZEN4_MODELS_25 = (range(0x10, 0x20), range(0x60, 0x80), range(0xA0, 0xB0))
_ZEN_PLUS_MODELS_23 = (0x08, 0x18)


def cpu_core(info=None):
    """The microarchitecture where /proc/cpuinfo tells it (AMD Zen generations), else the CPU
    family and model numbers, e.g. "Zen 3 (family 25, model 1)"."""
    info = _cpuinfo() if info is None else info
    try:
        family, model = int(info["cpu family"]), int(info["model"])
    except (KeyError, ValueError):
        return platform.machine() or "unknown"
    name = None
    if info.get("vendor_id") == "AuthenticAMD":
        if family == 23:
            name = "Zen 2" if model >= 0x30 else "Zen+" if model in _ZEN_PLUS_MODELS_23 \
                else "Zen"
        elif family == 25:
            name = "Zen 4" if any(model in r for r in _ZEN4_MODELS_25) else "Zen 3"
        elif family == 26:
            name = "Zen 5"
    where = f"family {family}, model {model}"
    return f"{name} ({where})" if name else where


def kernel_path():
    """The vector path of the engine's CPU kernels (kernels.isa): ISA, vector width, tile."""
    from engine.kernels import isa

    return isa.describe()


def machine_label():
    """One line naming the CPU, its core and vector ISA, and the cores this process may use:
    what every speed figure must say it was measured on."""
    from bench.threads import available_cores

    return (f"{cpu_model()}, {cpu_core()}, {cpu_isa()}, {available_cores()} cores; kernels "
            f"{kernel_path()}")


def device_slug(*names):
    """Names of a device as results files spell them: lower case, dashes, without the
    trademark marks and filler words of CPU model names ("Intel(R) Xeon(R) Processor" ->
    intel-xeon), at most 60 characters."""
    text = re.sub(r"\((r|tm)\)|\b(processor|cpu)\b|@ *[0-9.]+ *ghz", " ", " ".join(names),
                  flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "unknown"


def cpu_slug():
    """The CPU as results files name it, e.g. amd-epyc-zen-3-avx2."""
    return device_slug(cpu_model(), cpu_core().split(" (")[0], cpu_isa())


def machine_info(backend):
    """Where and with what the run happens: CPU, versions, thread counts, load."""
    import numba
    import numpy
    import scipy
    import torch

    from bench.threads import THREAD_ENV, available_cores

    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": socket.gethostname(), "backend": backend, "cpu_model": cpu_model(),
        "cpu_core": cpu_core(), "cpu_isa": cpu_isa(),
        "cores_total": os.cpu_count(), "cores_available": available_cores(),
        "python": platform.python_version(), "numpy": numpy.__version__,
        "scipy": scipy.__version__, "numba": numba.__version__, "torch": torch.__version__,
        "threads": {"numba": numba.get_num_threads(), "torch": torch.get_num_threads(),
                    "env": {k: os.environ.get(k) for k in THREAD_ENV}},
        "loadavg_start": os.getloadavg(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "auto-detected"),
        "kernels": kernel_path(),
    }
    if backend == "gpu":
        import cupy

        info["gpu"] = torch.cuda.get_device_name()
        info["cupy"] = cupy.__version__
        info["cudnn"] = torch.backends.cudnn.version()
    return info


# Results are flagged unreliable when other processes used more than this share of the CPUs.
OTHER_LOAD_UNRELIABLE = 0.10


def cpu_snapshot():
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its waited-for
    children, wall seconds); two snapshots give how much CPU other processes took."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / tick  # all but idle and iowait
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system, t.elapsed


def other_load(start, end, cores):
    """Share of the CPUs (0..1) that processes other than this run used between snapshots."""
    wall = end[2] - start[2]
    if wall <= 0:
        return 0.0
    other = (end[0] - start[0]) - (end[1] - start[1])
    return max(0.0, other / (wall * cores))


def format_info(info):
    dev = info.get("gpu") or (f"{info['cpu_model']} ({info.get('cpu_core', '?')}, "
                              f"{info.get('cpu_isa', '?')})")
    t = info["threads"]
    busy = info["loadavg_start"][0] > 0.5 * info["cores_available"]
    warn = (f"WARNING: the machine is busy (load {info['loadavg_start'][0]:.2f} on "
            f"{info['cores_available']} cores before the run): timings will be noisy\n"
            if busy else "")
    return warn + (f"{info['backend']} backend on {dev} ({info['cores_available']} cores) | "
            f"numba {info['numba']}, torch {info['torch']}, numpy {info['numpy']} | "
            f"threads: numba {t['numba']}, torch {t['torch']}, BLAS "
            f"{t['env']['OPENBLAS_NUM_THREADS']} | OpenBLAS kernels "
            f"{info.get('openblas_coretype')} | load {info['loadavg_start'][0]:.2f}"
            + (f"\nkernels: {info['kernels']}" if "kernels" in info else ""))


# ---------------------------------------------------------------------------- table
_HEAD = (f"{'config':<7}{'mode':<10}{'T':>5}{'B':>5}{'I':>5}{'H':>5}{'L':>3} |"
         f"{'engine ms':>11}{'GFLOP/s':>9}{'%SGEMM':>8} |{'torch ms':>10}{'GFLOP/s':>9} |"
         f"{'speedup':>9}{'noise':>7}  check")


def table_header():
    return _HEAD + "\n" + "-" * len(_HEAD)


def format_row(r):
    """One table row; noise is the larger interquartile range / median of the two."""
    left = (f"{r['config']:<7}{r['mode']:<10}{r['T']:>5}{r['B']:>5}{r['I']:>5}{r['H']:>5}"
            f"{r['layers']:>3} |")
    if r["status"] == "ERROR":
        return left + f"  ERROR {r['error'][:80]}"
    c = r["check"]
    check = f"ok ({c['ratio']:.2g} of tol)" if c["ok"] else \
        f"FAILED: {c['worst']} at {c['ratio']:.3g}x tol (max abs err {c['max_abs_err']:.3g})"
    if r["status"] == "FAILED":
        return left + f"{'-':>11}{'-':>9}{'-':>8} |{'-':>10}{'-':>9} |{'-':>9}{'-':>7}  {check}"
    frac = f"{100 * r['sgemm_fraction']:.1f}%" if "sgemm_fraction" in r else "-"
    noise = f"{100 * r['spread']:.0f}%" if "spread" in r else "-"
    return left + (f"{r['engine_ms']:>11.3f}{r['engine_gflops']:>9.1f}{frac:>8} |"
                   f"{r['torch_ms']:>10.3f}{r['torch_gflops']:>9.1f} |"
                   f"{r['speedup']:>8.2f}x{noise:>7}  {check}")


def format_table(rows):
    return "\n".join([table_header()] + [format_row(r) for r in rows])


def format_progress(i, n, r):
    """One line while the run goes on (the table comes at the end, with the final roofline)."""
    head = f"[{i}/{n}] {r['config']} {r['mode']}: "
    if r["status"] == "ok":
        return head + (f"engine {r['engine_ms']:.3f} ms, torch {r['torch_ms']:.3f} ms, "
                       f"{r['repeats']} rounds")
    return head + r["status"] + (f" {r.get('error', '')}" if r["status"] == "ERROR" else "")


# ---------------------------------------------------------------------------- targets
def geomean(xs):
    xs = list(xs)
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def _timed(rows, mode):
    return [r for r in rows if r["mode"] == mode and r["status"] == "ok"]


def _every(rows, mode, minimum, label):
    all_rows = [r for r in rows if r["mode"] == mode]
    if not all_rows:
        return {"target": label, "status": "n/a", "detail": "not run"}
    ok = _timed(rows, mode)
    bad = [r["config"] for r in all_rows if r["status"] != "ok"]
    worst = min(ok, key=lambda r: r["speedup"]) if ok else None
    passed = not bad and worst["speedup"] >= minimum
    detail = f"min {worst['speedup']:.2f}x ({worst['config']})" if worst else ""
    if bad:
        detail += f"; not timed: {', '.join(bad)}"
    detail += f"; over {', '.join(r['config'] for r in all_rows)}"
    return {"target": label, "status": "PASS" if passed else "FAIL", "detail": detail}


def evaluate_targets(rows, sgemm, extras):
    """Each target of issues 5 and 19 as {"target", "status": PASS|FAIL|n/a, "detail"}."""
    t = [_every(rows, "training", TRAIN_MIN_SPEEDUP,
                f"training speedup >= {TRAIN_MIN_SPEEDUP} on every config"),
         _every(rows, "inference", INFER_MIN_SPEEDUP,
                f"inference speedup >= {INFER_MIN_SPEEDUP} on every config")]
    g = geomean(r["speedup"] for r in _timed(rows, "training"))
    t.append({"target": f"training geomean speedup >= {TRAIN_GEOMEAN}",
              "status": "n/a" if g is None else ("PASS" if g >= TRAIN_GEOMEAN else "FAIL"),
              "detail": "not run" if g is None else f"{g:.2f}x"})
    L = [r for r in _timed(rows, "training") if r["config"] == "L"]
    label = f"L training >= {L_SGEMM_FRACTION:.0%} of SGEMM"
    if L:
        f = L[0]["engine_gflops"] / sgemm
        t.append({"target": label, "status": "PASS" if f >= L_SGEMM_FRACTION else "FAIL",
                  "detail": f"{f:.1%} ({L[0]['engine_gflops']:.1f} of {sgemm:.1f} GFLOP/s)"})
    else:
        t.append({"target": label, "status": "n/a", "detail": "L training not timed"})
    t += _gemm_targets(L[0] if L else None, extras)
    t.append(_memory_target(extras.get("memory")))
    t.append(_first_result_target(extras.get("first_result")))
    return t


def _gemm_targets(L, extras):
    """Issue 19's: L training against the engine's own GEMM, and that GEMM against NumPy's."""
    g, np_g = extras.get("engine_gemm_gflops"), extras.get("numpy_gemm_paired_gflops")
    label = f"L training >= {L_SGEMM_FRACTION:.0%} of the engine's GEMM"
    if L and g:
        f = L["engine_gflops"] / g
        t = [{"target": label, "status": "PASS" if f >= L_SGEMM_FRACTION else "FAIL",
              "detail": f"{f:.1%} ({L['engine_gflops']:.1f} of {g:.1f} GFLOP/s)"}]
    else:
        t = [{"target": label, "status": "n/a", "detail": "not measured"}]
    label = f"engine GEMM >= {GEMM_NUMPY_FRACTION:.0%} of NumPy's SGEMM"
    if g and np_g:
        f = g / np_g
        t.append({"target": label, "status": "PASS" if f >= GEMM_NUMPY_FRACTION else "FAIL",
                  "detail": f"{f:.1%} ({g:.1f} of {np_g:.1f} GFLOP/s, timed alternately)"})
    else:
        t.append({"target": label, "status": "n/a", "detail": "not measured"})
    return t


def _memory_target(mem):
    label = "L training peak memory <= PyTorch's"
    if not mem:
        return {"target": label, "status": "n/a", "detail": "not measured"}
    e, p = mem["engine"]["step_peak_mb"], mem["torch"]["step_peak_mb"]
    return {"target": label, "status": "PASS" if e <= p else "FAIL",
            "detail": f"engine {e:.0f} MB vs torch {p:.0f} MB ({e / p:.2f}x)"}


def _first_result_target(fr):
    label = f"warm time to first result <= {FIRST_RESULT_WARM_S:g} s"
    if not fr:
        return {"target": label, "status": "n/a", "detail": "not measured"}
    w, c = fr["warm"]["first_result_s"], fr["cold"]["first_result_s"]
    return {"target": label, "status": "PASS" if w <= FIRST_RESULT_WARM_S else "FAIL",
            "detail": f"warm {w:.2f} s (cold {c:.2f} s)"}


# ---------------------------------------------------------------------------- outputs
def assemble(info, args, rows, sgemm_runs, extras, cpu_start):
    """The whole result as one JSON-able dict; the roofline is the better SGEMM run.

    cpu_start: ``cpu_snapshot()`` taken when the run began.
    """
    from bench.threads import blas_threads

    load = other_load(cpu_start, cpu_snapshot(), info["cores_available"])

    sgemm = max(sgemm_runs)
    for r in rows:
        if r["status"] == "ok":
            r["sgemm_fraction"] = r["engine_gflops"] / sgemm
    info["threads"]["blas"] = blas_threads()  # after the runs: SciPy's BLAS loads lazily
    info["loadavg_end"] = os.getloadavg()
    res = {"info": info, "args": vars(args), "other_load": load,
           "reliable": load <= OTHER_LOAD_UNRELIABLE, "sgemm_gflops": sgemm,
           "sgemm_runs_gflops": sgemm_runs, "rows": rows,
           "training_geomean_speedup": geomean(r["speedup"] for r in _timed(rows, "training")),
           "inference_geomean_speedup": geomean(
               r["speedup"] for r in _timed(rows, "inference")), **extras}
    if args.backend == "cpu":
        res["targets"] = evaluate_targets(rows, sgemm, extras)
    return res


def format_generation(row):
    """One line for ``bench.cases.bench_generation``'s row."""
    head = (f"generation, one step per call ({row['config']} sizes I={row['I']} H={row['H']}, "
            f"B=1, {row['T']} calls carrying the state): ")
    if row["status"] != "ok":
        return head + f"{row['status']} ({row.get('check', {}).get('worst', row.get('error'))})"
    return head + (f"engine {row['engine_us_per_step']:.0f} us/step, torch "
                   f"{row['torch_us_per_step']:.0f} us/step, speedup {row['speedup']:.2f}x")


def format_summary(res):
    """The table, the roofline, geomeans, memory, first result and the targets."""
    info = res["info"]
    from bench.cases import SGEMM_N

    lines = ["", format_table(res["rows"]), "",
             f"SGEMM roofline (float32 {SGEMM_N[info['backend']]}^2 matmul, "
             f"{info['threads']['env']['OPENBLAS_NUM_THREADS']} threads): "
             f"{res['sgemm_gflops']:.1f} GFLOP/s (best of runs before and after the rows: "
             + ", ".join(f"{g:.1f}" for g in res["sgemm_runs_gflops"]) + ")"]
    if res.get("torch_sgemm_gflops"):
        lines.append(f"for comparison, torch's own float32 matmul (same size and threads): "
                     f"{res['torch_sgemm_gflops']:.1f} GFLOP/s")
    if res.get("engine_gemm_gflops"):
        g = res["engine_gemm_gflops"]
        line = f"the engine's own float32 GEMM (kernels.gemm, same size): {g:.1f} GFLOP/s"
        if res.get("numpy_gemm_paired_gflops"):
            line += (f" against NumPy's {res['numpy_gemm_paired_gflops']:.1f} timed alternately"
                     f" ({g / res['numpy_gemm_paired_gflops']:.0%})")
        big = [r for r in res["rows"] if r["config"] == "L" and r["mode"] == "training"
               and r.get("engine_gflops")]
        if big:
            line += f"; L training runs at {100 * big[0]['engine_gflops'] / g:.0f}% of it"
        lines.append(line)
    for mode in ("training", "inference"):
        g = res[f"{mode}_geomean_speedup"]
        lines.append(f"geomean {mode} speedup: " + ("n/a" if g is None else f"{g:.2f}x"))
    fr = res.get("first_result")
    if fr:
        lines.append(f"time to first result (import engine + small forward): cold "
                     f"{fr['cold']['first_result_s']:.2f} s, "
                     f"warm {fr['warm']['first_result_s']:.2f} s")
    gen = res.get("generation")
    if gen:
        lines.append(format_generation(gen))
    mem = res.get("memory")
    if mem:
        lines.append(f"L training step peak memory above baseline: engine "
                     f"{mem['engine']['step_peak_mb']:.0f} MB, torch "
                     f"{mem['torch']['step_peak_mb']:.0f} MB ({mem['engine']['method']})")
    lines.append("noise: interquartile range / median of the samples (the larger of the two)")
    lines.append(f"load average: start {info['loadavg_start'][0]:.2f}, end "
                 f"{info['loadavg_end'][0]:.2f} (on {info['cores_available']} cores)")
    lines.append(f"other processes used {res['other_load']:.0%} of the CPUs during the run")
    if "targets" in res:
        flag = "" if res["reliable"] else \
            f" -- UNRELIABLE: other processes used {res['other_load']:.0%} of the CPUs"
        lines.append("targets (issues 5 and 19)" + flag + ":")
        lines += [f"  {t['status']:<4} {t['target']}: {t['detail']}" for t in res["targets"]]
    return "\n".join(lines)


def output_stem(res):
    """The results file of a run: one per machine kind (CPU model, core, vector ISA; or GPU),
    so a later run on the same kind of machine replaces it."""
    info, args = res["info"], res["args"]
    slug = device_slug(info["gpu"]) if info.get("gpu") else device_slug(
        info["cpu_model"], info.get("cpu_core", "").split(" (")[0], info.get("cpu_isa", ""))
    stem = f"{info['backend']}-{slug}"
    if args["grid"] != "issue":
        stem += f"-{args['grid']}grid"
    if info["backend"] == "cpu" and info.get("openblas_coretype", "auto-detected") != \
            "auto-detected":
        stem += "-openblas-" + info["openblas_coretype"].lower()
    if args["quick"] or args["configs"]:
        stem += "-partial" if args["configs"] else "-quick"
    return stem


def write_outputs(res, out_dir, plot=True):
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, output_stem(res))
    with open(stem + ".json", "w") as f:
        json.dump(res, f, indent=1, default=_json_default)
        f.write("\n")
    paths = [stem + ".json"]
    if plot:
        from bench.plot import plot_speedups

        paths.append(plot_speedups(res, stem + ".png"))
    return paths


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
