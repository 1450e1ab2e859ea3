"""``forecast``: multi-step forecasting of a univariate series with an LSTM.

Data: the bundled monthly sunspots, or column ``--column`` of ``--csv FILE``.  Windows of
``--window`` values are made over the whole series and split chronologically 70/15/15 by
window; the scaler is fitted on the values the training windows see, and nothing else.

Modes:
- direct (default): LSTM -> Dense(H) predicts the next H values at once from the window.
- recursive: a one-step model is rolled forward H times, its forecasts fed back as inputs.

The model predicts the change from the window's last value (scaled), so "no change" (the
persistence forecast) is the zero output it starts near.  Test RMSE per horizon is reported
beside persistence and a least-squares AR of the same window, fitted on the training windows
only; all three are computed on the same test windows.
"""
import numpy as np

import engine
from engine.apps.baselines import fit_linear_ar, persistence_forecast, rmse_per_horizon
from engine.apps.common import (COUNT, POSITIVE, SIZE, AppError, Report, add_load_argument,
                                fit_early_stopping, load_saved, parse_options, save_model,
                                saved_value, user_data, write_outputs)
from engine.apps.datasets import MISSING_POLICIES, load_sunspots, read_dated_series
from engine.apps.windows import StandardScaler, chronological_split, make_windows

EPOCHS = 60


def add_arguments(p):
    p.add_argument("--csv", metavar="FILE", help="a CSV file with a header row (default: "
                   "the bundled monthly sunspots)")
    p.add_argument("--column", metavar="NAME", help="the CSV column holding the series")
    p.add_argument("--date-column", metavar="NAME", help="dates for the plots' x axis "
                   "(default: a column named like Date, when its cells read as dates)")
    p.add_argument("--date-format", metavar="FMT", help="strptime format of the dates, e.g. "
                   "%%d/%%m/%%Y (default: ISO, MM/DD/YYYY or DD.MM.YYYY, with or without a time)")
    p.add_argument("--window", type=COUNT, default=60, help="input window W (default 60)")
    p.add_argument("--horizon", type=COUNT, default=12, help="forecast horizon H (default 12)")
    p.add_argument("--mode", choices=("direct", "recursive"), default="direct")
    p.add_argument("--hidden", type=SIZE, default=64, help="LSTM hidden size (default 64)")
    p.add_argument("--lr", type=POSITIVE, default=3e-3, help="Adam learning rate")
    p.add_argument("--batch-size", type=COUNT, default=32)
    p.add_argument("--patience", type=COUNT, default=10, help="early-stopping patience, epochs")
    p.add_argument("--missing", choices=MISSING_POLICIES, default="error",
                   help="missing values (empty, NA, NaN, ?): stop with an error naming the first "
                        "(default), drop their rows, or interpolate them linearly")
    add_load_argument(p)


def load_series(args):
    """(values (T,), name, dates (T,) or None): the CSV column, or the bundled sunspots
    (monthly from January 1749).  The dates only label the plots' x axis."""
    if args.csv is None:
        values = load_sunspots()
        return values, "sunspots (monthly)", np.datetime64("1749-01") + np.arange(len(values))
    if args.column is None:
        raise AppError("--csv needs --column NAME (the column holding the series)")
    with user_data():
        series, dates = read_dated_series(args.csv, args.column, args.date_column,
                                          args.window + args.horizon + 3, args.missing,
                                          args.date_format)
    return series, f"{args.csv}:{args.column}", dates


def prepare(series, args):
    """Windows, split and scaling.  Returns a dict with X (N, W, 1), Y (N, H) in data units,
    the train/val/test slices, the fitted scaler, and Xs / Ds: the scaled windows and the
    scaled targets minus the scaled last window value."""
    with user_data("forecast"):
        X, Y = make_windows(series, args.window, args.horizon)
        split = chronological_split(len(X))
    train = split[0]
    scaler = StandardScaler().fit(series[:train.stop - 1 + args.window + args.horizon])
    Xs = scaler.transform(X).astype(np.float32)
    Ds = (scaler.transform(Y) - Xs[:, -1, :]).astype(np.float32)
    return dict(X=X, Y=Y, split=split, scaler=scaler, Xs=Xs, Ds=Ds)


def build_model(args, outputs):
    """LSTM(1, hidden) -> Dense(hidden, outputs), many-to-one, compiled with Adam on MSE."""
    lstm = engine.LSTM(1, args.hidden, batch_first=True, backend=args.backend, seed=args.seed)
    dense = engine.Dense(args.hidden, outputs, backend=args.backend, seed=args.seed + 1)
    model = engine.Sequential([lstm, dense], output="many_to_one")
    return model.compile("mse", engine.Adam(lr=args.lr), clip_norm=1.0)


