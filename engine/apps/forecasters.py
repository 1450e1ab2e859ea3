"""The forecasters of ``forecast`` and the honest choice between them.

Every forecaster maps windows X (N, W) of a series to forecasts (N, H) in data units.  All are
fitted on the training windows only; one is chosen by its mean RMSE over the horizons on the
validation windows, which come after the training windows and before the test windows, so the
test period plays no part in fitting or choosing.

- ``persistence``: the last value of the window, repeated (a baseline).
- ``seasonal_naive``: the value whole seasons earlier (a baseline; period from ``--season`` or
  ``detect_season`` on the training values, at most the window).
- the AR (``baselines.fit_linear_ar``): least-squares autoregression of the window, one output
  per horizon; a baseline and a candidate.
- the AR of the changes (``baselines.fit_level_free_ar``): the same on each window and its
  targets minus the window's last value, with a drift; a candidate.  It has no mean to revert
  to, so a series that leaves its training range is forecast from where it is.
- ``NetForecaster``: base(X) + an LSTM that learns the residual of the base, persistence or
  the AR (LSTNet's autoregressive component, Lai et al. 2018).  Its inputs (``Normaliser``)
  are each window minus its last value (per-window normalisation as in RevIN, Kim et al.
  2022: a trending series never leaves the range the network saw) and/or the standardised
  values.  Seed ensembles and mixes of such forecasters are one NetForecaster again
  (``merge_networks``, ``mix``).

Other inputs (``forecast --columns``, ``--calendar``) come as covariate windows Z (N, W, K)
beside X: the networks read them standardised as more channels, and an ARX (the AR on the
window and the covariate windows together) joins the candidates.  ``calendar_features`` makes
the calendar channels (hour of day, day of week, day of year) from the dates.
"""
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

import engine
from engine.apps.baselines import LinearAR, persistence_forecast, rmse_per_horizon

MIN_SEASON_ACF = 0.3  # an autocorrelation peak below this is not called a season


# --------------------------------------------------------------------------------------------
# Season
# --------------------------------------------------------------------------------------------

def autocorrelation(values, max_lag):
    """Sample autocorrelation r[0..max_lag] of ``values`` after removing a least-squares line
    (a trend would otherwise make every lag look correlated)."""
    x = np.asarray(values, dtype=np.float64)
    t = np.arange(len(x))
    x = x - np.polyval(np.polyfit(t, x, 1), t)
    spectrum = np.fft.rfft(x, 2 * len(x))
    acov = np.fft.irfft(spectrum * np.conj(spectrum))[:max_lag + 1]
    return acov / acov[0] if acov[0] > 0 else np.zeros(max_lag + 1)


