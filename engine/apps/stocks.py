"""``stocks``: next-day log return and 5-day realised volatility from past daily returns.

Data: a bundled ticker (``--ticker AAPL``; also IBM, MSFT, GOOG, FB) or ``--csv FILE`` with a
date and a price column (Yahoo/Quandl/Stooq exports work as they are).  Each sample is the
last ``--window`` log returns (two channels: r and |r|, scaled by the training std); the
targets are the next day's return r[t+1] and the realised volatility
sqrt(r[t+1]^2 + ... + r[t+5]^2) of the next 5 days.  Samples are split 70/15/15 in time,
less the last 4 validation samples, whose volatility targets reach into the test days.

Baselines on the same test days: zero and historical-mean return; historical-mean and
last-5-days (persistence) volatility; the majority direction.  An edge is claimed only when
the model's test MSE is below the best baseline's with a Newey-West t statistic above 2 on
the squared-error differences (and, for direction, a z score above 2).  Next-day returns are
close to unpredictable, so expect "no edge" there; volatility clusters, so it is predictable.
"""
import numpy as np

import engine
from engine.apps.baselines import (directional_accuracy, majority_direction_accuracy, mean_forecast,
                                   mse, zero_forecast)
from engine.apps.common import (COUNT, POSITIVE, SIZE, AppError, Report, add_load_argument,
                                add_missing_arguments, fit_early_stopping, load_saved,
                                parse_options, report_missing, save_model, saved_setting,
                                saved_value, user_data, warn_missing_codes, write_outputs)
from engine.apps.datasets import load_stocks, read_price_csv
from engine.apps.windows import (StandardScaler, chronological_split, log_returns,
                                 min_split_size, realised_volatility)

EPOCHS = 30
# The options only training reads (--load names any given: they change nothing).
TRAINING = ("hidden", "lr", "batch_size", "patience", "seed")
VOL_DAYS = 5
# A sample's volatility target covers VOL_DAYS returns, so the last VOL_DAYS - 1 validation
# samples' targets would be test days: they are left out (chronological_split's gap).
GAP = VOL_DAYS - 1
MIN_SAMPLES = min_split_size(gap=GAP)  # 32: the validation keeps one sample
T_EDGE = 2.0


def add_arguments(p):
    p.add_argument("--ticker", default="AAPL", help="bundled ticker (default AAPL)")
    p.add_argument("--csv", metavar="FILE", help="a CSV with a date and a price column")
    p.add_argument("--date-column", help="name of the date column (default: guessed)")
    p.add_argument("--price-column", help="name of the price column (default: Adj Close, "
                   "Close, Price or Value)")
    p.add_argument("--date-format", metavar="FMT", help="strptime format of the dates, e.g. "
                   "%%d/%%m/%%Y, epoch / epoch-ms for Unix time in seconds / milliseconds, "
                   "or excel for a spreadsheet's day numbers (default: ISO, MM/DD/YYYY, "
                   "DD/MM/YYYY where a day over 12 shows it, or DD.MM.YYYY, with or without a "
                   "time; a year alone)")
    p.add_argument("--window", type=COUNT, default=20, help="past returns per sample")
    p.add_argument("--hidden", type=SIZE, default=32)
    p.add_argument("--lr", type=POSITIVE, default=1e-3)
    p.add_argument("--batch-size", type=COUNT, default=64)
    p.add_argument("--patience", type=COUNT, default=6)
    add_missing_arguments(p)
    add_load_argument(p)


def load_prices(args):
    """A PriceSeries from --csv, or the bundled --ticker."""
    need = args.window + VOL_DAYS + 20
    with user_data():
        if args.csv:
            prices = read_price_csv(args.csv, args.date_column, args.price_column, need,
                                    args.missing, args.date_format, args.na_values or ())
            warn_missing_codes(args, prices.close, list(prices.missing))
            return prices
        return load_stocks(args.ticker)


