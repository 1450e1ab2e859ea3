"""Smoke test of the benchmark machinery (bench/): the check and the timing on a tiny config.

No timing thresholds: only that the check passes, catches a wrong weight, and that the
numbers of a row are consistent with each other.
"""
from pathlib import Path

import numpy as np
import pytest

# bench/ is a top-level folder of the repository (not installed): pytest puts the repository
# root on sys.path, as tests/ is a package.
from bench import cases
from bench.cases import MODES, Config, bench_case, bench_generation, check, gemm_flops, make_cases
from bench.report import evaluate_targets, format_generation, format_row

torch = pytest.importorskip("torch")

TINY = Config("tiny", T=4, B=2, I=3, H=5)


@pytest.mark.parametrize("mode", MODES)
def test_bench_case_checks_then_times(mode):
    row = bench_case(TINY, mode, repeats=3, budget_s=0.01, sgemm=100.0)
    assert row["status"] == "ok" and row["check"]["ok"], row["check"]
    assert row["check"]["ratio"] <= 1.0
    assert row["engine_ms"] > 0 and row["torch_ms"] > 0
    assert row["speedup"] == pytest.approx(row["torch_ms"] / row["engine_ms"])
    assert row["engine_gflops"] == pytest.approx(gemm_flops(TINY, mode) / row["engine_ms"] / 1e6)
    assert row["sgemm_fraction"] == pytest.approx(row["engine_gflops"] / 100.0)
    assert row["repeats"] == len(row["engine_samples_ms"]) == len(row["torch_samples_ms"]) >= 3
    assert "x " in format_row(row)


def test_bench_generation_checks_then_times():
    """One-step calls on one sequence (B = 1 whatever the config's B), state carried."""
    row = bench_generation(TINY, repeats=3, budget_s=0.01)
    assert row["status"] == "ok" and row["check"]["ok"], row["check"]
    assert row["B"] == 1 and row["mode"] == "generation"
    assert row["engine_us_per_step"] == pytest.approx(1e3 * row["engine_ms"] / TINY.T)
    assert row["speedup"] == pytest.approx(row["torch_ms"] / row["engine_ms"])
    assert "us/step" in format_generation(row)


def test_check_catches_a_wrong_weight():
    eng, ref = make_cases(TINY, "training")
    with torch.no_grad():
        ref.model.weight_hh_l0[0, 0] += 1e-2
    res = check(eng, ref)
    assert not res["ok"] and res["ratio"] > 1.0


def test_check_covers_every_gradient():
    eng, ref = make_cases(Config("two", T=3, B=2, I=3, H=4, layers=2), "training")
    got = eng.results()
    assert {"output", "h_n", "c_n", "grad_input"} <= set(got)
    assert {k for k in got if k.startswith("grad.")} == \
        {"grad." + k for k in eng.model.state_dict()}


def test_gemm_flops_formula():
    one = Config("one", T=10, B=2, I=3, H=4)
    assert gemm_flops(one, "inference") == 2 * 10 * 2 * 16 * (3 + 4)
    assert gemm_flops(one, "training") == 3 * gemm_flops(one, "inference")
    two = Config("two", T=10, B=2, I=3, H=4, layers=2)
    assert gemm_flops(two, "inference") == 2 * 10 * 2 * 16 * ((3 + 4) + (4 + 4))


