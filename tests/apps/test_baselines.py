"""engine.apps.baselines: persistence, the least-squares AR (recovers a known process), errors per
horizon, the return baselines and the classification metrics."""
import sys
import warnings

import numpy as np
import pytest

from engine.apps import baselines as bl
from engine.apps.windows import make_windows


def simulate_ar(rng, phi, c, T, noise=1.0, burn_in=500):
    """x[t] = c + sum_k phi[k] x[t-1-k] + e[t]: phi[0] weighs the latest value."""
    p = len(phi)
    x = np.zeros(T + burn_in)
    e = rng.normal(0.0, noise, size=T + burn_in)
    for t in range(p, T + burn_in):
        x[t] = c + np.dot(phi, x[t - p:t][::-1]) + e[t]
    return x[burn_in:]


def test_persistence_repeats_last_value():
    X = np.arange(12.0).reshape(3, 4, 1)
    np.testing.assert_array_equal(bl.persistence_forecast(X, 3), [[3, 3, 3], [7, 7, 7],
                                                                  [11, 11, 11]])
    np.testing.assert_array_equal(bl.persistence_forecast(X[:, :, 0], 1), [[3], [7], [11]])


def test_linear_ar_recovers_known_coefficients(rng):
    phi, c = np.array([0.5, -0.3, 0.2]), 1.5
    x = simulate_ar(rng, phi, c, T=20_000, noise=0.5)
    X, Y = make_windows(x, window=3, horizon=1)
    model = bl.fit_linear_ar(X, Y)
    assert model.coef.shape == (3, 1) and model.intercept.shape == (1,)
    # coef[k] weighs window position k, the latest value is last: reversed phi.
    np.testing.assert_allclose(model.coef[:, 0], phi[::-1], atol=0.02)
    assert model.intercept[0] == pytest.approx(c, abs=0.05)
    residual = model.predict(X) - Y
    assert residual.std() == pytest.approx(0.5, rel=0.02)


def test_linear_ar_exact_on_noise_free_data(rng):
    """A noise-free linear recurrence is fitted exactly, for every horizon of a direct model."""
    X = rng.normal(size=(40, 5, 1))
    W = rng.normal(size=(5, 3))
    b = np.array([0.1, -2.0, 3.0])
    model = bl.fit_linear_ar(X, X[:, :, 0] @ W + b)
    np.testing.assert_allclose(model.coef, W, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(model.intercept, b, rtol=1e-9, atol=1e-10)


def test_linear_ar_beats_persistence_on_mean_reverting_series(rng):
    x = simulate_ar(rng, np.array([0.3]), 0.0, T=3000)
    X, Y = make_windows(x, window=5, horizon=2)
    model = bl.fit_linear_ar(X[:2000], Y[:2000])
    ar = bl.rmse_per_horizon(model.predict(X[2000:]), Y[2000:])
    persistence = bl.rmse_per_horizon(bl.persistence_forecast(X[2000:], 2), Y[2000:])
    assert np.all(ar < persistence)


@pytest.mark.parametrize("fit", [bl.fit_linear_ar, bl.fit_level_free_ar])
@pytest.mark.parametrize("scale, offset", [(1e-30, 0.0), (1e-15, 0.0), (1e25, 0.0),
                                           (1.0, 1e9), (1e-3, 5.0)])
def test_linear_ars_fit_the_same_in_any_units(fit, scale, offset, rng):
    """The same series in other units (scale * x + offset) gets the same forecasts in those
    units: lstsq's cut-off is relative, so raw values around 1e-15 beside the intercept's
    column of ones, or a level of 1e9 varying by 1, once lost their variation to it."""
    t = np.arange(800)
    x = simulate_ar(rng, np.array([0.9]), 0.0, T=800) + 3 * np.sin(2 * np.pi * t / 12)
    X, Y = make_windows(x, window=24, horizon=3)
    expected = fit(X[:500], Y[:500]).predict(X[500:])
    got = fit(scale * X[:500] + offset, scale * Y[:500] + offset).predict(scale * X[500:] + offset)
    np.testing.assert_allclose((got - offset) / scale, expected, rtol=0, atol=1e-6 * np.ptp(x))


def test_linear_ar_keeps_an_input_in_far_smaller_units(rng):
    """Several inputs (the ARX): a second input in units 1e14 times smaller than the first
    still gets its weight."""
    a, b = rng.normal(size=(2, 300))
    y = 0.5 * a + 2.0 * b + rng.normal(0, 0.01, size=300)
    model = bl.fit_linear_ar(np.stack([a, 1e-14 * b], axis=1), y)
    np.testing.assert_allclose(model.coef[:, 0] * [1, 1e-14], [0.5, 2.0], atol=0.01)


def test_linear_ar_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="3 windows but Y_train 2"):
        bl.fit_linear_ar(np.zeros((3, 2)), np.zeros((2, 1)))


