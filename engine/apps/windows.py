"""Preprocessing shared by the applications: chronological splits, a train-only scaler,
sliding windows, a character vocabulary, log returns and realised volatility.

Dimension letters as elsewhere: T time steps of a series, N windows (samples), W window
length, H forecast horizon.
"""
import numpy as np

from engine.checks import check_int


def chronological_split(n, fractions=(0.7, 0.15, 0.15), gap=0):
    """Split ``range(n)`` into consecutive train, validation and test slices, in that order.

    The boundaries are ``round(n * f_train)`` and ``round(n * (f_train + f_val))``; the test
    slice takes the rest.  The validation slice stops ``gap`` indices short of the test slice:
    samples whose targets run ``gap`` steps past their index (windows with a horizon H: gap
    H - 1) then leave every target of the test period unseen by whatever the validation
    chooses or stops on ("purging", Lopez de Prado 2018; sklearn's ``TimeSeriesSplit(gap=)``).
    The training slice runs up to the validation slice: the validation period is not the test
    period, and its first targets are still ones the training period has seen, as when a model
    is refitted on the latest data.  Every part must be non-empty.
    Returns (train, val, test) as slice objects, e.g. ``series[train]``.
    """
    n = check_int("n", n, 3)
    gap = check_int("gap", gap, 0)
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or np.any(f <= 0) or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"fractions must be 3 positive numbers summing to 1, got {fractions}")
    a = int(round(n * f[0]))
    b = int(round(n * (f[0] + f[1])))
    if not (0 < a < b - gap and b < n):
        sizes = ", ".join(str(max(0, k)) for k in (a, b - gap - a, n - b))
        raise ValueError(f"n={n} is too small to split by {tuple(fractions)} with a gap of "
                         f"{gap}: sizes would be {sizes}")
    return slice(0, a), slice(a, b - gap), slice(b, n)


def min_split_size(fractions=(0.7, 0.15, 0.15), gap=0):
    """The least n from which ``chronological_split(n, fractions, gap)`` gives every part at
    least one index (6 for the default): rounding makes some smaller n fail even when a larger
    one works, so the answer is the first n after the last failure below a bound past which
    every part holds ``gap`` + 1 indices whatever the rounding."""
    limit = int(np.ceil((gap + 2) / min(fractions))) + 3
    fails = [n for n in range(3, limit) if not _splits(n, fractions, gap)]
    return fails[-1] + 1 if fails else 3


def _splits(n, fractions, gap):
    try:
        chronological_split(n, fractions, gap)
    except ValueError:
        return False
    return True


class StandardScaler:
    """Standardise to zero mean and unit variance, with statistics fitted on training data only.

    Statistics are per feature over axis 0 (a 1-D series has one mean and one std).  A
    constant feature gets scale 1, so it maps to 0 rather than to inf.
    """

    def __init__(self):
        self.mean_ = None
        self.scale_ = None

    def fit(self, x):
        x = np.asarray(x, dtype=np.float64)
        if x.shape[0] < 1 or not np.all(np.isfinite(x)):
            raise ValueError("StandardScaler.fit: need at least one row of finite values")
        self.mean_ = x.mean(axis=0)
        std = x.std(axis=0)
        if not (np.all(np.isfinite(self.mean_)) and np.all(np.isfinite(std))):
            self.mean_ = None
            raise ValueError("StandardScaler.fit: the values are too large to scale (their "
                             f"variance overflows; largest magnitude {np.abs(x).max():.3g})")
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def _check_fitted(self, method):
        if self.mean_ is None:
            raise RuntimeError(f"StandardScaler.{method} called before fit: fit on the "
                               "training split first")

    def transform(self, x):
        self._check_fitted("transform")
        return (np.asarray(x, dtype=np.float64) - self.mean_) / self.scale_

    def fit_transform(self, x):
        return self.fit(x).transform(x)

    def inverse_transform(self, z):
        self._check_fitted("inverse_transform")
        return np.asarray(z, dtype=np.float64) * self.scale_ + self.mean_

    def state(self):
        """{"mean": ..., "scale": ...} as JSON values (floats or lists), for a model's
        metadata; ``from_state`` rebuilds the scaler exactly."""
        self._check_fitted("state")
        return {"mean": np.asarray(self.mean_).tolist(),
                "scale": np.asarray(self.scale_).tolist()}

    @classmethod
    def from_state(cls, state):
        """The scaler ``state()`` described; ValueError for anything else (a saved model's
        metadata is untrusted input)."""
        try:
            mean = np.asarray(state["mean"], dtype=np.float64)
            scale = np.asarray(state["scale"], dtype=np.float64)
        except (TypeError, KeyError, ValueError):
            raise ValueError("scaler state: expected {'mean': numbers, 'scale': numbers}, got "
                             f"{str(state)[:80]}") from None
        if (mean.shape != scale.shape or mean.ndim > 1 or not np.isfinite(mean).all()
                or not (np.isfinite(scale) & (scale > 0)).all()):
            raise ValueError("scaler state: mean and scale must be finite numbers of one shape, "
                             f"scale > 0; got mean {mean.tolist()!s:.60}, scale "
                             f"{scale.tolist()!s:.60}")
        scaler = cls()
        scaler.mean_, scaler.scale_ = mean, scale
        return scaler


