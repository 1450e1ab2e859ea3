"""``make demo``: a short run of each of the five applications on the bundled data.

Runs forecast, stocks, text, classify and speech with small budgets, then prints where the
plots (PNG) and metrics (JSON) went.  The first four took 95 s on a 2-core AMD EPYC Zen 3
(AVX2) with the kernels compiled, 179 s the first time, which compiles them (2026-12-03, after
issue 19's AVX2 kernels); speech adds 18 s there (2026-12-04; 7.8% digit errors on the test strings,
93.6% of isolated test digits right).  The full-size runs are the plain commands,
e.g. ``python -m engine forecast --out out/forecast``.
"""
import argparse
import sys
import time

# Short settings per command: enough to see each one learn, small enough for about 2 minutes
# once compiled (text's budget is 1.5 of them).
SHORT = {
    "forecast": dict(epochs=12, hidden=32, patience=4, seeds=1),
    "stocks": dict(epochs=5, hidden=16),
    "text": dict(minutes=1.5, hidden=128, sample=200),
    "classify": dict(epochs=15, hidden=32),
    "speech": dict(epochs=12, strings=400, singles=400, hidden=64),
}


def headline(m):
    """One line with the held-out figure of a command's metrics."""
    if m["command"] == "forecast":
        names = ["model"] + m["baselines"]
        return (f"model {m['chosen']} (chosen on validation); test RMSE mean over horizons: "
                + ", ".join(f"{k} {m['test_rmse_mean'][k]:.2f}" for k in names))
    if m["command"] == "stocks":
        return (f"next-day return edge: {m['next_day_return']['edge']}; 5-day volatility "
                f"edge: {m['volatility_5d']['edge']}")
    if m["command"] == "text":
        return (f"held-out {m['heldout_nats_per_char']:.3f} nats/char "
                f"({m['heldout_bits_per_char']:.3f} bits/char)")
    if m["command"] == "speech":
        strings, isolated = m["results"]["test strings"], m["results"]["isolated test digits"]
        return (f"test strings: {strings['beam']['label_error_rate']:.1%} digit errors (beam); "
                f"isolated test digits: {isolated['greedy']['sequence_accuracy']:.1%} right")
    return f"test accuracy {m['test_accuracy']:.1%}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=None, help="cpu, gpu or auto (default: ENGINE_BACKEND "
                    "or cpu)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out/demo", help="folder for plots and metrics")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    from engine.apps import MODULES

    written, start = [], time.perf_counter()
    for name, options in SHORT.items():
        print(f"\n=== {name} ({', '.join(f'{k}={v}' for k, v in options.items())}) ===",
              flush=True)
        t0 = time.perf_counter()
        metrics = MODULES[name].run(backend=args.backend, seed=args.seed, out=args.out,
                                    quiet=args.quiet, **options)
        written.append((name, metrics, time.perf_counter() - t0))
    print(f"\ndemo done in {time.perf_counter() - start:.0f} s; plots and metrics:")
    for name, m, seconds in written:
        print(f"  {name:9s} {m['files']['plot']}  {m['files']['metrics']}  ({seconds:.0f} s)")
        print(f"            {headline(m)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
