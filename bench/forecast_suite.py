"""The forecasting suite: ``forecast``'s default model against its baselines on real series.

    python -m bench.forecast_suite [--series airline,nile,...] [--seed 0] [--ets]
                                   [--out bench/results]

Each series (``bench/data/forecast/``, sources and licences in its PROVENANCE.md) goes through
``engine.apps.forecast.run`` unchanged, with the window and horizon below and a fixed seed;
the bundled sunspots run with the command's defaults.  Prints, and writes as
``forecast-suite-cpu-<machine>.json`` and ``.md`` under --out (one pair per machine), per
series: the model chosen on the validation period and the test mean RMSE and MASE of the model
and of every baseline, then issue 21's targets as PASS/FAIL:

- on every series the model is no worse than the best baseline (within 2%);
- on at least half it is better;
- on the sunspots its mean RMSE stays at or below 20.62 (the single LSTM's, before issue 21).

Quality, not speed: the figures depend on the CPU only through rounding, but the JSON names
it.  Takes about 10 minutes on 2 cores.
"""
import argparse
import json
import sys
import time
from pathlib import Path

DATA = Path(__file__).parent / "data" / "forecast"

# name: (file, column, window, horizon, what kind of series); None = the bundled sunspots.
SERIES = {
    "sunspots": (None, None, 60, 12, "monthly, 11-year cycle of varying length, long"),
    "airline": ("airline.csv", "passengers", 24, 12, "monthly, trend and growing yearly season, "
                                                     "short"),
    "lynx": ("lynx.csv", "trappings", 20, 5, "yearly, 10-year cycle, noisy, short"),
    "nile": ("nile.csv", "volume", 20, 5, "yearly, noisy with a level shift, short"),
    "realgdp": ("realgdp.csv", "realgdp", 16, 8, "quarterly, strong trend leaving the training "
                                                 "range"),
    "unemployment": ("unemployment.csv", "rate", 36, 12, "monthly, yearly season and business "
                                                         "cycles"),
    "commits": ("commits.csv", "commits", 28, 7, "daily counts, intermittent, weekly rhythm"),
    "taylor": ("taylor.csv", "demand_mw", 96, 48, "half-hourly, daily and weekly seasons, "
                                                  "long"),
}
WITHIN = 1.02  # no worse than the best baseline, within 2%
SUNSPOTS_BEFORE = 20.62  # the single LSTM's test mean RMSE before issue 21


def run_series(name, seed, ets=False):
    from engine.apps import forecast

    path, column, window, horizon, _ = SERIES[name]
    options = dict(window=window, horizon=horizon, seed=seed, quiet=True, ets=ets)
    if path is not None:
        options.update(csv=str(DATA / path), column=column)
    start = time.perf_counter()
    m = forecast.run(**options)
    m["seconds"] = time.perf_counter() - start
    return m


def table(results):
    """Markdown: per series, the chosen model and mean RMSE / MASE of model and baselines."""
    lines = ["| series | kind | W, H | season | chosen | model RMSE (MASE) | baselines: RMSE "
             "(MASE) | model / best | won |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, m in results.items():
        rm, ma = m["test_rmse_mean"], m["test_mase"]
        base = ", ".join(f"{b} {rm[b]:.4g} ({ma[b]:.2f})" for b in m["baselines"])
        won = "model" if rm["model"] < rm[m["best_baseline"]] else m["best_baseline"]
        lines.append(f"| {name} | {SERIES[name][4]} | {m['window']}, {m['horizon']} | "
                     f"{m['season'] or '-'} | {m['chosen']} | {rm['model']:.4g} "
                     f"({ma['model']:.2f}) | {base} | {m['model_vs_best_baseline']:.3f} | "
                     f"{won} |")
    return "\n".join(lines)


def targets(results):
    """[(target, result, passed)] for issue 21's targets on the series run."""
    ratios = {n: m["model_vs_best_baseline"] for n, m in results.items()}
    worst = max(ratios, key=ratios.get)
    better = sum(r < 1 for r in ratios.values())
    rows = [(f"model <= {WITHIN} x best baseline on every series",
             f"highest {ratios[worst]:.3f} ({worst})", ratios[worst] <= WITHIN),
            ("model better than the best baseline on at least half",
             f"{better} of {len(ratios)}", 2 * better >= len(ratios))]
    if "sunspots" in results:
        got = results["sunspots"]["test_rmse_mean"]["model"]
        rows.append((f"sunspots mean RMSE <= {SUNSPOTS_BEFORE}", f"{got:.2f}",
                     got <= SUNSPOTS_BEFORE))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.forecast_suite",
                                description=__doc__.splitlines()[0])
    p.add_argument("--series", help=f"comma-separated subset of {', '.join(SERIES)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results")
    p.add_argument("--ets", action="store_true", help="forecast --ets: exponential smoothing "
                   "among the baselines and candidates (needs statsmodels); the files are "
                   "named forecast-suite-ets-cpu-<machine>")
    args = p.parse_args(argv)
    names = [s.strip() for s in args.series.split(",")] if args.series else list(SERIES)
    unknown = sorted(set(names) - set(SERIES))
    if unknown:
        p.error(f"unknown series {unknown}; choose from {', '.join(SERIES)}")
    from bench.report import cpu_slug, machine_label

    results = {}
    for name in names:
        m = results[name] = run_series(name, args.seed, args.ets)
        print(f"{name}: chose {m['chosen']}, model / best baseline ({m['best_baseline']}) "
              f"{m['model_vs_best_baseline']:.3f}, {m['seconds']:.0f} s", flush=True)
    text = table(results)
    checks = targets(results)
    lines = [f"machine: {machine_label()}", "", text, ""] + [
        f"{'PASS' if ok else 'FAIL'}  {what}: {got}" for what, got, ok in checks]
    print("\n" + "\n".join(lines))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"forecast-suite{'-ets' if args.ets else ''}-cpu-{cpu_slug()}"
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (out / f"{stem}.json").write_text(json.dumps(
        {"machine": machine_label(), "seed": args.seed, "ets": args.ets, "results": results,
         "targets": [{"target": t, "result": r, "pass": bool(ok)} for t, r, ok in checks]},
        indent=1) + "\n")
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