def detect_season(values, max_lag):
    """(period, r): the lag >= 2 of the highest local maximum of the autocorrelation up to
    ``max_lag``, and its value; (None, r) when no peak reaches MIN_SEASON_ACF."""
    max_lag = min(int(max_lag), len(values) // 2 - 1)
    if max_lag < 2:
        return None, 0.0
    r = autocorrelation(values, max_lag + 1)  # one lag more, to see a peak at max_lag
    k = np.arange(2, max_lag + 1)
    peaks = k[(r[k] > r[k - 1]) & (r[k] >= r[k + 1])]
    if peaks.size == 0:
        return None, 0.0
    best = int(peaks[np.argmax(r[peaks])])
    return (best if r[best] >= MIN_SEASON_ACF else None), float(r[best])


def seasonal_naive(X, horizon, period):
    """(N, H) forecasts from windows X (N, W), period <= W: each target gets the value whole
    seasons before it, the fewest that reach back into the window."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if not 1 <= period <= X.shape[1]:
        raise ValueError(f"period must lie in [1, window {X.shape[1]}], got {period}")
    h = np.arange(horizon)
    back = period * ((h + period) // period)  # seasons back, in steps: >= h + 1
    return X[:, X.shape[1] + h - back]


# --------------------------------------------------------------------------------------------
# The network candidates
# --------------------------------------------------------------------------------------------

@dataclass
class Normaliser:
    """Network inputs and targets from windows, with scales fitted on the training windows.

    Two input channels, either or both: "change", each window minus its last value over
    ``input_scale`` (level-free, so a trending series stays in the range the network was
    trained on), when ``input_scale`` is set; "level", the values standardised by the
    training mean and std, which a network without an AR beside it needs to learn mean
    reversion, when ``level`` is set.  Target: the residual of the base forecast over
    ``output_scale``.
    """
    input_scale: float  # or None: no change channel
    output_scale: float
    level: tuple = None  # (mean, std) of the training values, or None: no level channel
    covariates: tuple = None  # ((K means), (K stds)) of the covariate channels, or None

    @classmethod
    def fit(cls, X, residual, change=True, train_values=None, Z=None):
        """Scales from the training windows X (N, W), their residuals and, when given, the
        training values (level channel) and covariate windows Z (N, W, K)."""
        level = covariates = None
        if train_values is not None:
            level = (float(np.mean(train_values)), _positive_std(train_values))
        if Z is not None:
            flat = Z.reshape(-1, Z.shape[-1])
            covariates = (tuple(float(v) for v in flat.mean(axis=0)),
                          tuple(_positive_std(flat[:, k]) for k in range(flat.shape[1])))
        return cls(_positive_std(X - X[:, -1:]) if change else None, _positive_std(residual),
                   level, covariates)

    @property
    def columns(self):
        """Where this normaliser's channels sit in the full layout (change, level, then the
        covariates)."""
        k = 0 if self.covariates is None else len(self.covariates[0])
        return [0] * (self.input_scale is not None) + [1] * (self.level is not None) + \
            list(range(2, 2 + k))

    def inputs(self, X, Z=None):
        """(N, W) windows and (N, W, K) covariate windows -> float32 (N, W, len(columns))."""
        parts = []
        if self.input_scale is not None:
            parts.append((X - X[:, -1:]) / self.input_scale)
        if self.level is not None:
            parts.append((X - self.level[0]) / self.level[1])
        parts = [p[..., None] for p in parts]
        if self.covariates is not None:
            k = len(self.covariates[0])
            if Z is None or Z.shape != (*X.shape, k):
                raise ValueError(f"Z must be the covariate windows, shape {(*X.shape, k)}, got "
                                 f"{None if Z is None else Z.shape}")
            parts.append((Z - np.asarray(self.covariates[0])) / np.asarray(self.covariates[1]))
        return np.concatenate(parts, axis=-1).astype(np.float32)

    def state(self):
        return {"input_scale": self.input_scale, "output_scale": self.output_scale,
                "level": None if self.level is None else list(self.level),
                "covariates": None if self.covariates is None else
                [list(self.covariates[0]), list(self.covariates[1])]}

    @classmethod
    def from_state(cls, state):
        """The normaliser ``state()`` described; ValueError for anything else (a saved
        model's metadata is untrusted input)."""
        try:
            scale_in = state["input_scale"]
            scale_in = None if scale_in is None else float(scale_in)
            scale_out = float(state["output_scale"])
            level = state["level"]
            level = None if level is None else tuple(float(v) for v in level)
            cov = state.get("covariates")
            cov = None if cov is None else tuple(tuple(float(v) for v in part) for part in cov)
        except (TypeError, KeyError, ValueError, AttributeError):
            raise ValueError("expected {'input_scale': null or number, 'output_scale': number, "
                             "'level': null or [mean, std], 'covariates': null or [[means], "
                             f"[stds]]}}, got {str(state)[:80]}") from None
        if level is not None and len(level) != 2:
            raise ValueError(f"level must be [mean, std], got {list(level)}")
        if cov is not None and (len(cov) != 2 or len(cov[0]) != len(cov[1]) or not cov[0]):
            raise ValueError("covariates must be [[K means], [K stds]], K >= 1")
        if scale_in is None and level is None:
            raise ValueError("no input channel: input_scale and level are both null")
        scales = [v for v in (scale_in, scale_out, level and level[1]) if v is not None]
        scales += list(cov[1]) if cov else []
        numbers = scales + ([level[0]] if level else []) + (list(cov[0]) if cov else [])
        if not (all(np.isfinite(v) for v in numbers) and all(v > 0 for v in scales)):
            raise ValueError(f"scales must be finite and > 0, got {numbers}")
        return cls(scale_in, scale_out, level, cov)


def _positive_std(x):
    s = float(np.std(x))
    return s if np.isfinite(s) and s > 0 else 1.0


class NetForecaster:
    """base(X) + output_scale * network(inputs(X)), where the base is persistence (``ar`` None)
    or a fitted LinearAR.  Direct mode predicts all H values at once; recursive mode predicts
    one and feeds it back H times."""

    def __init__(self, model, normaliser, ar, mode):
        self.model, self.normaliser, self.ar, self.mode = model, normaliser, ar, mode

    def base(self, X, k):
        if self.ar is None:
            return persistence_forecast(X, k)
        return self.ar.predict(X)[:, :k]

    def step(self, X, Z=None):
        """The next k values (k = H direct, 1 recursive) for windows X (N, W) and covariate
        windows Z (N, W, K) when the normaliser has covariates."""
        out = np.asarray(self.model.predict(self.normaliser.inputs(X, Z)), dtype=np.float64)
        return self.base(X, out.shape[1]) + self.normaliser.output_scale * out

    def predict(self, X, horizon, Z=None):
        """(N, W[, 1]) windows [and (N, W, K) covariate windows] -> (N, horizon) forecasts
        in data units."""
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        if self.mode == "direct":
            return self.step(X, Z)
        if Z is not None:
            raise ValueError("recursive mode feeds its forecasts back, and cannot forecast "
                             "covariates: use direct mode with covariates")
        out = np.empty((len(X), horizon))
        for h in range(horizon):
            out[:, h] = self.step(X)[:, 0]
            X = np.concatenate([X[:, 1:], out[:, h:h + 1]], axis=1)
        return out


def build_network(inputs, hidden, outputs, lr, backend, seed):
    """LSTM(inputs, hidden) -> Dense(hidden, outputs), many-to-one, compiled with Adam on MSE."""
    lstm = engine.LSTM(inputs, hidden, batch_first=True, backend=backend, seed=seed)
    dense = engine.Dense(hidden, outputs, backend=backend, seed=seed + 1)
    model = engine.Sequential([lstm, dense], output="many_to_one")
    return model.compile("mse", engine.Adam(lr=lr), clip_norm=1.0)


def merge_networks(models, weights=None, columns=None, lr=1e-3):
    """One network whose output is ``sum_j weights[j] * models[j](x[..., columns[j]])``
    (default: the mean, every member reading the leading channels), exactly: the members'
    LSTMs side by side in one LSTM as wide as all of them, with block-diagonal recurrent
    weights and each member's input weights on its own columns, and one Dense weighting their
    outputs.  The members are LSTM -> Dense pairs with equal hidden and output sizes.  A seed
    ensemble, or a mix of candidates, is then one checkpoint and one forward."""
    k = len(models)
    weights = np.full(k, 1 / k) if weights is None else weights
    if columns is None:
        columns = [list(range(m.layers[0].input_size)) for m in models]
    lstm, dense = models[0].layers
    h, n_in = lstm.hidden_size, max(max(c) for c in columns) + 1
    wide = build_network(n_in, k * h, dense.out_features, lr, lstm.backend, 0)
    w_ih, w_hh = np.zeros((4 * k * h, n_in)), np.zeros((4 * k * h, k * h))
    b_ih, b_hh = np.zeros(4 * k * h), np.zeros(4 * k * h)
    states = [m.state_dict() for m in models]
    for j, s in enumerate(states):
        for g in range(4):  # gate blocks i, f, g, o: member j's units go to slot j of each
            rows, src = slice((g * k + j) * h, (g * k + j + 1) * h), slice(g * h, (g + 1) * h)
            w_ih[rows.start:rows.stop, columns[j]] = s["0.weight_ih_l0"][src]
            w_hh[rows, j * h:(j + 1) * h] = s["0.weight_hh_l0"][src]
            b_ih[rows], b_hh[rows] = s["0.bias_ih_l0"][src], s["0.bias_hh_l0"][src]
    wide.load_state_dict({
        "0.weight_ih_l0": w_ih, "0.weight_hh_l0": w_hh, "0.bias_ih_l0": b_ih,
        "0.bias_hh_l0": b_hh,
        "1.weight": np.concatenate([w * s["1.weight"] for w, s in zip(weights, states)], 1),
        "1.bias": np.sum([w * s["1.bias"] for w, s in zip(weights, states)], axis=0)})
    return wide


def mix(forecasters, window):
    """The mean of NetForecasters of one mode and input scale as one NetForecaster: the
    bases averaged into one linear AR (persistence is an AR too), the networks merged with
    their output scales folded into the weights.  In recursive mode it is the mean one-step
    forecast that is rolled forward."""
    n = len(forecasters)
    coefs, intercepts = [], []
    k = forecasters[0].model.layers[1].out_features
    for f in forecasters:
        if f.ar is None:
            coef = np.zeros((window, k))
            coef[-1] = 1.0
            coefs.append(coef)
            intercepts.append(np.zeros(k))
        else:
            coefs.append(f.ar.coef)
            intercepts.append(f.ar.intercept)
    ar = LinearAR(coef=np.mean(coefs, axis=0), intercept=np.mean(intercepts, axis=0))
    norms = [f.normaliser for f in forecasters]
    scales = {x.input_scale for x in norms if x.input_scale is not None}
    levels = {x.level for x in norms if x.level is not None}
    covariates = {x.covariates for x in norms if x.covariates is not None}
    if len(scales) > 1 or len(levels) > 1 or len(covariates) > 1:
        raise ValueError("mix: the members' input channels are scaled differently")
    columns = [x.columns for x in norms]
    used = sorted(set().union(*columns))  # drop a channel no member reads
    # The output scales go into the float32 weights relative to a power of two near the
    # largest: data in units of 1e99 or 1e-300 would overflow or vanish there, and a power of
    # two scales every weight and sum exactly, so the forecasts are the same bits.
    unit = math.ldexp(1.0, math.frexp(max(x.output_scale for x in norms))[1])
    norm = Normaliser(scales.pop() if 0 in used else None, unit,
                      levels.pop() if 1 in used else None,
                      covariates.pop() if covariates else None)
    model = merge_networks([f.model for f in forecasters],
                           [x.output_scale / unit / n for x in norms],
                           [[used.index(c) for c in cols] for cols in columns])
    return NetForecaster(model, norm, ar, forecasters[0].mode)


# --------------------------------------------------------------------------------------------
# Calendar
# --------------------------------------------------------------------------------------------

# The calendar cycles, by their length in minutes.
CALENDAR_CYCLES = {"hour of day": 24 * 60, "day of week": 7 * 24 * 60,
                   "day of year": 365.2425 * 24 * 60}


def calendar_cycles(dates):
    """The cycles of CALENDAR_CYCLES that ``dates`` (datetime64, in order; the training
    period's) can show: a step of at most a quarter of the cycle, and at least two whole
    cycles covered.  A monthly series gets the day of year, an hourly one all three."""
    minutes = np.asarray(dates, dtype="datetime64[m]").astype(np.int64)
    if len(minutes) < 3:
        return []
    step = float(np.median(np.diff(minutes)))
    span = float(minutes[-1] - minutes[0])
    return [name for name, cycle in CALENDAR_CYCLES.items()
            if 0 < step <= cycle / 4 and span >= 2 * cycle]


def calendar_features(dates, cycles):
    """(T, 2 len(cycles)) float64: the sine and cosine of each cycle's phase at each date.
    Known ahead, so they are inputs that never need forecasting."""
    minutes = np.asarray(dates, dtype="datetime64[m]")
    phases = []
    for name in cycles:
        if name == "hour of day":
            phase = minutes.astype(np.int64) % (24 * 60) / (24 * 60)
        elif name == "day of week":  # day 0 (1970-01-01) was a Thursday: Monday is phase 0
            phase = (minutes.astype("datetime64[D]").astype(np.int64) + 3) % 7 / 7
        elif name == "day of year":
            year = minutes.astype("datetime64[Y]")
            phase = (minutes - year).astype(np.int64) / CALENDAR_CYCLES[name]
        else:
            raise ValueError(f"unknown calendar cycle {name!r}; known: {list(CALENDAR_CYCLES)}")
        phases += [np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase)]
    return np.stack(phases, axis=1) if phases else np.zeros((len(minutes), 0))