def test_targets_pass_and_fail():
    def row(cfg, mode, speedup, gflops=100.0):
        return {"config": cfg, "mode": mode, "status": "ok", "speedup": speedup,
                "engine_gflops": gflops}
    rows = [row("S", "training", 1.5), row("L", "training", 1.2, gflops=150.0),
            row("S", "inference", 0.9), row("L", "inference", 1.1)]
    extras = {"memory": {"engine": {"step_peak_mb": 90.0}, "torch": {"step_peak_mb": 100.0}},
              "first_result": {"cold": {"first_result_s": 5.0},
                               "warm": {"first_result_s": 2.5}},
              "engine_gemm_gflops": 180.0, "numpy_gemm_paired_gflops": 210.0}
    got = [t["status"] for t in evaluate_targets(rows, 200.0, extras)]
    # training >= 1 everywhere, inference >= 1 everywhere, geomean sqrt(1.8) >= 1.25,
    # L at 75% of SGEMM, at 83% of the engine's GEMM, that GEMM at 86% of NumPy's,
    # memory 0.9x, warm first result 2.5 s
    assert got == ["PASS", "FAIL", "PASS", "FAIL", "PASS", "FAIL", "PASS", "FAIL"]
    extras.update(engine_gemm_gflops=190.0, numpy_gemm_paired_gflops=200.0)
    got = [t["status"] for t in evaluate_targets(rows, 200.0, extras)]
    assert got[4:6] == ["FAIL", "PASS"]  # L at 79% of 190; 95% of NumPy's
    failed = dict(rows[0], status="FAILED")
    assert evaluate_targets([failed], 200.0, {})[0]["status"] == "FAIL"
    assert [t["status"] for t in evaluate_targets([], 200.0, {})] == ["n/a"] * 8


def test_a_compiling_first_call_does_not_size_the_row():
    """The check's engine call includes compilation: alone it must not cut the row to the
    minimum of rounds without warm-up; calls that are all long do size it."""
    assert cases.sizes_from_check({"engine": 9.0, "torch": 0.0003}) is None
    assert cases.sizes_from_check(None) is None
    long_calls = {"engine": cases.WARMUP_SKIP_S, "torch": cases.WARMUP_SKIP_S * 0.6}
    assert cases.sizes_from_check(long_calls) == {k: [v] for k, v in long_calls.items()}


def test_device_script_rejects_an_unknown_step_before_writing(tmp_path):
    import subprocess

    script = Path(cases.__file__).resolve().parent / "device.sh"
    out = subprocess.run(["bash", str(script), "all"], cwd=tmp_path, capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "o")})
    assert out.returncode == 2
    assert "tests|gpu|cpu" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_speech_bench_times_the_same_network_in_both(tmp_path):
    """bench.speech's PyTorch model, given the engine recognizer's weights, has the engine's
    CTC loss on a batch; then a one-round run writes its figures."""
    import json

    import torch

    from bench import speech as bench_speech
    from bench.report import cpu_isa
    from engine.apps import speech

    x, y, lengths, _ = bench_speech.examples(3, 0, singles_every=200)
    args = speech.parse_options(speech.add_arguments, 1, None, dict(hidden=5))
    model = speech.build_model(args, 10)
    theirs = bench_speech.TorchRecognizer(5, 11)
    sd = {k: torch.tensor(v) for k, v in model.state_dict().items()}
    for i, module in ((1, theirs.lstm1), (3, theirs.lstm2), (4, theirs.dense)):
        module.load_state_dict({k[2:]: v for k, v in sd.items() if k.startswith(f"{i}.")})
    want = bench_speech.torch_loss(theirs, torch.nn.CTCLoss(), x, y, lengths).item()
    assert model.evaluate(x, y, lengths=lengths) == pytest.approx(want, rel=1e-5)
    assert bench_speech.main(["--rounds", "1", "--strings", "2", "--hidden", "4",
                              "--singles-every", "200", "--out", str(tmp_path)]) == 0
    result = json.loads(next(tmp_path.glob("speech-cpu-*.json")).read_text())
    assert result["speedup"] > 0 and cpu_isa() in result["machine"]


def test_long_series_writes_five_years_hourly_that_forecast_reads(tmp_path):
    """bench.long_series (the --epoch-windows figures): 43,800 hourly rows, in date order,
    the same file every time."""
    from bench import long_series
    from engine.apps.datasets import read_dated_columns

    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for path in paths:
        long_series.main([str(path)])
    assert paths[0].read_bytes() == paths[1].read_bytes()
    values, dates = read_dated_columns(paths[0], ["temp"], unit="m")
    assert values.shape == (43_800, 1) and np.isfinite(values).all()
    assert (np.diff(dates) == np.timedelta64(60, "m")).all()
    assert 2 < values.std() < 20  # the cycles are there, not a constant