def make_samples(prices, window):
    """X (N, W, 2) raw [r, |r|] windows; y_ret (N,); y_vol (N,); last_vol (N,) the realised
    volatility of each window's last 5 returns; dates (N,) of the predicted day."""
    r = log_returns(prices.close)
    vol = realised_volatility(r, VOL_DAYS)      # vol[i] covers r[i : i+5]
    ends = np.arange(window - 1, len(r) - VOL_DAYS)  # window r[t-W+1 .. t], target day t+1
    if len(ends) < MIN_SAMPLES:
        raise AppError(f"{prices.name}: {len(prices.close)} prices are too few for window "
                       f"{window} (need at least {window + VOL_DAYS + MIN_SAMPLES})")
    idx = ends[:, None] + np.arange(-window + 1, 1)
    X = np.stack([r[idx], np.abs(r[idx])], axis=2)
    return X, r[ends + 1], vol[ends + 1], vol[ends - VOL_DAYS + 1], prices.dates[ends + 2]


def build_model(args):
    lstm = engine.LSTM(2, args.hidden, batch_first=True, backend=args.backend, seed=args.seed)
    dense = engine.Dense(args.hidden, 2, backend=args.backend, seed=args.seed + 1)
    model = engine.Sequential([lstm, dense], output="many_to_one")
    return model.compile("mse", engine.Adam(lr=args.lr), clip_norm=1.0)


def run(args=None, **overrides):
    """Train on returns, compare with the baselines on the test days; returns the metrics."""
    args = parse_options(add_arguments, EPOCHS, args, overrides, TRAINING)
    report = Report(args.quiet)
    if args.load:
        return apply_saved(args, report)
    prices = load_prices(args)
    missing = report_missing(args, prices.missing, report)
    X, y_ret, y_vol, last_vol, dates = make_samples(prices, args.window)
    with user_data(prices.name):
        train, val, test = chronological_split(len(X), gap=GAP)
    if not np.any(X[train, :, 0]):
        raise AppError(f"{args.csv or prices.name}: the prices are constant over the training days "
                       f"({prices.dates[0]} .. {dates[train.stop - 1]}): no returns to learn from")
    sx = StandardScaler().fit(X[train].reshape(-1, 2)[:, :1])  # one scale for r and |r|
    Xs = (X / sx.scale_).astype(np.float32)
    Y = np.stack([y_ret, y_vol], axis=1)
    sy = StandardScaler().fit(Y[train])
    Ys = sy.transform(Y).astype(np.float32)
    report(f"stocks: {prices.name}, {len(prices.close)} days {prices.dates[0]} .. "
           f"{prices.dates[-1]}; samples train/val/test {train.stop}/{val.stop - val.start}/"
           f"{test.stop - test.start}")
    model = build_model(args)
    history = fit_early_stopping(model, (Xs[train], Ys[train]), (Xs[val], Ys[val]), args,
                                 args.batch_size, args.patience, report)
    save_model(model, args, report, command="stocks", window=args.window,
               input_scale=float(sx.scale_[0]), target_scaler=sy.state(),
               input="the last `window` daily log returns r and |r|, divided by "
                     "`input_scale`, shape (N, window, 2)",
               output="next-day log return and 5-day realised volatility, scaled by "
                      "`target_scaler`")
    pred = sy.inverse_transform(model.predict(Xs[test]))
    metrics = evaluate(pred, Y, last_vol, (train, test), prices.name, history)
    metrics["window"] = args.window
    if missing:
        metrics["missing_values"] = missing
    print_report(metrics, report)
    plot_data = (dates[test], Y[test], pred, last_vol[test])
    return write_outputs(args, "stocks", metrics,
                         lambda plt, path: plot(plt, path, plot_data, metrics), report)


