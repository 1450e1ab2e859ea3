"""``forecast``: multi-step forecasting of a univariate series, by the forecaster that wins
on a validation period.

Data: the bundled monthly sunspots, or column ``--column`` of ``--csv FILE``.  Windows of
``--window`` values and the ``--horizon`` values after each are made over the whole series and
split chronologically 70/15/15 by window; the last H - 1 validation windows, whose targets
reach into the test period, are left out, so nothing chosen or stopped on sees a test value.

Forecasters (``engine.apps.forecasters``), all fitted on the training windows only:
- baselines: persistence, seasonal naive (period ``--season`` or detected from the training
  values' autocorrelation), a least-squares AR of the window and, when
  given ``--ets`` (statsmodels installed), ``ets``: exponential smoothing (damped
  Holt-Winters, additive season) run through the series from its start;
- candidates: the baselines (so the model can always fall back on the best of them);
  ``ar-diff``, the AR of the changes (each window and its targets minus
  the window's last value, with a drift: it has no training mean to revert to, so a level the
  training period never reached is carried as it is); three LSTMs, each the average of
  ``--seeds`` networks: ``lstm`` sees the standardised values and corrects persistence,
  ``lstm-norm`` sees each window relative to its last value besides and corrects persistence,
  ``lstm+ar`` sees only the relative window and corrects the AR (the AR carries the level, so
  a trend cannot take the network out of the range it was trained on); and ``ensemble``, the
  mean of the three.

Several inputs: ``--columns A,B,C --target A`` forecasts A from windows of all three, and
``--calendar`` adds the calendar of each step (hour of day, day of week, day of year: the
cycles the dates' step can show, ``forecasters.calendar_cycles``) as inputs, known ahead.  The
networks then read those channels too, and ``arx``, the AR on every input's window, joins the
candidates; the baselines stay on the target alone.

The candidate with the lowest mean RMSE over the horizons on the validation windows is the
model, with two exceptions, in this order.  Both measure a lead in standard errors of the
paired differences (Diebold-Mariano's, with the H - 1 lags that overlapping windows share and
Harvey, Leybourne and Newbold's small-sample correction).  A single network that beats the
ensemble there by less than 1.85 gives way to the ensemble: one standard error, plus the 0.85
by which the best of three equally good networks leads by luck (``prefer_ensemble``).  Then
each step up from the baselines must win by one standard error, or the model is the mean of
the two (``partner``): a fitted linear model (``ar-diff``, ``arx``) against the best baseline,
and a network against the linear rival, which is the best fitted linear model when it beat
the best baseline by that much, and the best baseline otherwise (``linear_rival``).  A single
network needs 1.85 there too, for the same luck.
The test windows, which come last, only measure it.  Modes: direct (default: the
networks predict all H values at once) or recursive (a one-step network rolled forward).
"""
import sys
from typing import NamedTuple

import numpy as np

from engine.apps.baselines import (HoltWinters, LinearAR, fit_holt_winters, fit_level_free_ar,
                                   fit_linear_ar, persistence_forecast, rmse_per_horizon)
from engine.apps.common import (COUNT, POSITIVE, SIZE, AppError, Number, Report,
                                add_load_argument, add_missing_arguments, fit_early_stopping,
                                load_saved, parse_options, report_missing, save_model,
                                saved_setting, saved_value, user_data, warn_missing_codes,
                                write_outputs)
from engine.apps.datasets import (Skips, as_days, fill_skipped_steps, load_sunspots,
                                  read_dated_table, skipped_steps, usual_step)
from engine.apps.forecasters import (CALENDAR_CYCLES, MIN_SEASON_ACF, NetForecaster,
                                     Normaliser, build_network, calendar_cycles,
                                     calendar_features, choose, detect_season, ensemble_margin,
                                     linear_rival, mase_scale, merge_networks, mix,
                                     partner, prefer_ensemble, seasonal_naive)
from engine.apps.windows import chronological_split, make_windows, min_split_size

EPOCHS = 60
# The options only training reads (--load names any given: they change nothing).
TRAINING = ("ets", "season", "hidden", "seeds", "lr", "batch_size", "patience", "epoch_windows",
            "seed")
# The network candidates: what each sees (channels of forecasters.Normaliser) and corrects.
NETWORKS = {"lstm": (("level",), "persistence"),
            "lstm-norm": (("change", "level"), "persistence"),
            "lstm+ar": (("change",), "ar")}
ENSEMBLE = "ensemble"  # the mean of the three
# The candidates without a network, simplest first (a tie on validation goes to the first):
# the baselines, then the fitted linear models.
BASELINES = ("persistence", "seasonal", "ar", "ets")
FITTED = ("ar-diff", "arx")
LINEAR = BASELINES + FITTED
SEASON = Number(int, low=0)
# The entries of the metrics' validation_rule that name a candidate (printed as ar24, ...).
RULE_NAMES = ("lowest", "val_baseline", "contender", "rival")


