"""The benchmark cases as pytest-benchmark benchmarks (not collected by ``make test``).

    pytest bench/test_bench.py --benchmark-only [--benchmark-autosave]
    BENCH_CONFIGS=S,B1 pytest bench/test_bench.py --benchmark-only     # a subset
    BENCH_BACKEND=gpu pytest bench/test_bench.py --benchmark-only      # GPU backend vs cuDNN

One benchmark per config, mode and contender, grouped by config and mode so the table shows
engine and torch side by side.  Each (config, mode) is checked against PyTorch once, before
either contender is timed; that check also warms both up (compilation, caches).
pytest-benchmark times one contender at a time; the interleaved measurement that the issue's
targets are judged on is ``python -m bench.run``.
"""
import os

import pytest

from bench.cases import CONFIGS, GPU_CONFIGS, MODES, check, gemm_flops, make_cases

BACKEND = os.environ.get("BENCH_BACKEND", "cpu")
_GRID = GPU_CONFIGS if os.environ.get("BENCH_GRID") == "gpu" else CONFIGS
NAMES = [n for n in os.environ.get("BENCH_CONFIGS", ",".join(_GRID)).split(",") if n]


@pytest.fixture(scope="module")
def checked_cases():
    """{(config, mode): (engine case, torch case)}, each pair checked on first use."""
    if BACKEND == "gpu":
        from bench.run import gpu_unavailable_reason

        why = gpu_unavailable_reason()
        if why:
            pytest.skip(f"BENCH_BACKEND=gpu: {why}")
    cache = {}

    def get(name, mode):
        if (name, mode) not in cache:
            eng, ref = make_cases(_GRID[name], mode, backend=BACKEND)
            res = check(eng, ref)
            if not res["ok"]:
                pytest.fail(f"{name} {mode}: engine differs from torch: {res}")
            cache[name, mode] = (eng, ref)
        return cache[name, mode]
    return get


@pytest.mark.parametrize("contender", ["engine", "torch"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_lstm(benchmark, checked_cases, name, mode, contender):
    eng, ref = checked_cases(name, mode)
    case = eng if contender == "engine" else ref
    cfg = _GRID[name]
    benchmark.group = f"{name} {mode}"
    benchmark.extra_info.update(T=cfg.T, B=cfg.B, I=cfg.I, H=cfg.H, layers=cfg.layers,
                                gflop=gemm_flops(cfg, mode) / 1e9, backend=BACKEND)

    def step():
        case.step()
        case.sync()
    benchmark(step)  # rounds from --benchmark-min-rounds/--benchmark-max-time; the check warmed up