def test_forecast_suite_over_seeds_writes_each_seed_and_the_spread(tmp_path, monkeypatch):
    """--seed 0,1: the suite once per seed (each seed reaching run_series), each seed's
    targets, the ratio at every seed and its mean; a failing seed fails the run."""
    import json

    from bench import forecast_suite

    ratios = {("nile", 0): 0.98, ("nile", 1): 1.03, ("lynx", 0): 0.70, ("lynx", 1): 0.74}
    calls = []

    def fake_run(name, seed, ets=False):
        calls.append((name, seed))
        r = ratios[name, seed]
        return {"test_rmse_mean": {"model": r, "ar": 1.0}, "test_mase": {"model": r, "ar": 1.0},
                "baselines": ["ar"], "best_baseline": "ar", "model_vs_best_baseline": r,
                "chosen": "lstm", "window": 20, "horizon": 5, "season": None, "seconds": 0.0}

    monkeypatch.setattr(forecast_suite, "run_series", fake_run)
    rc = forecast_suite.main(["--series", "nile,lynx", "--seed", "0,1", "--out", str(tmp_path)])
    assert rc == 1  # nile at seed 1 is 1.03 of its best baseline
    assert calls == [("nile", 0), ("lynx", 0), ("nile", 1), ("lynx", 1)]
    md = next(tmp_path.glob("forecast-suite-nile-lynx-seeds-0-1-cpu-*.md")).read_text()
    assert "| nile | 0.980 | 1.030 | 1.005 | 1.030 | 1 |" in md
    assert "| lynx | 0.700 | 0.740 | 0.720 | 0.740 | 0 |" in md
    assert md.count("PASS  model <= 1.02") == 1 and md.count("FAIL  model <= 1.02") == 1
    record = json.loads(next(tmp_path.glob("forecast-suite-nile-lynx-seeds-0-1-cpu-*.json"))
                        .read_text())
    assert [t["pass"] for t in record["seeds"]["1"]["targets"]] == [False, True]
    assert record["seeds"]["0"]["results"]["lynx"]["model_vs_best_baseline"] == 0.70


def test_forecast_suite_seeds_take_ranges_and_name_their_files():
    import argparse

    from bench.forecast_suite import SERIES, file_stem, seeds_argument

    assert seeds_argument("0-3,7") == [0, 1, 2, 3, 7] and seeds_argument("5") == [5]
    for bad in ("3-1", "a", "1,1", "0-2,2"):
        with pytest.raises(argparse.ArgumentTypeError):
            seeds_argument(bad)
    assert file_stem(list(SERIES), [0], False) == "forecast-suite"
    assert file_stem(list(SERIES), [0, 1, 2], True) == "forecast-suite-ets-seeds-0-1-2"
    assert file_stem(["lynx", "nile"], list(range(20)), False) == \
        "forecast-suite-lynx-nile-seeds-0-to-19"
    assert file_stem(["nile"], [0, 2, 4, 6], False) == "forecast-suite-nile-seeds-0-2-4-6"


def test_forecast_suite_summary_puts_the_sunspots_beside_the_lstm_before_it():
    from bench.forecast_suite import SUNSPOTS_BEFORE_BY_SEED, seed_summary

    by_seed = {s: {"sunspots": {"model_vs_best_baseline": 0.85,
                                "test_rmse_mean": {"model": 20.0 + s}}} for s in (0, 1)}
    line = seed_summary(by_seed)[-1]
    before = (SUNSPOTS_BEFORE_BY_SEED[0] + SUNSPOTS_BEFORE_BY_SEED[1]) / 2
    assert "20.00 / 21.00 at seeds 0, 1, mean 20.50" in line and f"mean {before:.2f}" in line