def test_level_free_ar_recovers_an_integrated_process(rng):
    """x has changes d[t] = c + phi d[t-1] + e[t]: the forecast is x[t] + c + phi (x[t] -
    x[t-1]), coefficients (0, -phi, 1 + phi) on the window and intercept c."""
    phi, c = 0.6, 0.3
    d = simulate_ar(rng, np.array([phi]), c, T=20_000, noise=0.5)
    X, Y = make_windows(np.cumsum(d), window=3, horizon=1)
    model = bl.fit_level_free_ar(X, Y)
    np.testing.assert_allclose(model.coef[:, 0], [0.0, -phi, 1 + phi], atol=0.02)
    assert model.intercept[0] == pytest.approx(c, abs=0.05)


def test_level_free_ar_carries_any_level(rng):
    """Coefficients sum to 1 for every horizon, so a window shifted by a constant gets
    forecasts shifted by it; the least squares are those of the changes."""
    X, Y = rng.normal(size=(60, 6)).cumsum(axis=1), rng.normal(size=(60, 4))
    model = bl.fit_level_free_ar(X, Y)
    np.testing.assert_allclose(model.coef.sum(axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(model.predict(X + 123.4), model.predict(X) + 123.4, atol=1e-9)
    changes = X[:, :-1] - X[:, -1:]  # the last change column is 0 and dropped
    beta, *_ = np.linalg.lstsq(np.hstack([changes, np.ones((60, 1))]), Y - X[:, -1:],
                               rcond=None)
    np.testing.assert_allclose(model.predict(X), changes @ beta[:-1] + beta[-1] + X[:, -1:],
                               atol=1e-9)
    with pytest.raises(ValueError, match="3 windows but Y_train 2"):
        bl.fit_level_free_ar(np.zeros((3, 2)), np.zeros((2, 1)))


def test_level_free_ar_follows_a_series_out_of_its_training_range(rng):
    """A daily cycle on a mean-reverting level that rises 20 after the training period: the
    linear AR pulls the later windows back towards the training mean, the AR of the changes
    forecasts from where they are."""
    t = np.arange(4000)
    level = simulate_ar(rng, np.array([0.98]), 0.0, T=len(t), noise=0.3) + 20.0 * (t > 2000)
    x = 5 * np.sin(2 * np.pi * t / 24) + level
    X, Y = make_windows(x, window=48, horizon=24)
    X = X[:, :, 0]
    train, test = slice(0, 1500), slice(2500, None)
    assert np.median(X[test]) > X[train].max()  # the test period lies above training's range
    errors = {fit.__name__: bl.rmse_per_horizon(fit(X[train], Y[train]).predict(X[test]),
                                                Y[test]).mean()
              for fit in (bl.fit_linear_ar, bl.fit_level_free_ar)}
    assert errors["fit_level_free_ar"] < 0.5 * errors["fit_linear_ar"], errors


def _holt_winters_loop(y, hw, n, horizon):
    """The textbook equations written out (Hyndman and Athanasopoulos, section 8.3), one
    origin at a time: the forecasts after y[:n]."""
    m = len(hw.seasons)
    level, trend, seasons = hw.level, hw.trend, list(hw.seasons)
    for x in y[:n]:
        s = seasons[-m] if m else 0.0
        new = hw.alpha * (x - s) + (1 - hw.alpha) * (level + hw.phi * trend)
        if m:
            seasons.append(hw.gamma * (x - level - hw.phi * trend) + (1 - hw.gamma) * s)
        trend = hw.beta * (new - level) + (1 - hw.beta) * hw.phi * trend
        level = new
    return [level + sum(hw.phi ** k for k in range(1, h + 1)) * trend
            + (seasons[len(seasons) - m + (h - 1) % m] if m else 0.0)
            for h in range(1, horizon + 1)]


@pytest.mark.parametrize("season", [None, 12])
def test_holt_winters_is_statsmodels_fit_run_through_the_series(season, rng):
    """fit_holt_winters takes statsmodels' parameters; forecast_origins reproduces its fitted
    values and its forecasts (except at whole seasons ahead, where statsmodels 0.15 reuses the
    season before the last update: statsmodels issue 9538) and the textbook equations at every
    origin, and an origin's forecast never reads a value after it."""
    sm = pytest.importorskip("statsmodels.tsa.holtwinters")
    t = np.arange(240)
    y = 50 + 0.3 * t + 6 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, len(t))
    hw, why = bl.fit_holt_winters(y[:200], season)
    assert why is None and 0 < hw.phi <= 1 and len(hw.seasons) == (season or 0)
    mean, std = y[:200].mean(), y[:200].std()  # statsmodels fits the standardised values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.ExponentialSmoothing((y[:200] - mean) / std, trend="add", damped_trend=True,
                                      seasonal="add" if season else None,
                                      seasonal_periods=season,
                                      initialization_method="estimated").fit()
    one_step = hw.forecast_origins(y[:200], 0, 1)
    np.testing.assert_allclose(one_step[:200, 0], mean + std * fit.fittedvalues, rtol=1e-10)
    ahead = hw.forecast_origins(y[:200], 200, 15)[0]
    whole = np.arange(1, 16) % 12 == 0 if season else np.zeros(15, bool)
    np.testing.assert_allclose(ahead[~whole], mean + std * fit.forecast(15)[~whole],
                               rtol=1e-10)
    every = hw.forecast_origins(y, 10, 5)
    assert every.shape == (240 - 10 + 1, 5)
    for n in (10, 137, 240):
        np.testing.assert_allclose(every[n - 10], _holt_winters_loop(y, hw, n, 5), rtol=1e-10)
        changed = y.copy()
        changed[n:] += 100.0
        np.testing.assert_array_equal(hw.forecast_origins(changed, 10, 5)[n - 10], every[n - 10])