# --------------------------------------------------------------------------------------------
# Choice
# --------------------------------------------------------------------------------------------

def choose(forecasts, Y, val):
    """(name, val RMSE means): the forecaster with the lowest mean RMSE over the horizons on
    the validation windows ``val`` (a slice); ties go to the one listed first."""
    errors = {k: float(rmse_per_horizon(f[val], Y[val]).mean()) for k, f in forecasts.items()}
    finite = {k: v for k, v in errors.items() if np.isfinite(v)}
    return min(finite, key=finite.get), errors


def margin_in_standard_errors(a, b, Y):
    """How many standard errors forecasts ``a`` beat ``b`` by on targets Y (N, H): the mean of
    the per-window differences of squared errors (mean over the horizons), over its standard
    error; negative when ``a`` does better.

    This is the Diebold-Mariano statistic (Diebold and Mariano 1995): windows one step apart
    share H - 1 targets, so their differences are correlated, and the standard error is
    Newey and West's over H - 1 lags (Bartlett weights, never negative), not the i.i.d. one,
    which would be too small and call a tie a win.  With few windows that standard error is
    still too small, so the statistic is scaled by Harvey, Leybourne and Newbold's (1997)
    small-sample correction, sqrt((N + 1 - 2H + H (H - 1) / N) / N) = sqrt((N - H)(N - H + 1))
    / N (0.50 for 9 windows of 5 steps, 0.97 for 447 of 12).  N <= H windows cannot tell the
    two apart: 0."""
    d = np.mean((a - Y) ** 2, axis=1) - np.mean((b - Y) ** 2, axis=1)
    n, h = Y.shape
    if n <= h:
        return 0.0
    largest = float(np.abs(d).max())
    if largest > 0:  # by a power of two: the same statistic, and no overflow in its square
        d = d / math.ldexp(1.0, math.frexp(largest)[1])
    e = d - d.mean()
    var = e @ e / n + 2 * sum((1 - k / h) * (e[k:] @ e[:-k]) / n for k in range(1, h))
    se = float(np.sqrt(max(var, 0.0) / n))
    if se == 0:
        return 0.0 if d.mean() == 0 else float(np.copysign(np.inf, d.mean()))
    return float(d.mean() / se * np.sqrt((n - h) * (n - h + 1)) / n)


