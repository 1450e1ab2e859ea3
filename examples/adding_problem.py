"""The adding problem (Hochreiter & Schmidhuber 1997), as in the issue's experiment.

Each sample is T steps of two channels: a value drawn from U(0, 1) and a marker that is 1 at
exactly two steps (one in each half of the sequence) and 0 elsewhere.  The target is the sum of
the two marked values.  Predicting the mean (1.0) gives MSE 1/6 ~ 0.167.

Setup: LSTM(2, 128) -> Dense(128, 1), many-to-one, MSE, Adam(1e-3), batch 64, fresh data every
step, test MSE on 1,000 held-out sequences.  Run:

    python examples/adding_problem.py                    # forget_bias 1 (the model default)
    python examples/adding_problem.py --no-forget-bias   # PyTorch's default initialisation
"""
import argparse
import time

import numpy as np

from engine import LSTM, Adam, Dense, Sequential


def adding_batch(rng, n, T):
    """x (n, T, 2) float32 values and markers; y (n, 1) float32 sums."""
    x = np.zeros((n, T, 2), np.float32)
    x[:, :, 0] = rng.random((n, T))
    first = rng.integers(0, T // 2, n)
    second = rng.integers(T // 2, T, n)
    rows = np.arange(n)
    x[rows, first, 1] = 1
    x[rows, second, 1] = 1
    y = (x[rows, first, 0] + x[rows, second, 0])[:, None]
    return x, y


def run(forget_bias=1.0, steps=3000, T=100, hidden=128, batch=64, lr=1e-3, seed=0,
        eval_every=250, n_test=1000, verbose=True):
    """Train and return [(step, test MSE)] every ``eval_every`` steps."""
    rng = np.random.default_rng(seed)
    x_test, y_test = adding_batch(rng, n_test, T)
    model = Sequential([LSTM(2, hidden, batch_first=True, seed=seed),
                        Dense(hidden, 1, seed=seed + 1)],
                       output="many_to_one", forget_bias=forget_bias)
    model.compile("mse", Adam(lr))
    curve, start = [], time.perf_counter()
    for done in range(0, steps, eval_every):
        n_steps = min(eval_every, steps - done)
        x, y = adding_batch(rng, n_steps * batch, T)
        model.fit(x, y, epochs=1, batch_size=batch, shuffle=False, verbose=False)
        curve.append((done + n_steps, model.evaluate(x_test, y_test)))
        if verbose:
            print(f"forget_bias={forget_bias} step {curve[-1][0]:5d}  test MSE "
                  f"{curve[-1][1]:.4f}  ({time.perf_counter() - start:.0f} s)", flush=True)
    return curve


def first_below(curve, level=0.01):
    """The first evaluated step with test MSE below ``level``, or None."""
    return next((step for step, m in curve if m < level), None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-forget-bias", action="store_true")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    fb = None if args.no_forget_bias else 1.0
    curve = run(forget_bias=fb, steps=args.steps, seed=args.seed)
    print(f"forget_bias={fb}: first step with test MSE < 0.01: {first_below(curve)}; "
          f"final test MSE {curve[-1][1]:.4f}")


if __name__ == "__main__":
    main()
