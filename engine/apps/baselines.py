"""Honest baselines and metrics, computed on the same split as the model they are shown beside.

Forecasting: X (N, W, 1) windows and Y (N, H) targets, as made by
``engine.apps.windows.make_windows``.
"""
import warnings
from dataclasses import dataclass

import numpy as np

from engine.apps.windows import StandardScaler


def _as_windows(X):
    """(N, W) or (N, W, 1) -> float64 (N, W)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 3 and X.shape[2] == 1:
        X = X[:, :, 0]
    if X.ndim != 2:
        raise ValueError(f"windows must have shape (N, W) or (N, W, 1), got {X.shape}")
    return X


# --------------------------------------------------------------------------------------------
# Forecasting
# --------------------------------------------------------------------------------------------

def persistence_forecast(X, horizon):
    """Repeat the last observed value: (N, H) with every column equal to X[:, -1]."""
    last = _as_windows(X)[:, -1]
    return np.repeat(last[:, None], horizon, axis=1)


@dataclass
class LinearAR:
    """Direct multi-output linear autoregression: Y[:, h] = X @ coef[:, h] + intercept[h].

    coef: float64 (W, H), coef[k, h] weighs the k-th value of the window (k = W-1 the latest).
    intercept: float64 (H,).
    """
    coef: np.ndarray
    intercept: np.ndarray

    def predict(self, X):
        """(N, W[, 1]) windows -> (N, H) forecasts."""
        return _as_windows(X) @ self.coef + self.intercept


def _training_pair(X_train, Y_train):
    """float64 windows (N, W) and targets (N, H) from (N, W[, 1]) and (N, H) or (N,)."""
    X = _as_windows(X_train)
    Y = np.asarray(Y_train, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if len(X) != len(Y):
        raise ValueError(f"X_train has {len(X)} windows but Y_train {len(Y)} targets")
    return X, Y


def fit_linear_ar(X_train, Y_train):
    """Least-squares AR(W) with intercept, one output per horizon (no recursion).

    X_train: (N, W) or (N, W, 1); Y_train: (N, H) or (N,).  Solved by np.linalg.lstsq on
    standardised columns, so a rank-deficient design still gets the minimum-norm solution and
    the fit does not depend on the data's units.  lstsq drops the directions whose singular
    values fall below a cut-off relative to the largest (rcond), so raw columns far apart in
    scale lose the smaller ones: values around 1e-15 beside the intercept's column of ones
    were fitted as their mean alone (rank 1), and values around 1e25, or a level of 1e9 that
    varies by 1, lost the intercept (the coefficients then summed to 1: no mean to revert
    to).  The intercept is recovered from the means.
    """
    X, Y = _training_pair(X_train, Y_train)
    sx, sy = StandardScaler().fit(X), StandardScaler().fit(Y)
    beta, *_ = np.linalg.lstsq(sx.transform(X), sy.transform(Y), rcond=None)
    coef = beta / sx.scale_[:, None] * sy.scale_
    return LinearAR(coef=coef, intercept=sy.mean_ - sx.mean_ @ coef)


def fit_level_free_ar(X_train, Y_train):
    """The AR of the changes: least squares of Y - last on X - last (last = each window's last
    value) with an intercept, the drift per horizon.  Direct ARIMA(W-1, 1, 0) with drift.

    Unlike ``fit_linear_ar`` it has no mean to revert to: a level the training period never
    reached is carried as it is, so a series that trends or wanders out of its training range
    is forecast from where it is.  Returned as a LinearAR of the values, whose coefficients
    for each horizon sum to 1 (adding c to a window adds c to its forecasts).
    """
    X, Y = _training_pair(X_train, Y_train)
    last = X[:, -1:]
    # The last column of X - last is zero; lstsq's minimum-norm solution gives it weight 0.
    changes = fit_linear_ar(X - last, Y - last)
    coef = changes.coef.copy()
    coef[-1] += 1.0 - coef.sum(axis=0)  # (X - last) @ B + last == X @ coef
    return LinearAR(coef=coef, intercept=changes.intercept)


@dataclass
class HoltWinters:
    """Additive Holt-Winters with a damped trend (ETS(A,Ad,A); ETS(A,Ad,N) without a season):
    smoothing weights ``alpha`` (level), ``beta`` (trend), ``gamma`` (season), damping ``phi``
    and the initial ``level``, ``trend`` and ``seasons`` (float64 (m,), empty without a season),
    in statsmodels' parametrisation (``fit_holt_winters``).  Unlike the AR it carries a state
    through the whole series, so it forecasts from a series' start, not from one window."""
    alpha: float
    beta: float
    gamma: float
    phi: float
    level: float
    trend: float
    seasons: np.ndarray

    def forecast_origins(self, series, window, horizon):
        """(T - window + 1, horizon) float64: row i forecasts series[i + window:][:horizon]
        from series[:i + window] alone, the state run from the series' start; row i is the
        forecast after window i of ``make_windows`` and the last row the one after the end.

        Per step: l' = alpha (y - s) + (1 - alpha)(l + phi b), b' = beta (l' - l) + (1 - beta)
        phi b, and the season of y m steps on is gamma (y - l - phi b) + (1 - gamma) s; the
        forecast h ahead is l + (phi + ... + phi^h) b + the latest season of that phase.  A
        plain loop over the values: it runs once per series, not in a training loop."""
        y = np.asarray(series, dtype=np.float64)
        T, m = len(y), max(len(self.seasons), 1)
        level, trend = np.empty(T + 1), np.empty(T + 1)
        level[0], trend[0] = self.level, self.trend
        season = np.zeros(T + m)  # season[k]: the seasonal term of value k
        season[:len(self.seasons)] = self.seasons
        a, b, g, phi = self.alpha, self.beta, self.gamma, self.phi
        seasonal = len(self.seasons) > 0  # without a season, season stays 0
        for i in range(T):
            base = level[i] + phi * trend[i]
            level[i + 1] = a * (y[i] - season[i]) + (1 - a) * base
            trend[i + 1] = b * (level[i + 1] - level[i]) + (1 - b) * phi * trend[i]
            if seasonal:
                season[i + m] = g * (y[i] - base) + (1 - g) * season[i]
        n = np.arange(window, T + 1)  # values seen at each origin
        h = np.arange(1, horizon + 1)
        damped = np.cumsum(phi ** h)
        return (level[n, None] + damped * trend[n, None]
                + season[n[:, None] + (h - 1) % m])

    def state(self):
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "phi": self.phi,
                "level": self.level, "trend": self.trend, "seasons": self.seasons.tolist()}

    @classmethod
    def from_state(cls, state, season):
        """The HoltWinters ``state()`` described, checked: weights in [0, 1], damping in (0, 1],
        finite initial states, ``season`` (0: none) initial seasons."""
        try:
            hw = cls(*(float(state[k]) for k in ("alpha", "beta", "gamma", "phi", "level",
                                                 "trend")),
                     np.asarray(state["seasons"], dtype=np.float64).reshape(-1))
        except (TypeError, KeyError, ValueError):
            raise ValueError("expected {alpha, beta, gamma, phi, level, trend: numbers, "
                             "seasons: a list of numbers}") from None
        weights = np.array([hw.alpha, hw.beta, hw.gamma])
        if not ((0 <= weights) & (weights <= 1)).all() or not 0 < hw.phi <= 1 or \
                not np.isfinite([hw.level, hw.trend, *hw.seasons]).all() or \
                len(hw.seasons) != (season or 0):
            raise ValueError(f"expected weights in [0, 1], damping in (0, 1], finite states and "
                             f"{season or 0} seasons")
        return hw