def expected_best_of(m):
    """E[max of m independent standard normals]: by how many standard errors the best of m
    equally good forecasters beats them on the same windows by luck alone (0, 0.56, 0.85, 1.03
    for m = 1..4)."""
    x, dx = np.linspace(-12.0, 12.0, 48001, retstep=True)
    density = np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
    return float(np.sum(x * m * density * ndtr(x) ** (m - 1)) * dx)


def prefer_ensemble(name, forecasts, Y, val, singles, ensemble):
    """(chosen, margin): the validation's choice ``name``, or ``ensemble`` (the mean of the
    ``singles``) when ``name`` is one of the single networks and beats the ensemble by less
    than ``ensemble_margin(len(singles))`` standard errors of the paired differences.

    The best of m networks on the validation windows is the one luck favoured most there (the
    winner's curse: by ``expected_best_of(m)`` standard errors when all are equally good), a
    lead the test period does not repeat; the ensemble was picked from nothing.  So a single
    network must win by that much plus the one standard error of ``partner``'s rule.
    ``margin`` is ``margin_in_standard_errors(name, ensemble)``; None when the rule does not
    apply (``name`` not a single network, or no ensemble)."""
    if name not in singles or ensemble not in forecasts:
        return name, None
    margin = margin_in_standard_errors(forecasts[name][val], forecasts[ensemble][val], Y[val])
    return (name if margin <= -ensemble_margin(len(singles)) else ensemble), margin