def apply_saved(args, report):
    """--load: the saved model on the prices (--csv or --ticker), with the window and scales
    saved with it: MSE of both targets over every day of the series beside the zero-return
    and last-5-days baselines, and the prediction for the day after the last price."""
    model = load_saved(args, "stocks")
    args.window = saved_setting(args, model, "window", COUNT, add_arguments)
    scale = saved_value(args, model, "input_scale", POSITIVE)
    sy = saved_value(args, model, "target_scaler", StandardScaler.from_state)
    prices = load_prices(args)
    report_missing(args, prices.missing, report)
    X, y_ret, y_vol, last_vol, dates = make_samples(prices, args.window)
    pred = sy.inverse_transform(model.predict((X / scale).astype(np.float32)))
    r = log_returns(prices.close)[-args.window:]
    last = (np.stack([r, np.abs(r)], axis=1)[None] / scale).astype(np.float32)
    nxt = sy.inverse_transform(model.predict(last))[0]
    metrics = {"command": "stocks", "model": args.load, "data": prices.name,
               "window": args.window, "n_days": int(len(X)),
               "next_day_return_mse": {"lstm": mse(pred[:, 0], y_ret),
                                       "zero": mse(zero_forecast(y_ret), y_ret)},
               "volatility_5d_mse": {"lstm": mse(pred[:, 1], y_vol),
                                     "persistence": mse(last_vol, y_vol)},
               "directional_accuracy": directional_accuracy(pred[:, 0], y_ret),
               "after": str(prices.dates[-1]),
               "prediction": {"next_day_return": float(nxt[0]),
                              "volatility_5d": float(nxt[1])}}
    report(f"stocks: {args.load} on {prices.name}, {len(X)} days: next-day return MSE "
           f"{metrics['next_day_return_mse']['lstm']:.3e} (zero "
           f"{metrics['next_day_return_mse']['zero']:.3e}); 5-day volatility MSE "
           f"{metrics['volatility_5d_mse']['lstm']:.3e} (last 5 days "
           f"{metrics['volatility_5d_mse']['persistence']:.3e})")
    report(f"after {metrics['after']}: next-day log return {nxt[0]:+.4f}, 5-day realised "
           f"volatility {nxt[1]:.4f}")
    return write_outputs(args, "stocks", metrics,
                         lambda plt, path: plot_volatility(plt, path, dates, y_vol, pred[:, 1],
                                                           metrics), report)


def plot_volatility(plt, path, dates, true, pred, m):
    """Realised 5-day volatility and the saved model's prediction of it, by date."""
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(dates, true, color="0.5", lw=0.8, label="realised")
    ax.plot(dates, pred, lw=0.8, label="predicted")
    ax.set(title=f"{m['data']}: 5-day realised volatility ({m['model']})", xlabel="date",
           ylabel="volatility")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def newey_west_t(d, lags=VOL_DAYS):
    """t statistic of mean(d) > 0 with a Newey-West (Bartlett) long-run variance, which allows
    for the overlap of the 5-day targets."""
    d = np.asarray(d, dtype=np.float64)
    e = d - d.mean()
    var = e @ e / len(d)
    for lag in range(1, min(lags, len(d) - 1) + 1):
        var += 2 * (1 - lag / (lags + 1)) * (e[lag:] @ e[:-lag]) / len(d)
    return float(d.mean() / np.sqrt(max(var, 1e-300) / len(d)))


def compare(pred, true, baselines):
    """MSE of the model and each baseline; the edge test against the best baseline."""
    errs = {"lstm": mse(pred, true)} | {k: mse(v, true) for k, v in baselines.items()}
    best = min(baselines, key=lambda k: errs[k])
    t = newey_west_t((baselines[best] - true) ** 2 - (pred - true) ** 2)
    return {"test_mse": errs, "best_baseline": best, "t_stat_vs_best": t,
            "edge": bool(errs["lstm"] < errs[best] and t > T_EDGE)}