def add_arguments(p):
    p.add_argument("--csv", metavar="FILE", help="a CSV file with a header row (default: "
                   "the bundled monthly sunspots)")
    p.add_argument("--column", metavar="NAME", help="the CSV column holding the series")
    p.add_argument("--columns", metavar="A,B,...", help="several input columns, the target "
                   "among them (with --target): the networks and an ARX read them all")
    p.add_argument("--target", metavar="NAME", help="the column to forecast, one of --columns")
    p.add_argument("--calendar", action="store_true", help="add the calendar of each step "
                   "(hour of day, day of week, day of year: the cycles the dates' step shows) "
                   "as inputs; needs dates")
    p.add_argument("--date-column", metavar="NAME", help="dates for the plots' x axis "
                   "(default: a column named like Date, when its cells read as dates, else "
                   "columns year and month, with day and hour, or year and quarter)")
    p.add_argument("--date-format", metavar="FMT", help="strptime format of the dates, e.g. "
                   "%%d/%%m/%%Y, epoch / epoch-ms for Unix time in seconds / milliseconds, "
                   "or excel for a spreadsheet's day numbers (default: ISO, MM/DD/YYYY, "
                   "DD/MM/YYYY where a day over 12 shows it, or DD.MM.YYYY, with or without a "
                   "time; a year alone)")
    p.add_argument("--window", type=COUNT, default=60, help="input window W (default 60)")
    p.add_argument("--horizon", type=COUNT, default=12, help="forecast horizon H (default 12)")
    p.add_argument("--season", type=SEASON, default=None, help="seasonal period in steps, at "
                   "most the window, for the seasonal naive baseline; 0 for none (default: "
                   "detected from the training values' autocorrelation)")
    p.add_argument("--ets", action="store_true", help="add exponential smoothing (damped "
                   "Holt-Winters, fitted by statsmodels, which must be installed) to the "
                   "baselines and the candidates")
    p.add_argument("--mode", choices=("direct", "recursive"), default="direct")
    p.add_argument("--hidden", type=SIZE, default=64, help="LSTM hidden size (default 64)")
    p.add_argument("--seeds", type=SIZE, default=3, help="networks averaged per candidate, "
                   "each from its own seed (default 3)")
    p.add_argument("--lr", type=POSITIVE, default=3e-3, help="Adam learning rate")
    p.add_argument("--batch-size", type=COUNT, default=32)
    p.add_argument("--patience", type=COUNT, default=10, help="early-stopping patience, epochs")
    p.add_argument("--epoch-windows", type=COUNT, default=None, metavar="N",
                   help="train each epoch on N windows, taken in turn (default: all): a long "
                        "series' run is shorter, its networks see fewer passes")
    add_missing_arguments(p)
    add_load_argument(p)


def input_columns(args):
    """(target, the input columns with the target first, or None) from --column, --columns
    and --target."""
    if args.target and args.column and args.target != args.column:
        raise AppError(f"--column {args.column!r} and --target {args.target!r} disagree: "
                       "give --target alone with --columns")
    target = args.target or args.column
    if args.columns is None:
        return target, None if target is None else [target]
    names = [c.strip() for c in args.columns.split(",")]
    if not all(names):
        raise AppError(f"--columns {args.columns!r}: an empty name between or after its "
                       "commas; list the columns as A,B,C")
    if len(set(names)) != len(names):
        raise AppError(f"--columns must list distinct column names, got {args.columns!r}")
    if target is None:
        raise AppError("--columns needs --target NAME: which of them to forecast")
    if target not in names:
        raise AppError(f"--target {target!r} is not one of --columns {names}")
    return target, [target] + [n for n in names if n != target]


def require_statsmodels():
    """--ets needs statsmodels: an AppError before any data are read when it is missing."""
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        raise AppError("--ets needs statsmodels: pip install statsmodels (or the package's "
                       "[ets] extra)") from None


def min_length(args):
    """(the fewest values the run needs, why): windows enough for the three periods, the
    validation period holding one window whose targets all come before the test period, or
    with --load one window and its horizon to measure the saved model on."""
    span = args.window + args.horizon - 1
    if args.load:
        return span + 1, f"one window of {args.window} and the {args.horizon} values after it"
    n = min_split_size(gap=args.horizon - 1)
    return span + n, (f"{n} windows of {args.window} + {args.horizon} values: training, "
                      "validation and test windows, no validation target in the test period; "
                      "a shorter --window or --horizon needs fewer")


class Series(NamedTuple):
    values: np.ndarray   # (T, C): the target, then the other --columns
    name: str
    dates: np.ndarray    # (T,), or None
    columns: list
    missing: dict        # {column: missing cells that --missing dropped or filled}
    filled: Skips        # the steps the dates skipped that --missing interpolate filled,
                         # or None


def load_series(args):
    """The Series of the CSV's columns, or of the bundled sunspots (monthly from January
    1749).  The dates label the plots' x axis and make the --calendar inputs."""
    target, columns = input_columns(args)
    if args.csv is None:
        if args.columns or target:
            raise AppError("--column, --columns and --target name columns of --csv FILE")
        values = load_sunspots()
        dates = np.datetime64("1749-01") + np.arange(len(values))
        return Series(values[:, None], "sunspots (monthly)", dates, ["sunspots"], {}, None)
    if target is None:
        raise AppError("--csv needs --column NAME (the column holding the series)")
    with user_data():
        needed, why = min_length(args)
        # To the minute, so that hourly rows show their step and the plots their time of day.
        values, dates, missing, undated = read_dated_table(
            args.csv, columns, args.date_column, needed, args.missing, args.date_format, "m",
            why, args.na_values or ())
    if undated:
        print(f"warning: {undated}, and the plots count steps", file=sys.stderr)
    warn_missing_codes(args, values, columns)
    filled = fill_skipped_steps(values, dates) if args.missing == "interpolate" else None
    if filled is None or filled[2].skipped > len(values) * MAX_FILLED:
        warn_skipped_steps(args, dates, too_many=filled is not None)
        filled = None
    else:
        values, dates, filled = filled
    if dates is not None and not args.calendar:
        dates = as_days(dates)  # whole days: the report shows no time of day
    others = f" with {', '.join(columns[1:])}" if len(columns) > 1 else ""
    return Series(values, f"{args.csv}:{target}{others}", dates, columns, missing, filled)