def ensemble_margin(m):
    """The lead, in standard errors, that the best of m single networks needs over their
    ensemble: the winner's curse ``expected_best_of(m)`` plus one."""
    return 1.0 + expected_best_of(m)


def linear_rival(errors, forecasts, Y, val, baselines, fitted):
    """(rival, base, best, margin): ``base`` is the best of the ``baselines`` by their validation
    mean RMSE ``errors`` (``choose``'s); the rival is the best of the ``fitted`` linear
    candidates (the AR of the changes, the ARX) when it beats ``base`` by at least one standard
    error of the paired differences, and ``base`` otherwise: a fitted model that merely ties
    with a baseline on the validation windows is no surer a yardstick than the baseline.
    ``best`` is the best fitted candidate and ``margin`` its
    ``margin_in_standard_errors`` over ``base``; both None without a fitted candidate."""
    base = _lowest(errors, baselines)
    best = _lowest(errors, fitted)
    if best is None:
        return base, base, None, None
    margin = margin_in_standard_errors(forecasts[best][val], forecasts[base][val], Y[val])
    return (best if margin <= -1 else base), base, best, margin


def _lowest(errors, names):
    """The one of ``names`` with the lowest finite error; None when there is none."""
    finite = {k: errors[k] for k in names if k in errors and np.isfinite(errors[k])}
    return min(finite, key=finite.get) if finite else None