def make_windows(series, window, horizon=1):
    """Sliding input windows and the values that follow them.

    series: (T,) values.  Window i is series[i : i+W] and its target series[i+W : i+W+H], for
    i in 0..N-1 with N = T - W - H + 1.  Returns X (N, W, 1) and Y (N, H), float64 copies
    (writable, contiguous), in time order.
    """
    series = np.asarray(series, dtype=np.float64)
    if series.ndim != 1:
        raise ValueError(f"make_windows: series must be 1-D, got shape {series.shape}")
    window = check_int("window", window, 1)
    horizon = check_int("horizon", horizon, 1)
    if len(series) < window + horizon:
        raise ValueError(f"series too short: {len(series)} values, window {window} + horizon "
                         f"{horizon} needs at least {window + horizon}")
    view = np.lib.stride_tricks.sliding_window_view(series, window + horizon)  # (N, W+H)
    return view[:, :window, None].copy(), view[:, window:].copy()


class CharVocab:
    """Character-level vocabulary: ``chars[i]`` is the character with id i.

    Build one from the training text with ``CharVocab.from_text``; keep ``vocab.chars`` (a str)
    in the model's ``metadata`` and rebuild it with ``CharVocab(chars)``.
    """

    def __init__(self, chars):
        chars = "".join(chars)
        if not chars or len(set(chars)) != len(chars):
            raise ValueError("CharVocab: chars must be non-empty and without repeats")
        self.chars = chars
        self._codes = np.array([ord(c) for c in chars], dtype=np.uint32)
        self._order = np.argsort(self._codes)  # sorted code position -> id
        self._sorted = self._codes[self._order]

    @classmethod
    def from_text(cls, text):
        """The vocabulary of ``text``: its distinct characters in code-point order."""
        return cls(sorted(set(text)))

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        """str -> int32 (len(text),) ids.  A character not in the vocabulary raises ValueError."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        pos = np.minimum(np.searchsorted(self._sorted, codes), len(self._sorted) - 1)
        unknown = np.flatnonzero(self._sorted[pos] != codes)
        if unknown.size:
            i = int(unknown[0])
            raise ValueError(f"character {text[i]!r} at position {i} is not in the vocabulary "
                             f"({unknown.size} unknown in all)")
        return self._order[pos].astype(np.int32)

    def decode(self, ids):
        """ids (any integer array) -> str."""
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"ids must lie in [0, {len(self)}), got {ids.min()}..{ids.max()}")
        return self._codes[ids.ravel()].astype("<u4").tobytes().decode("utf-32-le")


def log_returns(prices):
    """Daily log returns r[t] = log(p[t+1] / p[t]): float64 (T-1,) from prices (T,) > 0."""
    prices = np.asarray(prices, dtype=np.float64)
    if prices.ndim != 1 or len(prices) < 2:
        raise ValueError(f"log_returns: need a 1-D series of at least 2 prices, got shape "
                         f"{prices.shape}")
    if not np.all(prices > 0):
        raise ValueError("log_returns: prices must all be positive")
    return np.diff(np.log(prices))


def realised_volatility(returns, days=5):
    """Realised volatility over ``days`` consecutive returns: v[i] = sqrt(sum r[i:i+days]**2).

    returns: (T,) log returns.  Returns float64 (T-days+1,); v[i] covers returns i..i+days-1,
    so the volatility of the ``days`` returns after step t (a forecasting target) is v[t+1].
    Not annualised.
    """
    returns = np.asarray(returns, dtype=np.float64)
    days = check_int("days", days, 1)
    if returns.ndim != 1 or len(returns) < days:
        raise ValueError(f"realised_volatility: need a 1-D series of at least {days} returns, "
                         f"got shape {returns.shape}")
    squares = np.lib.stride_tricks.sliding_window_view(returns * returns, days)
    return np.sqrt(squares.sum(axis=1))