def test_forecast_heldout_writes_readable_series_and_marks_the_runs_over_the_bound(
        tmp_path, monkeypatch):
    """The held-out series are files forecast reads (the CO2 stand-in with gaps, the hourly
    ones hourly, the closes split-adjusted and positive), drawn the same every time; the
    report marks each run over 1.02 in both ratios and counts them."""
    from bench import forecast_heldout
    from engine.apps.datasets import read_dated_table

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    files = forecast_heldout.write_series(tmp_path / "a")
    again = forecast_heldout.write_series(tmp_path / "b")
    for name in ("co2-weekly", "temperature-hourly", "smooth-hourly", "retail", "demand",
                 "random-walk-weekly", "AAPL", "IBM"):
        path, column = files[name]
        assert path.read_text() == again[name][0].read_text()
        values = read_dated_table(path, [column], None, 100, "interpolate", None, "m",
                                  "").values
        assert np.isfinite(values).all() and values.std() > 0 and len(values) >= 360
        assert name in ("random-walk-weekly", "temperature-hourly") or values.min() >= 0
    co2 = files["co2-weekly"][0].read_text().splitlines()
    assert sum(line.endswith(",") for line in co2) > 20  # gaps, for --missing interpolate
    dates = read_dated_table(files["smooth-hourly"][0], ["value"], None, 100, "error",
                             None, "m", "").dates
    assert (np.diff(dates) == np.timedelta64(60, "m")).all()

    def fake_run(name, path, column, seed):
        r = {"pop": 1.08, "retail": 0.95}[name] + seed / 100
        return {"chosen": "ensemble", "model_vs_best_baseline": r, "vs_val_baseline": r - 0.05,
                "val_baseline": "ar", "seconds": 0.0}

    monkeypatch.setattr(forecast_heldout, "run_one", fake_run)
    monkeypatch.setattr(forecast_heldout, "write_series",
                        lambda folder: {"pop": ("p.csv", "v"), "retail": ("r.csv", "v")})
    forecast_heldout.main(["--series", "pop,retail", "--seed", "0,1", "--out", str(tmp_path)])
    md = next(tmp_path.glob("forecast-heldout-pop-retail-seeds-0-1-cpu-*.md")).read_text()
    assert "| **1.080** / **1.090** | **1.030** / **1.040** |" in md
    assert "| 0.950 / 0.960 | 0.900 / 0.910 |" in md
    assert "runs over 1.02 x the best baseline: 2 of 4 (seeds 0, 1)" in md


def test_results_files_name_the_amd_core():
    from bench.report import cpu_core

    def core(family, model):
        return cpu_core({"vendor_id": "AuthenticAMD", "cpu family": str(family),
                         "model": str(model)})

    assert core(23, 1) == "Zen (family 23, model 1)"  # EPYC Naples
    assert core(23, 8).startswith("Zen+ ") and core(23, 0x31).startswith("Zen 2 ")
    assert core(25, 1).startswith("Zen 3 ") and core(25, 0x11).startswith("Zen 4 ")
    assert core(26, 2).startswith("Zen 5 ")
    assert cpu_core({"vendor_id": "GenuineIntel", "cpu family": "6", "model": "85"}) == \
        "family 6, model 85"


def test_results_files_drop_the_marks_of_cpu_names():
    from bench.report import device_slug

    assert device_slug("Intel(R) Xeon(R) Processor", "family 6, model 167", "AVX-512") == \
        "intel-xeon-family-6-model-167-avx-512"
    assert device_slug("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", "family 6, model 158",
                       "AVX2") == "intel-core-i7-8700-family-6-model-158-avx2"
    assert device_slug("AMD EPYC Processor", "Zen 3", "AVX2") == "amd-epyc-zen-3-avx2"
    assert device_slug("NVIDIA H200") == "nvidia-h200"