def forecast_scaled(model, Xs, horizon, mode):
    """Scaled forecasts (N, H) from scaled windows Xs (N, W, 1)."""
    if mode == "direct":
        return Xs[:, -1, :] + model.predict(Xs)
    window, out = Xs.copy(), []
    for _ in range(horizon):
        nxt = window[:, -1, :] + model.predict(window)  # (N, 1)
        out.append(nxt)
        window = np.concatenate([window[:, 1:], nxt[:, :, None]], axis=1).astype(np.float32)
    return np.concatenate(out, axis=1)


def run(args=None, **overrides):
    """Train, evaluate on the test windows and return the metrics dict (see the module doc)."""
    args = parse_options(add_arguments, EPOCHS, args, overrides)
    report = Report(args.quiet)
    if args.load:
        return apply_saved(args, report)
    series, name, dates = load_series(args)
    d = prepare(series, args)
    train, val, test = d["split"]
    k = args.horizon if args.mode == "direct" else 1
    report(f"forecast: {name}, {len(series)} values, window {args.window}, horizon "
           f"{args.horizon} ({args.mode}); windows train/val/test "
           f"{train.stop}/{val.stop - val.start}/{test.stop - test.start}")
    model = build_model(args, k)
    history = fit_early_stopping(model, (d["Xs"][train], d["Ds"][train, :k]),
                                 (d["Xs"][val], d["Ds"][val, :k]), args, args.batch_size,
                                 args.patience, report)
    save_model(model, args, report, command="forecast", window=args.window,
               horizon=args.horizon, mode=args.mode, scaler=d["scaler"].state(),
               input="the last `window` values, scaled by `scaler`, shape (N, window, 1)",
               output="scaled change from the last input value for each of the next "
                      "`horizon` steps (one step in recursive mode)")
    metrics = evaluate(model, d, args, name, history)
    if dates is not None:
        test = d["split"][2]
        metrics["test_period"] = [str(dates[test.start + args.window]),
                                  str(dates[test.stop - 1 + args.window + args.horizon - 1])]
    print_table(metrics, report)
    return write_outputs(args, "forecast", metrics,
                         lambda plt, path: plot(plt, path, series, dates, d, metrics), report)


def _mode(value):
    if value not in ("direct", "recursive"):
        raise ValueError(f"expected 'direct' or 'recursive', got {value!r}")
    return value


def apply_saved(args, report):
    """--load: the saved model on the series (--csv or the bundled one), with the window,
    horizon, mode and scaler saved with it: RMSE per horizon over every window of the series
    beside persistence, and the forecast of the next ``horizon`` values after its end."""
    model = load_saved(args, "forecast")
    args.window = saved_value(args, model, "window", COUNT)
    args.horizon = saved_value(args, model, "horizon", COUNT)
    mode = saved_value(args, model, "mode", _mode)
    scaler = saved_value(args, model, "scaler", StandardScaler.from_state)
    series, name, _ = load_series(args)
    with user_data("forecast"):
        X, Y = make_windows(series, args.window, args.horizon)
    pred = scaler.inverse_transform(forecast_scaled(
        model, scaler.transform(X).astype(np.float32), args.horizon, mode))
    last = scaler.transform(series[-args.window:]).astype(np.float32)[None, :, None]
    future = scaler.inverse_transform(forecast_scaled(model, last, args.horizon, mode))[0]
    rmse = {"lstm": rmse_per_horizon(pred, Y),
            "persistence": rmse_per_horizon(persistence_forecast(X, args.horizon), Y)}
    metrics = {"command": "forecast", "model": args.load, "data": name, "window": args.window,
               "horizon": args.horizon, "mode": mode, "n_windows": int(len(X)),
               "rmse_per_horizon": {k: v.tolist() for k, v in rmse.items()},
               "rmse_mean": {k: float(v.mean()) for k, v in rmse.items()},
               "next_forecast": future.tolist()}
    report(f"forecast: {args.load} on {name}: {len(X)} windows of {args.window}, horizon "
           f"{args.horizon} ({mode}); RMSE mean over horizons: lstm "
           f"{metrics['rmse_mean']['lstm']:.4g}, persistence "
           f"{metrics['rmse_mean']['persistence']:.4g}")
    report(f"next {args.horizon} values after the series: "
           + ", ".join(f"{v:.4g}" for v in future))
    return write_outputs(args, "forecast", metrics,
                         lambda plt, path: plot_next(plt, path, series, future, metrics), report)