@pytest.mark.parametrize("scale, offset", [(1e90, 0.0), (1e-90, 0.0), (1e-3, 1e6)])
def test_holt_winters_fits_the_same_in_any_units(scale, offset, rng):
    t = np.arange(240)
    y = 50 + 0.3 * t + 6 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, len(t))
    hw, _ = bl.fit_holt_winters(y[:200], 12)
    other, _ = bl.fit_holt_winters(offset + scale * y[:200], 12)
    assert (other.alpha, other.beta, other.gamma, other.phi) == pytest.approx(
        (hw.alpha, hw.beta, hw.gamma, hw.phi), rel=1e-6, abs=1e-9)
    np.testing.assert_allclose((other.forecast_origins(offset + scale * y, 10, 5) - offset)
                               / scale, hw.forecast_origins(y, 10, 5), rtol=1e-6)


def test_holt_winters_state_round_trips_and_refuses_bad_states():
    hw = bl.HoltWinters(0.3, 0.1, 0.2, 0.95, 10.0, 0.5, np.array([1.0, -1.0]))
    again = bl.HoltWinters.from_state(hw.state(), 2)
    np.testing.assert_array_equal(again.forecast_origins(np.arange(9.0), 3, 2),
                                  hw.forecast_origins(np.arange(9.0), 3, 2))
    for bad, season in ((dict(hw.state(), alpha=1.5), 2), (dict(hw.state(), phi=0.0), 2),
                        (dict(hw.state(), level=float("nan")), 2), (hw.state(), 3),
                        ({"alpha": 0.3}, 2), (dict(hw.state(), seasons="x"), 2)):
        with pytest.raises(ValueError, match="expected"):
            bl.HoltWinters.from_state(bad, season)