def report_filled(args, skips, report):
    """Report the steps that the dates skipped and --missing interpolate filled; returns
    their count, or None when there were none."""
    if skips is None:
        return None
    report(f"missing dates: {_skipped(skips)}, filled by linear interpolation")
    return skips.skipped


# --missing interpolate fills skipped dates up to this share of the rows the file holds: more
# would be more made-up values than a forecast should rest on, and more likely misread dates.
MAX_FILLED = 0.2


def warn_skipped_steps(args, dates, too_many=False):
    """Print ``warning: ...`` on stderr when the dates skip steps (``skipped_steps``): the
    windows take rows as equal steps, so a season or a horizon would count wrong across a
    skip."""
    skips = skipped_steps(dates)
    if skips is None:
        return
    if too_many:
        fix = (f"more than {MAX_FILLED:.0%} of the {len(dates)} rows, too many for --missing "
               "interpolate to fill (misread dates? --date-format says how to read them)")
    elif args.missing == "interpolate":
        fix = ("they are no whole number of steps, so --missing interpolate cannot put rows in "
               "their place: write the missing dates as rows with an empty cell")
    else:
        fix = "give --missing interpolate to fill them linearly"
    print(f"warning: {args.csv}: {_skipped(skips)}: the forecast takes rows as equal steps; "
          f"{fix}", file=sys.stderr)


def _skipped(skips):
    """Skips in words: 'the dates skip 3 steps in 2 places (the first after ...), where rows
    are usually 1 hour apart'."""
    first = skips.first
    if skips.step % np.timedelta64(1, "D") == np.timedelta64(0, "D"):
        first = first.astype("datetime64[D]")
    return (f"the dates skip {skips.skipped} step{'s' if skips.skipped > 1 else ''} in "
            f"{skips.gaps} place{'s' if skips.gaps > 1 else ''} (the first after {first}), "
            f"where rows are usually {_spacing(skips.step)} apart")


# Calendar spacings by their most common length in days (a month's is 31, as January's).
_CALENDAR_STEPS = {31: "1 month", 92: "1 quarter", 365: "1 year"}