def fit_holt_winters(train_values, season):
    """HoltWinters fitted to ``train_values`` by statsmodels (``ExponentialSmoothing`` with a
    damped additive trend, an additive season of ``season`` steps when given, initial states
    estimated; Hyndman and Athanasopoulos, *Forecasting: principles and practice*, ch. 8), or
    (None, why) when statsmodels is not installed or cannot fit the values (too few for the
    season, say).  The fit is on the standardised values, its initial states then restored
    to the data's units (the model is additive), so that the optimiser starts from the same
    place in any units.  An optional baseline: ``pip install statsmodels``."""
    try:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing
    except ImportError:
        return None, "statsmodels is not installed"
    scaler = StandardScaler().fit(np.asarray(train_values, dtype=np.float64))
    mean, std = float(scaler.mean_), float(scaler.scale_)
    try:
        with warnings.catch_warnings():  # convergence notes: the fit is a baseline, as it is
            warnings.simplefilter("ignore")
            fit = ExponentialSmoothing(scaler.transform(train_values), trend="add",
                                       damped_trend=True, seasonal="add" if season else None,
                                       seasonal_periods=season or None,
                                       initialization_method="estimated").fit()
    except (ValueError, np.linalg.LinAlgError) as e:
        return None, f"statsmodels could not fit it: {e}"
    p = fit.params
    seasons = np.asarray(p["initial_seasons"], dtype=np.float64) if season else np.zeros(0)
    hw = HoltWinters(float(p["smoothing_level"]), float(p["smoothing_trend"]),
                     float(p["smoothing_seasonal"]) if season else 0.0,
                     float(p["damping_trend"]), mean + std * float(p["initial_level"]),
                     std * float(p["initial_trend"]), std * seasons)
    if not np.isfinite([hw.alpha, hw.beta, hw.gamma, hw.phi, hw.level, hw.trend,
                        *seasons]).all():
        return None, "statsmodels' fit is not finite"
    return hw, None