def partner(name, rival, forecasts, Y, val, need=1.0):
    """(partner, margin): ``rival`` when ``name`` beats it by less than ``need`` standard
    errors of the paired differences on the validation windows (one; ``ensemble_margin(m)``
    for the best of m single networks, whose lead is that much luck, as in
    ``prefer_ensemble``), None when by more.  The model is then the mean of ``name`` and its
    partner: the validation windows cannot tell them apart, a more complex model that merely
    ties with a simpler one is a gamble on the test period, and the mean of two forecasts
    errs less than the worse of them on any period (its squared error is at most the mean of
    theirs), where one alone may be the worse.  ``margin`` is
    ``margin_in_standard_errors(name, rival)``."""
    margin = margin_in_standard_errors(forecasts[name][val], forecasts[rival][val], Y[val])
    return (None if margin <= -need else rival), margin


def mase_scale(train_values, period):
    """MASE denominator: the mean absolute one-season (one-step without a season) change over
    the training values (Hyndman & Koehler 2006)."""
    m = period or 1
    x = np.asarray(train_values, dtype=np.float64)
    d = np.abs(x[m:] - x[:-m]) if len(x) > m else np.abs(np.diff(x))
    s = float(d.mean()) if d.size else 0.0
    return s if s > 0 else 1.0


__all__ = ["autocorrelation", "detect_season", "seasonal_naive", "Normaliser", "NetForecaster",
           "build_network", "merge_networks", "mix", "calendar_cycles", "calendar_features",
           "choose", "margin_in_standard_errors", "prefer_ensemble", "linear_rival", "partner",
           "mase_scale"]
