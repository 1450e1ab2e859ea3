"""Held-out series for ``forecast``: kinds the suite lacks, to check a change of the model or
of its choice on data it was not tuned on.

    python -m bench.forecast_heldout [--series realinv,co2-weekly,...] [--seed 0[,1,2] | 0-2]
                                     [--out bench/results]

The suite (``bench.forecast_suite``) is what issue 21's targets are measured on; rules tuned
on it can still fail elsewhere, so a rule is kept only when these series agree.  They are:

- US quarterly macro series 1959-2009 from statsmodels' ``macrodata`` (public domain; read
  from the installed package, skipped without it): real consumption and investment, CPI, M1,
  population, the T-bill rate and inflation;
- the yearly sunspot numbers 1700-2008 (statsmodels' ``sunspots``, public domain);
- daily closes (adjusted) of AAPL and IBM 2000-2012 from the bundled ``stocks.csv.gz``
  (``engine/apps/data/PROVENANCE.md``): random walks, where persistence is hard to beat;
- seeded synthetic stand-ins for the kinds the issue keeps aside (atmospheric CO2, weather
  temperature): a weekly CO2-like series with gaps (interpolated, as the issue's user did),
  two hourly temperature-like series with a daily cycle (one with weather, one smooth), plus
  a monthly multiplicative season on exponential growth, intermittent daily demand and a
  weekly random walk with drift and a yearly cycle.

Each runs through ``engine.apps.forecast.run`` with the window and horizon below.  Printed and
written as ``forecast-heldout[-seeds-...]-cpu-<machine>.{md,json}`` under --out: per series
and seed the model chosen, its test mean RMSE over the best baseline's (the 2% target's
ratio) and over the baseline the validation period ranks first, which is what a user who
picked a baseline by validation would get.  Where the latter also exceeds 1.02 the
validation period misleads every choice (realinv: a regime change between the two periods).
About 6 minutes a seed on 2 cores.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.forecast_suite import WITHIN, file_stem, series_parser, series_subset
from engine.apps.datasets import load_stocks

MACRO = ("realcons", "realinv", "cpi", "m1", "pop", "tbilrate", "infl")
# name: (window, horizon, kind)
SERIES = {
    "realcons": (16, 8, "quarterly real consumption, trend"),
    "realinv": (16, 8, "quarterly real investment, trend and cycles"),
    "cpi": (16, 8, "quarterly consumer prices, accelerating trend"),
    "m1": (16, 8, "quarterly money stock, trend"),
    "pop": (16, 8, "quarterly population, smooth trend"),
    "tbilrate": (12, 4, "quarterly 3-month T-bill rate, wandering"),
    "infl": (12, 4, "quarterly inflation, noisy"),
    "sunspots-yearly": (30, 5, "yearly sunspot numbers, 11-year cycle"),
    "AAPL": (20, 5, "daily close, random walk with a strong rise"),
    "IBM": (20, 5, "daily close, random walk"),
    "co2-weekly": (52, 13, "synthetic: weekly CO2-like, accelerating trend, gaps"),
    "temperature-hourly": (48, 24, "synthetic: hourly, daily and yearly cycles, weather"),
    "smooth-hourly": (48, 24, "synthetic: hourly, strong daily cycle, little noise"),
    "retail": (24, 12, "synthetic: monthly, multiplicative season, exponential growth"),
    "demand": (28, 7, "synthetic: daily counts, intermittent, weekly rhythm"),
    "random-walk-weekly": (26, 13, "synthetic: weekly random walk, drift, yearly cycle"),
}


def write_series(folder):
    """{name: (csv path, column)} for every series available here (the statsmodels ones only
    when statsmodels is installed), written into ``folder``."""
    folder = Path(folder)
    files = {}
    try:
        import statsmodels.api as sm
    except ImportError:
        print("statsmodels is not installed: the macro series and the yearly sunspots are "
              "skipped", file=sys.stderr)
    else:
        m = sm.datasets.macrodata.load_pandas().data
        dates = [f"{int(y)}-{3 * int(q) - 2:02d}-01" for y, q in zip(m.year, m.quarter)]
        for name in MACRO:
            files[name] = _write(folder / f"{name}.csv", "value", m[name].to_numpy(), dates)
        spots = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()
        files["sunspots-yearly"] = _write(folder / "sunspots-yearly.csv", "value", spots)
    for ticker in ("AAPL", "IBM"):  # the adjusted close, as stocks reads it
        prices = load_stocks(ticker)
        files[ticker] = _write(folder / f"{ticker}.csv", "value", prices.close, prices.dates)
    for name, (values, dates) in synthetic().items():
        files[name] = _write(folder / f"{name}.csv", "value", values, dates)
    return files


def synthetic():
    """{name: (values, dates)}: the seeded stand-ins."""
    rng = np.random.default_rng(7)
    n = 2600
    t = np.arange(n) / 52.1775
    co2 = (330 + 1.2 * t + 0.014 * t ** 2 + 3.0 * np.sin(2 * np.pi * (t - 0.3))
           + 0.9 * np.sin(4 * np.pi * t + 1) + rng.normal(0, 0.35, n))
    co2[rng.random(n) < 0.03] = np.nan  # gaps, interpolated by --missing interpolate
    weeks = np.datetime64("1974-05-19") + 7 * np.arange(n)
    n = 24 * 365
    h = np.arange(n)
    weather = _ar1(rng.normal(0, 0.25, n), 0.97)
    temp = (10 + 8 * np.sin(2 * np.pi * (h / 24 / 365.25 - 0.28))
            + 4 * np.sin(2 * np.pi * (h % 24 - 9) / 24) + weather)
    hours = np.datetime64("2021-01-01T00:00") + h.astype("timedelta64[h]")
    n = 24 * 200
    h = np.arange(n)
    smooth = (21 + 3 * np.sin(2 * np.pi * (h % 24 - 8) / 24) + 0.8 * np.sin(4 * np.pi * h / 24)
              + np.cumsum(rng.normal(0, 0.01, n)) + rng.normal(0, 0.05, n))
    n = 360
    t = np.arange(n)
    retail = 100 * np.exp(0.004 * t) * (1 + 0.25 * np.sin(2 * np.pi * t / 12)) \
        * np.exp(rng.normal(0, 0.03, n))
    n = 1500
    rate = 0.6 * (1 + 0.8 * (np.arange(n) % 7 < 5))
    demand = rng.poisson(rate) * (rng.random(n) < 0.5)
    n = 400
    w = np.arange(n)
    walk = 50 + 0.3 * w + 5 * np.sin(2 * np.pi * w / 52) + np.cumsum(rng.normal(0, 0.8, n))
    return {
        "co2-weekly": (co2, weeks),
        "temperature-hourly": (temp, hours),
        "smooth-hourly": (smooth, np.datetime64("2022-03-01T00:00") + h.astype(
            "timedelta64[h]")),
        "retail": (retail, np.datetime64("1990-01") + np.arange(360)),
        "demand": (demand.astype(float), np.datetime64("2019-01-01") + np.arange(1500)),
        "random-walk-weekly": (walk, np.datetime64("2015-01-05") + 7 * w),
    }


def _ar1(shocks, phi):
    """x[t] = phi x[t-1] + shocks[t], from x[-1] = 0."""
    from scipy.signal import lfilter

    return lfilter([1.0], [1.0, -phi], shocks)


def _write(path, column, values, dates=None):
    cells = ["" if np.isnan(v) else f"{v:.6g}" for v in np.asarray(values, dtype=float)]
    if dates is None:
        path.write_text(f"{column}\n" + "".join(f"{c}\n" for c in cells))
    else:
        path.write_text(f"date,{column}\n" + "".join(
            f"{d},{c}\n" for d, c in zip(map(str, dates), cells)))
    return path, column


def run_one(name, path, column, seed):
    """forecast's metrics for one series and seed, with ``vs_val_baseline``: the model's test
    mean RMSE over that of the baseline with the lowest validation error."""
    from engine.apps import forecast

    window, horizon, _ = SERIES[name]
    start = time.perf_counter()
    m = forecast.run(csv=str(path), column=column, window=window, horizon=horizon, seed=seed,
                     missing="interpolate", quiet=True)
    m["seconds"] = time.perf_counter() - start
    first = min(m["baselines"], key=m["val_rmse_mean"].get)
    m["val_baseline"] = first
    m["vs_val_baseline"] = m["test_rmse_mean"]["model"] / m["test_rmse_mean"][first]
    return m


def table(names, by_seed):
    """Markdown: per series, at each seed, the choice and the two ratios."""
    seeds = list(by_seed)
    lines = ["| series | kind | W, H | chosen | model / best baseline | model / validation's "
             "baseline |", "| --- | --- | --- | --- | --- | --- |"]
    for name in names:
        runs = [by_seed[s][name] for s in seeds]
        best = " / ".join(_marked(m["model_vs_best_baseline"]) for m in runs)
        first = " / ".join(_marked(m["vs_val_baseline"]) for m in runs)
        chosen = " / ".join(m["chosen"] for m in runs)
        w, h, kind = SERIES[name]
        lines.append(f"| {name} | {kind} | {w}, {h} | {chosen} | {best} | {first} |")
    over = sum(by_seed[s][n]["model_vs_best_baseline"] > WITHIN for s in seeds for n in names)
    lines += ["", f"runs over {WITHIN} x the best baseline: {over} of {len(names) * len(seeds)}"
              f" (seeds {', '.join(map(str, seeds))})"]
    return lines


def _marked(ratio):
    return f"**{ratio:.3f}**" if ratio > WITHIN else f"{ratio:.3f}"


def main(argv=None):
    p = series_parser("bench.forecast_heldout", __doc__, SERIES)
    args = p.parse_args(argv)
    names = series_subset(p, args.series, SERIES)
    from bench.report import cpu_slug, machine_label

    with tempfile.TemporaryDirectory() as folder:
        files = write_series(folder)
        names = [n for n in names if n in files]
        by_seed = {}
        for seed in args.seed:
            by_seed[seed] = {}
            for name in names:
                m = by_seed[seed][name] = run_one(name, *files[name], seed)
                print(f"{name} (seed {seed}): chose {m['chosen']}, model / best baseline "
                      f"{m['model_vs_best_baseline']:.3f}, / the validation's baseline "
                      f"({m['val_baseline']}) {m['vs_val_baseline']:.3f}, {m['seconds']:.0f} s",
                      flush=True)
    lines = [f"machine: {machine_label()}", ""] + table(names, by_seed)
    print("\n" + "\n".join(lines))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # A subset names its series; without statsmodels the rest keeps the default name.
    every = SERIES if args.series else names
    stem = f"{file_stem(names, list(by_seed), False, 'forecast-heldout', every)}-cpu-{cpu_slug()}"
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    record = {"machine": machine_label(),
              "seeds": {str(s): r for s, r in by_seed.items()}}
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
