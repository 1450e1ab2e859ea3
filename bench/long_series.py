"""A long synthetic hourly series for timing ``forecast`` on long data (``--epoch-windows``).

    python -m bench.long_series OUT.csv

Five years of hourly values (43,800): a daily cycle, a yearly cycle and slow AR(1) "weather"
(coefficient 0.995) plus a little noise, seeded, so the figures in the README and in
``bench/results/forecast-epoch-windows-*`` can be measured again with

    python -m engine forecast --csv OUT.csv --column temp --window 48 --horizon 24 \\
        [--epoch-windows N]

Synthetic on purpose: the real temperature series are kept aside to check the command.
"""
import sys

import numpy as np


def long_hourly(years=5, seed=5):
    """(dates datetime64[m], values) of the series described above."""
    rng = np.random.default_rng(seed)
    n = 24 * 365 * years
    t = np.arange(n)
    steps = rng.normal(0, 0.15, n)
    weather = np.zeros(n)
    for i in range(1, n):  # once, to write a file: not a hot path
        weather[i] = 0.995 * weather[i - 1] + steps[i]
    values = (12 + 4 * np.sin(2 * np.pi * (t - 9) / 24) + weather
              + 8 * np.sin(2 * np.pi * (t - 2000) / (24 * 365.25)) + rng.normal(0, 0.05, n))
    return np.datetime64("2019-01-01T00:00") + t.astype("timedelta64[h]"), values


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m bench.long_series OUT.csv")
    dates, values = long_hourly()
    with open(argv[0], "w") as f:
        f.write("time,temp\n")
        f.writelines(f"{d},{v:.3f}\n" for d, v in zip(dates, values))


if __name__ == "__main__":
    main()
