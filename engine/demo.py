"""``make demo``: a short training run on the bundled monthly sunspots, CPU backend by default.

An LSTM reads 60 months and predicts the next one; the loss falls epoch by epoch, and the test
RMSE is printed beside the persistence baseline on the same chronological split.
"""
import argparse
import time

import numpy as np

import engine
from engine.baselines import persistence_forecast, rmse_per_horizon
from engine.datasets import load_sunspots
from engine.windows import StandardScaler, chronological_split, make_windows

WINDOW = 60


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=None, help="cpu, gpu or auto (default: ENGINE_BACKEND or cpu)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    series = load_sunspots()
    X, Y = make_windows(series, WINDOW, horizon=1)
    train, _, test = chronological_split(len(X))
    scaler = StandardScaler().fit(series[:train.stop + WINDOW])
    Xs, Ys = (scaler.transform(a).astype(np.float32) for a in (X, Y))

    lstm = engine.LSTM(1, 32, batch_first=True, backend=args.backend, seed=args.seed)
    model = engine.Sequential([lstm, engine.Dense(32, 1, backend=args.backend, seed=args.seed)],
                              output="many_to_one")
    model.compile("mse", engine.Adam(lr=3e-3))
    print(f"sunspots: {len(series)} months, {train.stop} training windows of {WINDOW}, "
          f"backend={lstm.backend.name}")
    start = time.perf_counter()
    for epoch in range(args.epochs):
        hist = model.fit(Xs[train], Ys[train], epochs=1, batch_size=64, seed=args.seed,
                         verbose=False)
        print(f"epoch {epoch + 1:2d}  train loss (scaled MSE) {hist['loss'][-1]:.4f}")
    pred = scaler.inverse_transform(model.predict(Xs[test]))
    lstm_rmse = rmse_per_horizon(pred, Y[test])[0]
    base_rmse = rmse_per_horizon(persistence_forecast(X[test], 1), Y[test])[0]
    print(f"test RMSE: LSTM {lstm_rmse:.1f}, persistence {base_rmse:.1f} "
          f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
