"""Honest baselines and metrics, computed on the same split as the model they are shown beside.

Forecasting: X (N, W, 1) windows and Y (N, H) targets, as made by
``engine.apps.windows.make_windows``.
"""
from dataclasses import dataclass

import numpy as np


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

    X_train: (N, W) or (N, W, 1); Y_train: (N, H) or (N,).  Solved by np.linalg.lstsq, so a
    rank-deficient design still gets the minimum-norm solution.
    """
    X, Y = _training_pair(X_train, Y_train)
    design = np.hstack([X, np.ones((len(X), 1))])
    beta, *_ = np.linalg.lstsq(design, Y, rcond=None)
    return LinearAR(coef=beta[:-1], intercept=beta[-1])


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