def _spacing(step):
    """A step (timedelta64) in words: "1 month", "7 days", "1 hour", "15 minutes"."""
    minutes = int(step / np.timedelta64(1, "m"))
    if minutes % 1440 == 0 and minutes // 1440 in _CALENDAR_STEPS:
        return _CALENDAR_STEPS[minutes // 1440]
    count, unit = next((minutes // n, name) for n, name in
                       ((1440, "day"), (60, "hour"), (1, "minute")) if minutes % n == 0)
    return f"{count} {unit}{'s' if count > 1 else ''}"


def covariate_windows(values, dates, args, cycles, ahead=None):
    """(N, W, K) windows of the other input columns and the calendar channels of ``cycles``,
    aligned with the target's windows (those with ``ahead`` values after them, default the
    horizon); None when there are none."""
    covariates = values[:, 1:]
    if cycles:
        covariates = np.hstack([covariates, calendar_features(dates, cycles)])
    if covariates.shape[1] == 0:
        return None
    if args.mode == "recursive":
        raise AppError("--mode recursive feeds its forecasts back one step at a time and "
                       "cannot forecast other inputs: use --mode direct with --columns or "
                       "--calendar")
    ahead = args.horizon if ahead is None else ahead
    view = np.lib.stride_tricks.sliding_window_view(covariates[:len(values) - ahead],
                                                    args.window, axis=0)  # (N, K, W)
    return np.ascontiguousarray(view.transpose(0, 2, 1))


def find_cycles(args, dates, train_end, report):
    """The calendar cycles --calendar adds, found on the training period's dates."""
    if not args.calendar:
        return []
    if dates is None:
        raise AppError("--calendar needs dates: name their column with --date-column")
    cycles = calendar_cycles(dates[:train_end])
    if not cycles:
        raise AppError("--calendar: the training period's dates show none of "
                       f"{list(CALENDAR_CYCLES)} (a step of at most a quarter of the cycle, "
                       "two whole cycles covered)")
    report(f"calendar inputs: {', '.join(cycles)}")
    return cycles


def prepare(values, dates, args, report):
    """Windows X (N, W) of the target, targets Y (N, H), covariate windows Z (N, W, K) or
    None, the train/val/test slices of the windows, the values the training windows see
    (inputs and targets; for fitting scales and the season) and the calendar cycles."""
    with user_data("forecast"):
        X, Y = make_windows(values[:, 0], args.window, args.horizon)
        split = chronological_split(len(X), gap=args.horizon - 1)
    train_end = split[0].stop - 1 + args.window + args.horizon
    cycles = find_cycles(args, dates, train_end, report)
    return dict(X=X[:, :, 0], Y=Y, Z=covariate_windows(values, dates, args, cycles),
                split=split, train_values=values[:train_end, 0], cycles=cycles)


def with_covariates(X, Z, n_calendar):
    """The ARX's design (N, W (1 + K_other) + K_calendar): each window beside the windows of
    the other inputs and the calendar of its last step (the rest of the window's calendar
    follows from that one, and would only repeat it)."""
    if Z is None:
        return X
    other = Z[:, :, :Z.shape[2] - n_calendar]
    return np.hstack([X, other.reshape(len(Z), -1), Z[:, -1, other.shape[2]:]])


def find_season(args, train_values, report):
    """--season, checked against the window, or the period detected on the training values
    (None when there is none)."""
    if args.season is not None:
        if args.season > args.window:
            raise AppError(f"--season {args.season} is longer than --window {args.window}: "
                           "the forecasters see one window, so it must hold a whole season")
        if args.season == 1:
            raise AppError("--season 1 is persistence; give a period of at least 2, or 0 for "
                           "none")
        return args.season or None
    period, r = detect_season(train_values, args.window)
    if period:
        report(f"season: {period} steps (autocorrelation {r:.2f} on the training values)")
    else:
        peak = f"highest peak {r:.2f}, below {MIN_SEASON_ACF}" if r else "no peak"
        report(f"season: none found up to the window ({peak}); --season sets one")
    return period


def train_network(kind, d, ar, args, report):
    """The ``kind`` candidate of NETWORKS: ``--seeds`` networks trained on the training
    windows (early stopping on the validation windows), merged into one."""
    X, Y, Z, (train, val, _) = d["X"], d["Y"], d["Z"], d["split"]
    channels, base_kind = NETWORKS[kind]
    k = args.horizon if args.mode == "direct" else 1
    base = NetForecaster(None, None, ar if base_kind == "ar" else None, args.mode)
    residual = Y[:, :k] - base.base(X, k)
    norm = Normaliser.fit(X[train], residual[train], change="change" in channels,
                          train_values=d["train_values"] if "level" in channels else None,
                          Z=None if Z is None else Z[train])
    xs, ys = norm.inputs(X, Z), (residual / norm.output_scale).astype(np.float32)
    models = []
    for i in range(args.seeds):
        report(f"training {kind}, network {i + 1} of {args.seeds}")
        model = build_network(len(norm.columns), args.hidden, k, args.lr, args.backend,
                              args.seed + 1000 * i)
        fit_early_stopping(model, (xs[train], ys[train]), (xs[val], ys[val]), args,
                           args.batch_size, args.patience, report, seed=args.seed + i,
                           steps_per_epoch=epoch_batches(args))
        models.append(model)
    return NetForecaster(merge_networks(models), norm, base.ar, args.mode)


def epoch_batches(args):
    """fit's steps_per_epoch: None (every training window each epoch), or enough batches for
    --epoch-windows windows, which then come in turn from epoch to epoch."""
    if args.epoch_windows is None:
        return None
    return -(-args.epoch_windows // args.batch_size)


def run(args=None, **overrides):
    """Fit every forecaster, choose on the validation windows, measure on the test windows
    and return the metrics dict (see the module doc)."""
    args = parse_options(add_arguments, EPOCHS, args, overrides, TRAINING)
    report = Report(args.quiet)
    if args.load:
        return apply_saved(args, report)
    if args.ets:
        require_statsmodels()
    values, name, dates, columns, missing, filled = load_series(args)
    missing = report_missing(args, missing, report)
    filled = report_filled(args, filled, report)
    series = values[:, 0]
    d = prepare(values, dates, args, report)
    train, val, test = d["split"]
    report(f"forecast: {name}, {len(series)} values, window {args.window}, horizon "
           f"{args.horizon} ({args.mode}); windows train/val/test "
           f"{_count(train)}/{_count(val)}/{_count(test)}" + (
               f" (the {args.horizon - 1} between validation and test left out: their "
               "targets are in the test period)" if args.horizon > 1 else ""))
    season = find_season(args, d["train_values"], report)
    X, Y, Z, H = d["X"], d["Y"], d["Z"], args.horizon
    ar = fit_linear_ar(X[train], Y[train])
    step_ar = ar if args.mode == "direct" else fit_linear_ar(X[train], Y[train, :1])
    nets = {kind: train_network(kind, d, step_ar, args, report) for kind in NETWORKS}
    nets[ENSEMBLE] = mix(list(nets.values()), args.window)
    ar_diff = fit_level_free_ar(X[train], Y[train])
    baselines = {"persistence": persistence_forecast(X, H)}
    if season:
        baselines["seasonal"] = seasonal_naive(X, H, season)
    baselines["ar"] = ar.predict(X)
    ets, why = fit_holt_winters(d["train_values"], season) if args.ets else (None, None)
    if why:
        report(f"--ets: no exponential smoothing: {why}")
    if ets is not None:
        baselines["ets"] = ets.forecast_origins(series, args.window, H)[:len(X)]
    candidates, arx = {**baselines, "ar-diff": ar_diff.predict(X)}, None
    if Z is not None:
        design = with_covariates(X, Z, 2 * len(d["cycles"]))
        arx = fit_linear_ar(design[train], Y[train])
        candidates["arx"] = arx.predict(design)
    candidates.update({k: n.predict(X, H, Z) for k, n in nets.items()})
    lowest, val_rmse = choose(candidates, Y, val)
    contender, lead = prefer_ensemble(lowest, candidates, Y, val, tuple(NETWORKS), ENSEMBLE)
    linear, base, fitted, fitted_lead = linear_rival(val_rmse, candidates, Y, val, BASELINES,
                                                     FITTED)
    rival = None if contender in BASELINES else base if contender in FITTED else linear
    need = ensemble_margin(len(NETWORKS)) if contender in NETWORKS else 1.0
    mate, margin = partner(contender, rival, candidates, Y, val, need) if rival else (None, None)
    parts = [contender] + ([mate] if mate else [])  # the model is their mean
    network = ENSEMBLE if contender in LINEAR else contender  # a linear model needs no weights
    net = nets[network]
    save_model(net.model, args, report, command="forecast", window=args.window, horizon=H,
               mode=args.mode, chosen=contender, partner=mate, network=network,
               normaliser=net.normaliser.state(), season=season, ar=ar_state(ar),
               ar_diff=ar_state(ar_diff), ets=None if ets is None else ets.state(),
               arx=None if arx is None else ar_state(arx), columns=columns,
               calendar=d["cycles"],
               base_ar=ar_state(net.ar) if net.ar is not None else None,
               input="the last `window` values of each of `columns` (the target first) and "
                     "the `calendar` channels; see engine.apps.forecast",
               output="the next `horizon` values of the target")
    d["pred"] = np.mean([candidates[k] for k in parts], axis=0)[test]
    rule = {"lowest": lowest, "ensemble_margin_se": lead, "val_baseline": base,
            "fitted": fitted, "fitted_margin_se": fitted_lead, "contender": contender,
            "rival": rival, "margin_se": margin, "needed_se": need if rival else None}
    metrics = evaluate(d, candidates, baselines, parts, val_rmse, season, args, name, rule)
    if missing:
        metrics["missing_values"] = missing
    if filled:
        metrics["filled_steps"] = filled
    if dates is not None:
        metrics["test_period"] = [str(dates[test.start + args.window]),
                                  str(dates[test.stop - 1 + args.window + H - 1])]
    fits = {"ar": ar, "ar-diff": ar_diff, "arx": arx, "ets": ets, "season": season, **nets}
    future = np.mean([forecast_next(k, values, dates, d, args, fits) for k in parts], axis=0)
    metrics["next_forecast"] = future.tolist()
    print_table(metrics, report)
    report(f"next {H} values after the series ({metrics['chosen']}): "
           + ", ".join(f"{v:.4g}" for v in future))
    return write_outputs(args, "forecast", metrics,
                         lambda plt, path: plot(plt, path, series, dates, d, metrics), report)


def forecast_next(part, values, dates, d, args, fits):
    """The next ``horizon`` values after the series' end by candidate ``part``, from its last
    ``window`` values (and the other inputs' and the calendar's, known that far); ``fits``:
    the fitted linear models, ETS, season and networks by candidate name."""
    series, W, H = values[:, 0], args.window, args.horizon
    X = series[None, -W:]
    every = covariate_windows(values, dates, args, d["cycles"], ahead=0)
    Z = None if every is None else every[-1:]
    if part == "persistence":
        return persistence_forecast(X, H)[0]
    if part == "seasonal":
        return seasonal_naive(X, H, fits["season"])[0]
    if part == "ets":  # a state carried from the series' start: its last origin
        return fits["ets"].forecast_origins(series, W, H)[-1]
    if part == "arx":
        return fits["arx"].predict(with_covariates(X, Z, 2 * len(d["cycles"])))[0]
    if part in ("ar", "ar-diff"):
        return fits[part].predict(X)[0]
    return fits[part].predict(X, H, Z)[0]  # a network candidate or the ensemble


def ar_state(ar):
    return {"coef": ar.coef.tolist(), "intercept": ar.intercept.tolist()}


def ar_from_state(state, window, outputs):
    """The LinearAR ``ar_state`` described, checked against its inputs (``window``) and
    outputs."""
    try:
        coef = np.asarray(state["coef"], dtype=np.float64)
        intercept = np.asarray(state["intercept"], dtype=np.float64)
    except (TypeError, KeyError, ValueError):
        raise ValueError("expected {'coef': W x H numbers, 'intercept': H numbers}") from None
    if coef.shape != (window, outputs) or intercept.shape != (outputs,) or \
            not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ValueError(f"expected finite coef ({window}, {outputs}) and intercept "
                         f"({outputs},), got shapes {coef.shape} and {intercept.shape}")
    return LinearAR(coef=coef, intercept=intercept)


def _mode(value):
    if value not in ("direct", "recursive"):
        raise ValueError(f"expected 'direct' or 'recursive', got {value!r}")
    return value


def _choice(*names):
    def check(value):
        if value not in names:
            raise ValueError(f"expected one of {names}, got {value!r}")
        return value
    return check


def _names(value):
    if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)
            and len(set(value)) == len(value)):
        raise ValueError(f"expected a list of distinct non-empty names, got {value!r}")
    return value


def _cycles(value):
    if not (isinstance(value, list) and all(v in CALENDAR_CYCLES for v in value)):
        raise ValueError(f"expected a list of {list(CALENDAR_CYCLES)}, got {value!r}")
    return value


def _season(value):
    if value is not None:
        SEASON(value)
    return value


def saved_holt_winters(args, model):
    """The HoltWinters a checkpoint that chose ``ets`` keeps, checked against its season."""
    season = saved_value(args, model, "season", _season)
    return saved_value(args, model, "ets", lambda s: HoltWinters.from_state(s, season))


def saved_forecaster(args, model, n_other=0, n_calendar=0, chosen=None):
    """(chosen, forecast function (X (N, W), Z (N, W, K) or None) -> (N, H)) from a
    checkpoint's metadata, for K = ``n_other`` channels of other inputs and ``n_calendar``
    calendar channels after them: the saved choice's, or ``chosen``'s (its partner's)."""
    n_covariates = n_other + n_calendar
    W, H = args.window, args.horizon
    mode = saved_value(args, model, "mode", _mode)
    if chosen is None:
        chosen = saved_value(args, model, "chosen", _choice(*LINEAR, ENSEMBLE, *NETWORKS))
    network = saved_value(args, model, "network", _choice(ENSEMBLE, *NETWORKS))
    ar = saved_value(args, model, "ar", lambda s: ar_from_state(s, W, H))
    if chosen == "ets":
        raise ValueError("ets forecasts from the whole series: saved_holt_winters")
    if chosen == "persistence":
        return chosen, lambda X, Z: persistence_forecast(X, H)
    if chosen == "seasonal":
        season = saved_value(args, model, "season", SEASON)
        if not 0 < season <= W:
            raise AppError(f"{args.load}: metadata: season {season} must be in 1..{W}")
        return chosen, lambda X, Z: seasonal_naive(X, H, season)
    if chosen == "ar":
        return chosen, lambda X, Z: ar.predict(X)
    if chosen == "ar-diff":
        ar_diff = saved_value(args, model, "ar_diff", lambda s: ar_from_state(s, W, H))
        return chosen, lambda X, Z: ar_diff.predict(X)
    if chosen == "arx":
        arx = saved_value(args, model, "arx",
                          lambda s: ar_from_state(s, W * (1 + n_other) + n_calendar, H))
        return chosen, lambda X, Z: arx.predict(with_covariates(X, Z, n_calendar))
    if network != chosen:
        raise AppError(f"{args.load}: metadata: the weights are those of {network!r}, but "
                       f"{chosen!r} was chosen")
    k = H if mode == "direct" else 1
    base_ar = saved_value(args, model, "base_ar",
                          lambda s: None if s is None else ar_from_state(s, W, k))
    norm = saved_value(args, model, "normaliser", Normaliser.from_state)
    if (0 if norm.covariates is None else len(norm.covariates[0])) != n_covariates:
        raise AppError(f"{args.load}: metadata: the normaliser's covariates do not match "
                       f"{n_covariates} covariate channel(s) of its columns and calendar")
    net = NetForecaster(model, norm, base_ar, mode)
    return chosen, lambda X, Z: net.predict(X, H, Z)


def apply_saved(args, report):
    """--load: the saved model on the series (--csv or the bundled one), with the window,
    horizon, mode, input columns, calendar and preprocessing saved with it: RMSE per horizon
    over every window of the series beside persistence, and the forecast of the next
    ``horizon`` values after its end."""
    model = load_saved(args, "forecast")
    for key, check in (("window", COUNT), ("horizon", COUNT), ("mode", _mode)):
        setattr(args, key, saved_setting(args, model, key, check, add_arguments))
    # Checkpoints from before --columns and --calendar read one column and no calendar.
    columns = saved_value(args, model, "columns", _names) if "columns" in model.metadata \
        else [args.column or "series"]
    cycles = saved_value(args, model, "calendar", _cycles) if "calendar" in model.metadata \
        else []
    saved_inputs(args, columns, cycles)
    values, name, dates, _, missing, filled = load_series(args)
    report_missing(args, missing, report)
    report_filled(args, filled, report)
    if cycles and dates is None:
        raise AppError("the model reads the calendar: the data need dates (--date-column)")
    series = values[:, 0]
    with user_data("forecast"):
        X, Y = make_windows(series, args.window, args.horizon)
    X = X[:, :, 0]
    parts = saved_parts(args, model)
    every = covariate_windows(values, dates, args, cycles, ahead=0)  # the last included
    Z, last = (None, None) if every is None else (every[:len(X)], every[-1:])
    fitted, future = 0.0, 0.0
    for part in parts:  # the model is their mean
        if part == "ets":  # a state carried from the series' start, not a function of a window
            origins = saved_holt_winters(args, model).forecast_origins(series, args.window,
                                                                       args.horizon)
            got, ahead = origins[:len(X)], origins[-1]
        else:
            _, predict = saved_forecaster(args, model, len(columns) - 1, 2 * len(cycles), part)
            got, ahead = predict(X, Z), predict(series[None, -args.window:], last)[0]
        fitted, future = fitted + got / len(parts), future + ahead / len(parts)
    chosen = " + ".join(parts)
    rmse = {"model": rmse_per_horizon(fitted, Y),
            "persistence": rmse_per_horizon(persistence_forecast(X, args.horizon), Y)}
    metrics = {"command": "forecast", "model": args.load, "chosen": chosen, "data": name,
               "window": args.window, "horizon": args.horizon, "n_windows": int(len(X)),
               "rmse_per_horizon": {k: v.tolist() for k, v in rmse.items()},
               "rmse_mean": {k: float(v.mean()) for k, v in rmse.items()},
               "next_forecast": future.tolist()}
    report(f"forecast: {args.load} ({chosen}) on {name}: {len(X)} windows of {args.window}, "
           f"horizon {args.horizon}; RMSE mean over horizons: model "
           f"{metrics['rmse_mean']['model']:.4g}, persistence "
           f"{metrics['rmse_mean']['persistence']:.4g}")
    report(f"next {args.horizon} values after the series: "
           + ", ".join(f"{v:.4g}" for v in future))
    return write_outputs(args, "forecast", metrics,
                         lambda plt, path: plot_next(plt, path, series, future, metrics), report)


def saved_parts(args, model):
    """[chosen] or [chosen, partner]: the forecasters a checkpoint's model is the mean of, as
    ``run`` pairs them (a baseline stands alone, a fitted linear model's partner is a
    baseline, a network's any linear candidate).  Checkpoints from before partners have
    none."""
    chosen = saved_value(args, model, "chosen", _choice(*LINEAR, ENSEMBLE, *NETWORKS))
    mate = saved_value(args, model, "partner", _partner) if "partner" in model.metadata \
        else None
    if mate is not None and (chosen in BASELINES or chosen in FITTED and mate in FITTED):
        allowed = "a baseline" if chosen in FITTED else "nothing"
        raise AppError(f"{args.load}: metadata: {chosen!r} is averaged with {allowed}, not "
                       f"with a partner {mate!r}")
    return [chosen] + ([mate] if mate else [])


def _partner(value):
    if value is not None and value not in LINEAR:
        raise ValueError(f"expected null or one of {LINEAR}, got {value!r}")
    return value


def saved_inputs(args, columns, cycles):
    """Set --columns/--target and --calendar to the inputs a saved model reads: its column
    names when it reads several (a one-column model reads --column, whatever its name), and
    its calendar.  Inputs given that the model does not read are an AppError."""
    if len(columns) > 1:  # the same inputs, by name
        if args.csv is None:
            raise AppError(f"{args.load} reads the columns {columns}: give --csv FILE with "
                           "them")
        given = input_columns(args)[1]
        if args.columns is not None and given != columns:
            raise AppError(f"--columns {args.columns} --target {given[0]}: {args.load} reads "
                           f"{columns[1:]} to forecast {columns[0]!r}; leave --columns and "
                           "--target out with --load")
        if args.columns is None and given is not None and given != columns[:1]:
            raise AppError(f"--column {given[0]!r}: {args.load} forecasts {columns[0]!r} from "
                           f"the columns {columns}, by name; leave --column out with --load")
        args.columns, args.target, args.column = ",".join(columns), columns[0], None
    elif args.columns is not None:
        raise AppError(f"--columns {args.columns}: {args.load} reads one column; give "
                       "--column NAME")
    if args.calendar and not cycles:
        raise AppError(f"--calendar: {args.load} reads no calendar; leave --calendar out")
    args.calendar = bool(cycles)


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


def evaluate(d, candidates, baselines, parts, val_rmse, season, args, name, rule):
    """Test RMSE per horizon and MASE for the model (d["pred"], the mean of the candidates
    ``parts``), each baseline and each candidate; which of the model and the baselines won
    each horizon; and ``rule`` ({key: value}, ``run``'s): the lowest on validation, its margin
    over the ensemble (``prefer_ensemble``), the best baseline and the best fitted linear
    candidate's margin over it (``linear_rival``), the contender, its rival, its margin over
    that and the margin it needed (``partner``)."""
    test, Y = d["split"][2], d["Y"][d["split"][2]]
    W = args.window
    rename = {"ar": f"ar{W}", "seasonal": f"seasonal{season}"}
    rows = {"model": d["pred"],
            **{rename.get(k, k): v[test] for k, v in baselines.items()},
            **{k: v[test] for k, v in candidates.items() if k not in baselines}}
    rmse = {k: rmse_per_horizon(v, Y) for k, v in rows.items()}
    scale = mase_scale(d["train_values"], season)
    mase = {k: float(np.mean(np.abs(v - Y)) / scale) for k, v in rows.items()}
    contest = ["model"] + [rename.get(k, k) for k in baselines]
    best = min(contest[1:], key=lambda k: rmse[k].mean())
    winners = [contest[int(np.argmin([rmse[k][h] for k in contest]))]
               for h in range(args.horizon)]
    return {
        "command": "forecast", "data": name, "window": W, "horizon": args.horizon,
        "mode": args.mode, "season": season, "seeds": args.seeds,
        "chosen": " + ".join(rename.get(k, k) for k in parts),
        "validation_rule": {**{k: rename.get(v, v) if k in RULE_NAMES else v
                               for k, v in rule.items()},
                            "partner": None if len(parts) < 2 else
                            rename.get(parts[1], parts[1])},
        "val_rmse_mean": {rename.get(k, k): v for k, v in val_rmse.items()},
        "n_train": _count(d["split"][0]), "n_val": _count(d["split"][1]),
        "n_test": int(len(Y)), "baselines": contest[1:],
        "test_rmse_per_horizon": {k: v.tolist() for k, v in rmse.items()},
        "test_rmse_mean": {k: float(v.mean()) for k, v in rmse.items()},
        "test_mase": mase, "mase_scale": scale,
        "best_baseline": best,
        "model_vs_best_baseline": error_ratio(rmse["model"].mean(), rmse[best].mean()),
        "winner_per_horizon": winners,
    }


def _count(part):
    return part.stop - part.start


def error_ratio(model, baseline):
    """model / baseline error: 1 when both are 0 (a constant series, forecast exactly by
    both), inf when only the baseline's is."""
    if baseline == 0:
        return 1.0 if model == 0 else float("inf")
    return float(model / baseline)


def print_table(m, report):
    """The validation choice, then test RMSE per horizon of the model and the baselines with
    the winner of each horizon, and the means and MASE of every forecaster."""
    val = m["val_rmse_mean"]
    report("validation mean RMSE: " + ", ".join(f"{k} {v:.4g}" for k, v in val.items())
           + f" -> model: {m['chosen']}")
    rule = m["validation_rule"]
    if rule["ensemble_margin_se"] is not None:
        beat = _lead(rule["lowest"], f"the {ENSEMBLE}", rule["ensemble_margin_se"]) + \
            " standard errors of the paired differences on the validation windows, where the " \
            f"best of {len(NETWORKS)} networks needs {ensemble_margin(len(NETWORKS)):.2f}"
        report(f"  ({beat}: " + ("kept" if rule["contender"] == rule["lowest"] else
                                 f"short of that, so the {ENSEMBLE} takes its place") + ")")
    if rule["fitted"] is not None and rule["contender"] in (ENSEMBLE, *NETWORKS):
        beat = _lead(rule["fitted"], rule["val_baseline"], rule["fitted_margin_se"]) + \
            " standard errors on the validation windows"
        report(f"  ({beat}: " + (f"so {rule['fitted']} is the linear rival"
                                 if rule["fitted_margin_se"] <= -1 else
                                 f"short of a lead of 1, so {rule['val_baseline']} is the "
                                 "linear rival") + ")")
    if rule["rival"] is not None:
        beat = _lead(rule["contender"], rule["rival"], rule["margin_se"]) + \
            " standard errors on the validation windows"
        need = rule.get("needed_se") or 1.0
        report(f"  ({beat}: " + ("kept alone" if rule["partner"] is None else
                                 f"short of a lead of {need:.3g}, so the model is the mean of "
                                 "the two") + ")")
    names = ["model"] + m["baselines"]
    report(f"test RMSE per horizon (data units), model = {m['chosen']}:")
    report("   h " + "".join(f"{n:>13s}" for n in names) + "  winner")
    for h in range(m["horizon"]):
        report(f"{h + 1:4d} " + "".join(f"{m['test_rmse_per_horizon'][n][h]:13.4g}"
                                        for n in names) + f"  {m['winner_per_horizon'][h]}")
    report("mean " + "".join(f"{m['test_rmse_mean'][n]:13.4g}" for n in names))
    report("MASE " + "".join(f"{m['test_mase'][n]:13.3f}" for n in names))
    others = [k for k in m["test_rmse_mean"] if k not in names]
    report("other candidates, test mean RMSE: " + ", ".join(
        f"{k} {m['test_rmse_mean'][k]:.4g}" for k in others))
    report(f"model / best baseline ({m['best_baseline']}): {m['model_vs_best_baseline']:.3f} "
           "in mean RMSE")


def _lead(a, b, margin):
    """'a beats b by X' for a margin below 0 (a does better), 'a trails b by X' otherwise."""
    return f"{a} {'beats' if margin < 0 else 'trails'} {b} by {abs(margin):.2f}"


def plot(plt, path, series, dates, d, m):
    """Top left: the whole test period with the model's 1-step and H-step forecasts.  Top
    right: its last stretch, zoomed, with the last full H-step forecast.  Bottom: test RMSE per
    horizon of the model, the baselines and the other candidates.  The x axis shows dates when
    the data have them."""
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
    whole.plot(x[t0:t0 + n], d["pred"][:, 0], lw=1, label=f"{m['chosen']}, 1 step ahead")
    whole.plot(x[t0 + H - 1:t0 + H - 1 + n], d["pred"][:, -1], lw=1,
               label=f"{m['chosen']}, {H} steps ahead")
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
              label=f"last {H}-step test forecast")
    ahead = x[-1] + np.arange(1, H + 1) * usual_step(x)
    zoom.plot(np.r_[x[-1:], ahead], np.r_[series[-1:], m["next_forecast"]], "r.--", lw=1.5,
              label=f"next {H} values")
    zoom.set(title=f"last {span} steps and the next {H}",
             xlabel="date" if dates is not None else "step")
    zoom.legend(fontsize=8)
    h = np.arange(1, H + 1)
    for name, r in m["test_rmse_per_horizon"].items():
        if name == m["chosen"]:
            continue  # drawn as the model
        style = (dict(color="k", lw=2.5) if name == "model" else
                 dict(lw=1.2) if name in m["baselines"] else dict(lw=0.8, ls="--"))
        label = f"model: {m['chosen']}" if name == "model" else name
        b.plot(h, r, marker="o", ms=3, label=f"{label} (mean {np.mean(r):.2f})", **style)
    b.set(title="test RMSE per horizon: the model, the baselines (solid) and the other "
                "candidates (dashed)", xlabel="horizon", ylabel="RMSE")
    b.legend(fontsize=8)
    if dates is not None:
        from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

        for ax in (whole, zoom):  # each tick as short as its neighbours allow
            locator = AutoDateLocator()
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