def evaluate(pred, Y, last_vol, split, name, history):
    """Metrics for both targets on the test days (see the module docstring)."""
    train, test = split
    ret_true, vol_true = Y[test, 0], Y[test, 1]
    ret = compare(pred[:, 0], ret_true, {"zero": zero_forecast(ret_true),
                                         "mean": mean_forecast(Y[train, 0], ret_true)})
    vol = compare(pred[:, 1], vol_true, {"zero": zero_forecast(vol_true),
                                         "mean": mean_forecast(Y[train, 1], vol_true),
                                         "persistence": last_vol[test]})
    acc = directional_accuracy(pred[:, 0], ret_true)
    maj = majority_direction_accuracy(Y[train, 0], ret_true)
    z = (acc - maj) / np.sqrt(max(maj * (1 - maj), 1e-12) / len(ret_true))
    ret["directional_accuracy"] = {"lstm": acc, "majority": maj, "z": float(z),
                                   "edge": bool(z > T_EDGE)}
    return {"command": "stocks", "data": name, "n_test": int(len(ret_true)),
            "epochs_run": len(history["loss"]), "best_epoch": history.get("best_epoch"),
            "train_seconds": history["seconds"], "next_day_return": ret,
            "volatility_5d": vol,
            "history": {"loss": history["loss"], "val_loss": history["val_loss"]}}


def verdict(name, part):
    """A plain sentence: edge or no edge, with the numbers behind it."""
    e, best = part["test_mse"], part["best_baseline"]
    ratio = e["lstm"] / e[best]
    if part["edge"]:
        return (f"{name}: the model has an edge on the test split: MSE {ratio:.3f} x the best "
                f"baseline ({best}), t = {part['t_stat_vs_best']:.1f}.")
    return (f"{name}: NO EDGE over the {best} baseline on the test split (MSE ratio "
            f"{ratio:.3f}, t = {part['t_stat_vs_best']:.1f}; an edge needs ratio < 1 and "
            f"t > {T_EDGE:g}).")


def print_report(m, report):
    for key, title in (("next_day_return", "next-day log return"),
                       ("volatility_5d", "5-day realised volatility")):
        part = m[key]
        report(f"{title}, test MSE: " + ", ".join(f"{k} {v:.3e}"
                                                  for k, v in part["test_mse"].items()))
        report("  " + verdict(title, part))
    d = m["next_day_return"]["directional_accuracy"]
    report(f"direction: LSTM {d['lstm']:.1%} vs majority class {d['majority']:.1%} "
           f"(z = {d['z']:.1f}): " + ("an edge" if d["edge"] else "no edge"))


def plot(plt, path, data, m):
    """Left: the whole test period, actual vs predicted next-day return (top) and 5-day
    volatility with the persistence baseline (bottom).  Right: the same for its last 60
    days, zoomed, where single days can be told apart."""
    dates, Y, pred, last_vol = data
    fig = plt.figure(figsize=(13, 7))
    grid = fig.add_gridspec(2, 3)
    r, v = m["next_day_return"], m["volatility_5d"]
    for row, (title, ylabel) in enumerate([
            (f"next-day log return (test); {'edge' if r['edge'] else 'no edge'} vs "
             f"{r['best_baseline']}", "log return"),
            (f"5-day realised volatility (test); {'edge' if v['edge'] else 'no edge'} vs "
             f"{v['best_baseline']}", "volatility")]):
        for cols, days in ((slice(0, 2), slice(None)), (2, slice(-60, None))):
            ax = fig.add_subplot(grid[row, cols])
            ax.plot(dates[days], Y[days, row], color="0.6", lw=0.8, label="actual")
            if row == 1:
                ax.plot(dates[days], last_vol[days], lw=0.8, alpha=0.7,
                        label="persistence (last 5 days)")
            else:
                ax.axhline(0, color="k", lw=0.6)
            ax.plot(dates[days], pred[days, row], lw=1, label="LSTM")
            ax.tick_params(axis="x", labelrotation=30)
            if cols == 2:
                ax.set(title="last 60 test days")
            else:
                ax.set(title=f"{m['data']}: {title}" if row == 0 else title, ylabel=ylabel)
                ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