def test_holt_winters_without_statsmodels_or_with_too_few_values_is_left_out(monkeypatch):
    pytest.importorskip("statsmodels")
    hw, why = bl.fit_holt_winters(np.arange(10.0), 12)  # under two seasons
    assert hw is None and "could not fit" in why
    monkeypatch.setitem(sys.modules, "statsmodels.tsa.holtwinters", None)
    assert bl.fit_holt_winters(np.arange(100.0), None) == (None,
                                                           "statsmodels is not installed")


def test_rmse_per_horizon():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    true = np.array([[1.0, 0.0], [0.0, 4.0]])
    np.testing.assert_allclose(bl.rmse_per_horizon(pred, true), [np.sqrt(4.5), np.sqrt(2.0)])
    with pytest.raises(ValueError, match="shape"):
        bl.rmse_per_horizon(pred, true[:1])


def test_return_baselines():
    train = np.array([0.01, 0.03, -0.01, 0.01])
    test = np.array([0.02, -0.02, 0.0])
    assert bl.mse(bl.zero_forecast(test), test) == pytest.approx(np.mean(test ** 2))
    mean_pred = bl.mean_forecast(train, test)
    np.testing.assert_allclose(mean_pred, [0.01, 0.01, 0.01])
    assert bl.mse(mean_pred, test) == pytest.approx(np.mean((test - 0.01) ** 2))


def test_directional_accuracy_and_majority():
    true = np.array([0.1, -0.2, 0.3, 0.0])            # up, down, up, not up
    assert bl.directional_accuracy(np.array([1, 1, 1, 1]), true) == 0.5
    assert bl.directional_accuracy(np.array([1, -1, 2, -3]), true) == 1.0
    assert bl.majority_direction_accuracy(np.array([0.1, 0.2, -0.1]), true) == 0.5   # "up"
    assert bl.majority_direction_accuracy(np.array([-0.1, -0.2, 0.1]), true) == 0.5  # "down"
    assert bl.majority_direction_accuracy(np.array([-1.0]), np.array([-1.0, -2.0, 3.0])) \
        == pytest.approx(2 / 3)


def test_confusion_matrix_and_accuracy(rng):
    y_true = rng.integers(0, 4, size=200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 4, size=200))
    cm = bl.confusion_matrix(y_true, y_pred, 4)
    expected = np.zeros((4, 4), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        expected[t, p] += 1
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == 200
    assert bl.accuracy(y_true, y_pred) == pytest.approx(np.trace(cm) / 200)


def test_confusion_matrix_keeps_absent_classes():
    cm = bl.confusion_matrix([0, 0, 2], [0, 2, 2], 4)
    assert cm.shape == (4, 4)
    np.testing.assert_array_equal(cm[0], [1, 0, 1, 0])
    np.testing.assert_array_equal(cm[3], 0)


def test_confusion_matrix_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"y_pred has labels outside \[0, 3\)"):
        bl.confusion_matrix([0, 1], [0, 3], 3)


def test_majority_class():
    assert bl.majority_class([2, 2, 1, 0, 2], 4) == 2