def rmse_per_horizon(pred, true):
    """Root mean squared error over samples, one per horizon: (N, H), (N, H) -> (H,)."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred {pred.shape} and true {true.shape} differ in shape")
    err = (pred - true).reshape(len(pred), -1)
    return np.sqrt(np.mean(err * err, axis=0))


# --------------------------------------------------------------------------------------------
# Returns: the baselines a return or volatility model must beat
# --------------------------------------------------------------------------------------------

def mse(pred, true):
    """Mean squared error over all elements."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred {pred.shape} and true {true.shape} differ in shape")
    return float(np.mean((pred - true) ** 2))


def zero_forecast(true):
    """The zero-return forecast: zeros shaped like ``true`` (a random walk in prices)."""
    return np.zeros_like(np.asarray(true, dtype=np.float64))


def mean_forecast(train, true):
    """The historical-mean forecast: the mean of the training targets, shaped like ``true``."""
    return np.full_like(np.asarray(true, dtype=np.float64), np.mean(train))


def directional_accuracy(pred, true):
    """Fraction of steps where the forecast and the outcome are both up (> 0) or both not."""
    pred, true = np.asarray(pred), np.asarray(true)
    return float(np.mean((pred > 0) == (true > 0)))


def majority_direction_accuracy(train, true):
    """Directional accuracy of always predicting the training set's more frequent direction.

    A model's directional accuracy means something only above this figure.
    """
    up = np.mean(np.asarray(train) > 0) > 0.5
    return float(np.mean((np.asarray(true) > 0) == up))


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------

def confusion_matrix(y_true, y_pred, n_classes):
    """int64 (C, C): entry [i, j] counts samples of true class i predicted as class j."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} has labels outside [0, {n_classes})")
    counts = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def accuracy(y_true, y_pred):
    """Fraction of exact matches."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    return float(np.mean(y_true == y_pred))


def majority_class(y_train, n_classes):
    """The most frequent training label (the classification baseline to beat)."""
    return int(np.argmax(np.bincount(np.asarray(y_train, dtype=np.int64), minlength=n_classes)))
