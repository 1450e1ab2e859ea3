"""Data-parallel training on this machine: 1 and 2 MPI ranks, and what the allreduce costs.

    python -m bench.distributed [--configs M,L] [--rounds 3] [--out bench/results]

For each configuration (bench.cases: T, B, I, H) it times training epochs of
``Sequential.fit`` (LSTM -> Dense, MSE, Adam, float32) in two layouts, alternately, so that
drift hits both: one process with all the cores' threads, and ``mpiexec -n 2`` with one
thread per rank and ``fit(distributed=True)`` (the same global batch B, each rank B/2).  It
reports samples per second, the scaling efficiency (2-rank throughput over the 1-process
one), per step the allreduce time against the compute time, and the same 2 ranks with one
blocking allreduce after the backward instead of per-layer allreduces started during it
(``ENGINE_ALLREDUCE_OVERLAP=0``): what the overlap saves.  From the measured figures it
then works out, on paper, the efficiency on N machines connected at 10, 25 and 100 Gb/s
(ring allreduce: 2 (N-1)/N x gradient bytes / bandwidth, plus 2 (N-1) x LATENCY) and the global
batch at which it reaches 90%.  Writes ``distributed-<machine>.{json,md}``.
"""
import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LATENCY = 20e-6  # seconds per message of a ring step on Ethernet (an assumed typical figure)
LINKS_GBPS = (10, 25, 100)
MACHINES = (2, 4, 8, 16)


def worker(config, steps, out):
    """Under mpiexec (or alone): train ``steps`` timed steps after a warm-up epoch."""
    import numpy as np

    import engine
    from bench.cases import CONFIGS
    from engine.distributed import ranks

    c = CONFIGS[config]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(c.B * steps, c.T, c.I)).astype(np.float32)
    y = rng.normal(size=(c.B * steps, c.H)).astype(np.float32)
    model = engine.Sequential([engine.LSTM(c.I, c.H, batch_first=True, seed=1),
                               engine.Dense(c.H, c.H, seed=2)], output="many_to_one")
    model.compile("mse", engine.Adam(lr=1e-4))
    model.fit(x[:2 * c.B], y[:2 * c.B], batch_size=c.B, verbose=False, distributed=True)
    start = time.perf_counter()
    h = model.fit(x, y, batch_size=c.B, verbose=False, distributed=True, shuffle=False)
    seconds = time.perf_counter() - start
    if ranks().root:
        params = sum(int(np.prod(p.shape)) for p in model.params.values())
        Path(out).write_text(json.dumps({
            "ranks": ranks().size, "seconds": seconds, "steps": steps,
            "samples_per_s": c.B * steps / seconds,
            "allreduce_s_per_step": h.get("allreduce_seconds", 0.0) / steps,
            "gradient_bytes": 4 * (params + 2)}))


def launch(config, steps, ranks, threads, tmp, overlap=True):
    out = Path(tmp) / f"{config}-{ranks}.json"
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               ENGINE_ALLREDUCE_OVERLAP="1" if overlap else "0")
    for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    cmd = [sys.executable, "-m", "bench.distributed", "--worker", config, "--steps",
           str(steps), "--worker-out", str(out)]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or "mpiexec"
        # --bind-to none: Open MPI binds each rank to one core by default; a rank with
        # NUMBA_NUM_THREADS=k threads needs --bind-to none or --map-by slot:PE=k.
        cmd = [mpiexec, "-n", str(ranks), "--bind-to", "none", "--oversubscribe"] + cmd
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.read_text())


def on_paper(one, two):
    """Efficiency on N machines from the measured compute per sample and gradient bytes."""
    per_sample = 1 / one["samples_per_s"]  # one machine's compute per sample (all cores)
    rows = []
    for gbps in LINKS_GBPS:
        bandwidth = gbps * 1e9 / 8
        for n in MACHINES:
            allreduce = 2 * (n - 1) / n * one["gradient_bytes"] / bandwidth + \
                2 * (n - 1) * LATENCY
            batch = two["batch"]
            compute = per_sample * batch / n
            eff = compute / (compute + allreduce)
            # global batch G for 90%: per_sample * G / n >= 9 * allreduce
            g90 = 9 * allreduce * n / per_sample
            rows.append({"gbps": gbps, "machines": n, "allreduce_ms": 1e3 * allreduce,
                         "efficiency_at_B": eff, "global_batch_for_90": g90})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.distributed",
                                description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="M,L")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default: "
                   "20 for M, 6 for L)")
    p.add_argument("--out", default="bench/results")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.steps, args.worker_out)
    import tempfile

    from bench.cases import CONFIGS
    from bench.report import cpu_slug, machine_label
    from bench.threads import available_cores

    cores = available_cores()
    results, lines = {}, [f"machine: {machine_label()}", ""]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs.split(","):
            c = CONFIGS[name]
            steps = args.steps or (20 if c.T * c.H <= 25600 else 6)
            runs = {1: [], 2: [], "2-blocking": []}
            for _ in range(args.rounds):  # alternate, so that drift hits every layout
                runs[1].append(launch(name, steps, 1, cores, tmp))
                runs[2].append(launch(name, steps, 2, max(cores // 2, 1), tmp))
                runs["2-blocking"].append(launch(name, steps, 2, max(cores // 2, 1), tmp,
                                                 overlap=False))
            best = {k: max(v, key=lambda r: r["samples_per_s"]) for k, v in runs.items()}
            blocking = best["2-blocking"]
            one, two = best[1], dict(best[2], batch=c.B)
            step = 1 / two["samples_per_s"] * c.B
            results[name] = {"config": dataclasses.asdict(c),
                             "one_process": runs[1], "two_ranks": runs[2],
                             "two_ranks_blocking": runs["2-blocking"],
                             "overlap_gain": two["samples_per_s"] / blocking["samples_per_s"],
                             "efficiency": two["samples_per_s"] / one["samples_per_s"],
                             "allreduce_share": two["allreduce_s_per_step"] / step,
                             "on_paper": on_paper(one, two)}
            lines += [f"{name} (T={c.T}, B={c.B}, I={c.I}, H={c.H}): one process with {cores} "
                      f"threads {one['samples_per_s']:.0f} samples/s; 2 ranks x "
                      f"{max(cores // 2, 1)} thread {two['samples_per_s']:.0f} samples/s: "
                      f"efficiency {results[name]['efficiency']:.2f}; allreduce "
                      f"{1e3 * two['allreduce_s_per_step']:.2f} ms of a {1e3 * step:.1f} ms "
                      f"step ({100 * results[name]['allreduce_share']:.1f}%), "
                      f"{two['gradient_bytes'] / 1e6:.2f} MB of gradients; without overlap "
                      f"(one blocking allreduce after the backward) {blocking['samples_per_s']:.0f}"
                      f" samples/s, waiting {1e3 * blocking['allreduce_s_per_step']:.2f} ms a step"]
            for row in results[name]["on_paper"]:
                lines.append(f"  on paper: {row['machines']:2d} machines at {row['gbps']:3d} "
                             f"Gb/s: allreduce {row['allreduce_ms']:.2f} ms, efficiency at "
                             f"B={c.B} {100 * row['efficiency_at_B']:.0f}%, 90% from a global "
                             f"batch of {row['global_batch_for_90']:.0f}")
            print("\n".join(lines[-1 - len(results[name]['on_paper']):]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = "cpu-" + cpu_slug()
    (out / f"distributed-{slug}.md").write_text("\n".join(lines) + "\n")
    (out / f"distributed-{slug}.json").write_text(json.dumps(
        {"machine": machine_label(), "latency_assumed_s": LATENCY, "results": results},
        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