def plot_next(plt, path, series, future, m):
    """The series' last stretch and the forecast of the values after it."""
    fig, ax = plt.subplots(figsize=(10, 4))
    n = min(len(series), 4 * m["window"])
    t = np.arange(len(series) - n, len(series))
    ax.plot(t, series[-n:], color="0.4", lw=1, label="series")
    ax.plot(len(series) + np.arange(len(future)), future, "o-", ms=3, label="forecast")
    ax.set(title=f"{m['data']}: next {m['horizon']} values ({m['model']})", xlabel="step",
           ylabel="value")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate(model, d, args, name, history):
    """Test RMSE per horizon for the model, persistence and the train-only AR."""
    test, train = d["split"][2], d["split"][0]
    X, Y = d["X"], d["Y"]
    pred = d["scaler"].inverse_transform(
        forecast_scaled(model, d["Xs"][test], args.horizon, args.mode))
    ar = fit_linear_ar(X[train], Y[train])
    rmse = {"lstm": rmse_per_horizon(pred, Y[test]),
            "persistence": rmse_per_horizon(persistence_forecast(X[test], args.horizon), Y[test]),
            f"ar{args.window}": rmse_per_horizon(ar.predict(X[test]), Y[test])}
    d["pred"], d["ar_pred"] = pred, ar.predict(X[test])
    base = {k: v for k, v in rmse.items() if k != "lstm"}
    return {
        "command": "forecast", "data": name, "window": args.window, "horizon": args.horizon,
        "mode": args.mode, "epochs_run": len(history["loss"]),
        "best_epoch": history.get("best_epoch"), "train_seconds": history["seconds"],
        "n_test": int(len(pred)),
        "test_rmse_per_horizon": {k: v.tolist() for k, v in rmse.items()},
        "test_rmse_mean": {k: float(v.mean()) for k, v in rmse.items()},
        "beats_persistence_every_horizon": bool(np.all(rmse["lstm"] < rmse["persistence"])),
        "beats_ar_on_mean": bool(rmse["lstm"].mean() < rmse[f"ar{args.window}"].mean()),
        "best_baseline_mean": min(base, key=lambda k: base[k].mean()),
        "history": {"loss": history["loss"], "val_loss": history["val_loss"]},
    }


def print_table(m, report):
    """Test RMSE per horizon: one row per horizon, one column per forecaster."""
    names = list(m["test_rmse_per_horizon"])
    report("test RMSE per horizon (data units):")
    report("   h " + "".join(f"{n:>13s}" for n in names))
    for h in range(m["horizon"]):
        report(f"{h + 1:4d} " + "".join(f"{m['test_rmse_per_horizon'][n][h]:13.2f}"
                                        for n in names))
    report("mean " + "".join(f"{m['test_rmse_mean'][n]:13.2f}" for n in names))
    report(f"LSTM beats persistence at every horizon: {m['beats_persistence_every_horizon']}; "
           f"beats AR on the mean: {m['beats_ar_on_mean']}")


def plot(plt, path, series, dates, d, m):
    """Top left: the whole test period with the 1-step and H-step forecasts.  Top right: its
    last stretch, zoomed, with the last full H-step forecast.  Bottom: test RMSE per horizon
    of the model and both baselines.  The x axis shows dates when the data have them."""
    test, W, H = d["split"][2], m["window"], m["horizon"]
    t0 = test.start + W  # series index of the first test target
    x = dates if dates is not None else np.arange(len(series))
    n = len(d["pred"])
    fig = plt.figure(figsize=(12, 7.5))
    grid = fig.add_gridspec(2, 3)
    whole, zoom, b = fig.add_subplot(grid[0, :2]), fig.add_subplot(grid[0, 2]), \
        fig.add_subplot(grid[1, :])
    lo = max(t0 - 3 * W, 0)
    whole.plot(x[lo:], series[lo:], color="0.6", lw=1, label="history / actual")
    whole.plot(x[t0:t0 + n], d["pred"][:, 0], lw=1, label="LSTM, 1 step ahead")
    whole.plot(x[t0 + H - 1:t0 + H - 1 + n], d["pred"][:, -1], lw=1,
               label=f"LSTM, {H} steps ahead")
    whole.axvline(x[t0], color="k", ls=":", lw=0.8)
    whole.set(title=f"{m['data']}: test period", xlabel="date" if dates is not None else "step",
              ylabel="value")
    whole.legend(fontsize=8)
    span = min(n + H - 1, max(4 * H, 60))  # the last targets, zoomed
    z0 = t0 + n + H - 1 - span
    zoom.plot(x[z0:t0 + n + H - 1], series[z0:t0 + n + H - 1], color="0.6", lw=1,
              label="actual")
    zoom.plot(x[max(z0, t0):t0 + n], d["pred"][max(z0 - t0, 0):, 0], lw=1, label="1 step")
    zoom.plot(x[t0 + n - 1:t0 + n - 1 + H], d["pred"][-1], "k.-", lw=1.5,
              label=f"last {H}-step forecast")
    zoom.set(title=f"last {span} steps", xlabel="date" if dates is not None else "step")
    zoom.legend(fontsize=8)
    h = np.arange(1, H + 1)
    for name, r in m["test_rmse_per_horizon"].items():
        b.plot(h, r, "o-", label=f"{name} (mean {np.mean(r):.2f})")
    b.set(title="test RMSE per horizon", xlabel="horizon", ylabel="RMSE")
    b.legend(fontsize=8)
    if dates is not None:
        for ax in (whole, zoom):
            ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
