"""engine.apps.forecasters: season detection, seasonal naive, the exact merge of networks,
and the choice on the validation period, which must never look at the test period."""
import math
import sys

import numpy as np
import pytest

import engine
from engine.apps import forecast
from engine.apps.baselines import LinearAR, rmse_per_horizon
from engine.apps.common import AppError
from engine.apps.forecasters import (NetForecaster, Normaliser, build_network, choose,
                                     detect_season, ensemble_margin, expected_best_of,
                                     margin_in_standard_errors, mase_scale, merge_networks, mix,
                                     linear_rival, partner, prefer_ensemble, seasonal_naive)
from engine.apps.windows import chronological_split, make_windows


def _csv(path, values):
    path.write_text("t,y\n" + "".join(f"{i},{float(v)!r}\n" for i, v in enumerate(values)))
    return path


@pytest.mark.parametrize("period", [7, 12, 24])
def test_detect_season_finds_the_period_under_trend_and_noise(period):
    rng = np.random.default_rng(period)
    t = np.arange(40 * period)
    y = 0.05 * t + np.sin(2 * np.pi * t / period) + rng.normal(0, 0.3, len(t))
    found, r = detect_season(y, 2 * period + 3)
    assert found == period and r > 0.3
    assert detect_season(y, period)[0] == period  # a season as long as the window


def test_detect_season_finds_none_in_noise_or_a_random_walk():
    rng = np.random.default_rng(0)
    assert detect_season(rng.normal(size=500), 50)[0] is None
    assert detect_season(np.cumsum(rng.normal(size=500)), 50)[0] is None


def test_seasonal_naive_matches_a_loop():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5, 10))
    for period in (1, 3, 4, 10):
        want = np.empty((5, 7))
        for h in range(7):
            back = period
            while back < h + 1:
                back += period
            want[:, h] = X[:, 10 + h - back]
        np.testing.assert_array_equal(seasonal_naive(X, 7, period), want)
    with pytest.raises(ValueError, match="period must lie in"):
        seasonal_naive(X, 3, 11)


def _trained(inputs, hidden, outputs, seed):
    """A small network with random (not initial) weights."""
    model = build_network(inputs, hidden, outputs, 1e-3, "cpu", seed)
    rng = np.random.default_rng(seed)
    model.load_state_dict({k: rng.normal(0, 0.5, v.shape) for k, v in
                           model.state_dict().items()})
    return model


def test_merge_networks_is_exactly_the_weighted_sum_of_its_members():
    members = [_trained(2, 5, 3, 0), _trained(1, 5, 3, 1), _trained(2, 5, 3, 2)]
    weights = np.array([0.2, -1.5, 0.7])
    x = np.random.default_rng(3).normal(size=(6, 9, 2)).astype(np.float32)
    want = sum(w * m.predict(x[:, :, :m.layers[0].input_size])
               for w, m in zip(weights, members))
    np.testing.assert_allclose(merge_networks(members, weights).predict(x), want, atol=2e-5)
    # Members reading other columns: the second reads channel 1 only, the first both.
    columns = [[0, 1], [1], [1, 0]]
    want = sum(w * m.predict(x[:, :, c]) for w, m, c in zip(weights, members, columns))
    np.testing.assert_allclose(merge_networks(members, weights, columns).predict(x), want,
                               atol=2e-5)
    mean = merge_networks(members[::2]).predict(x)
    np.testing.assert_allclose(mean, (members[0].predict(x) + members[2].predict(x)) / 2,
                               atol=2e-5)


@pytest.mark.parametrize("mode", ["direct", "recursive"])
def test_mix_is_the_mean_of_its_forecasters(mode):
    rng = np.random.default_rng(4)
    W, H = 8, 3
    k = H if mode == "direct" else 1
    X = rng.normal(size=(20, W)).cumsum(axis=1)
    ar = LinearAR(coef=rng.normal(0, 0.3, (W, k)), intercept=rng.normal(size=k))
    members = [  # the three kinds of forecast.NETWORKS: level, change and level, change
        NetForecaster(_trained(1, 4, k, 5), Normaliser(None, 0.7, (0.5, 2.0)), None, mode),
        NetForecaster(_trained(2, 4, k, 6), Normaliser(1.3, 0.9, (0.5, 2.0)), None, mode),
        NetForecaster(_trained(1, 4, k, 7), Normaliser(1.3, 0.4), ar, mode)]
    both = mix(members, W)
    # Recursive: the mean one-step forecast, rolled forward (not the mean of rolled members).
    want = sum(f.step(X) for f in members) / 3
    np.testing.assert_allclose(both.step(X), want, rtol=1e-5, atol=1e-5)
    if mode == "direct":
        np.testing.assert_allclose(both.predict(X, H), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c", [2.0 ** 300, 2.0 ** -600])
def test_mix_gives_the_same_bits_in_units_a_power_of_two_apart(c):
    """Data in units of 2e90 or 2e-181: the merged network's float32 weights hold the output
    scales relative to a power of two, so they neither overflow nor vanish, and the forecast
    is the unit-scale one times c, to the bit."""
    rng = np.random.default_rng(5)
    W, H = 8, 3
    X = rng.normal(size=(20, W)).cumsum(axis=1)
    coef, intercept = rng.normal(0, 0.3, (W, H)), rng.normal(size=H)
    nets = [_trained(1, 4, H, 5), _trained(2, 4, H, 6), _trained(1, 4, H, 7)]

    def members(k):
        ar = LinearAR(coef=coef, intercept=k * intercept)
        return [NetForecaster(nets[0], Normaliser(None, 0.7 * k, (0.5 * k, 2.0 * k)), None,
                              "direct"),
                NetForecaster(nets[1], Normaliser(1.3 * k, 0.9 * k, (0.5 * k, 2.0 * k)), None,
                              "direct"),
                NetForecaster(nets[2], Normaliser(1.3 * k, 0.4 * k), ar, "direct")]
    unit = mix(members(1.0), W).step(X)
    scaled = mix(members(c), W).step(c * X)
    np.testing.assert_array_equal(scaled, c * unit)
    np.testing.assert_allclose(scaled, sum(f.step(c * X) for f in members(c)) / 3,
                               rtol=1e-5, atol=1e-5 * c)


@pytest.mark.parametrize("c", [2.0 ** 300, 2.0 ** -300, 1e99, 1e-99])
def test_margin_in_standard_errors_is_the_same_in_any_units(c):
    rng = np.random.default_rng(6)
    Y = rng.normal(size=(40, 4))
    a, b = Y + rng.normal(0, 0.5, Y.shape), Y + rng.normal(0, 0.6, Y.shape)
    unit = margin_in_standard_errors(a, b, Y)
    scaled = margin_in_standard_errors(c * a, c * b, c * Y)
    if math.frexp(c)[0] == 0.5:  # a power of two: the same bits
        assert scaled == unit
    assert scaled == pytest.approx(unit, rel=1e-12) and unit != 0


def test_normaliser_state_round_trips_and_refuses_bad_states():
    n = Normaliser(2.0, 0.5, (3.0, 4.0))
    assert Normaliser.from_state(n.state()) == n
    assert Normaliser.from_state(Normaliser(1.0, 1.0).state()).level is None
    assert Normaliser.from_state(Normaliser(None, 1.0, (0.0, 1.0)).state()).columns == [1]
    for bad in [{"input_scale": 0, "output_scale": 1, "level": None},
                {"input_scale": None, "output_scale": 1, "level": None},
                {"input_scale": 1, "output_scale": 1, "level": [1.0]},
                {"input_scale": 1, "output_scale": float("nan"), "level": None},
                {"input_scale": 1, "output_scale": 1, "level": [0.0, -1.0]}, [1, 2], None]:
        with pytest.raises(ValueError):
            Normaliser.from_state(bad)


def test_choose_takes_the_lowest_validation_error_and_mase_scale():
    Y = np.zeros((10, 2))
    f = {"a": np.full((10, 2), 2.0), "b": np.full((10, 2), 1.0), "c": np.full((10, 2), np.nan)}
    f["b"][8:] = 100.0  # outside the validation slice
    name, errors = choose(f, Y, slice(2, 8))
    assert name == "b" and errors["a"] == 2.0
    assert mase_scale(np.array([1.0, 3.0, 2.0, 6.0]), None) == pytest.approx(7 / 3)
    assert mase_scale(np.array([1.0, 3.0, 2.0, 6.0]), 2) == pytest.approx(2.0)


def _diebold_mariano(a, b, Y):
    """The statistic written out: per-window loss differences, their autocovariances up to
    H - 1 lags with Bartlett weights, the mean over its standard error, times Harvey,
    Leybourne and Newbold's correction sqrt((n + 1 - 2h + h (h - 1) / n) / n)."""
    d = [np.mean((a[i] - Y[i]) ** 2) - np.mean((b[i] - Y[i]) ** 2) for i in range(len(Y))]
    n, h = Y.shape
    mean, lags = sum(d) / n, h - 1
    gamma = [sum((d[i] - mean) * (d[i - k] - mean) for i in range(k, n)) / n
             for k in range(lags + 1)]
    var = gamma[0] + 2 * sum((1 - k / (lags + 1)) * gamma[k] for k in range(1, lags + 1))
    return mean / np.sqrt(var / n) * np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)


def test_margin_in_standard_errors_is_the_diebold_mariano_statistic():
    rng = np.random.default_rng(8)
    Y = rng.normal(size=(50, 3))
    a, b = Y + rng.normal(0, 0.5, Y.shape), Y + rng.normal(0, 0.6, Y.shape)
    want = _diebold_mariano(a, b, Y)
    assert margin_in_standard_errors(a, b, Y) == pytest.approx(want, rel=1e-12)
    assert margin_in_standard_errors(b, a, Y) == pytest.approx(-want, rel=1e-12)
    assert margin_in_standard_errors(a, a, Y) == 0.0
    # One horizon: no lags, the paired t statistic with the (n - 1) variance.
    d = ((a - Y) ** 2)[:, 0] - ((b - Y) ** 2)[:, 0]
    t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
    assert margin_in_standard_errors(a[:, :1], b[:, :1], Y[:, :1]) == pytest.approx(t)
    # No more windows than the horizon: no evidence either way.
    for n in (1, 2, 3):
        assert margin_in_standard_errors(a[:n], b[:n] + 9, Y[:n]) == 0.0
    assert margin_in_standard_errors(a[:4], b[:4] + 9, Y[:4]) < -1


def test_the_small_sample_correction_makes_a_margin_of_few_windows_honest():
    """Two equally good forecasters judged on 9 windows of 5 steps (lynx's validation): the
    uncorrected statistic calls one the better by over one standard error in over a third of
    the draws, where a standard normal would in 16%; the corrected one in about a quarter."""
    rng = np.random.default_rng(12)
    n, H, draws = 9, 5, 2000
    wins = []
    for _ in range(draws):
        series = rng.normal(size=n + H - 1)
        Y = np.stack([series[i:i + H] for i in range(n)])
        a, b = (Y + np.stack([e[i:i + H] for i in range(n)])
                for e in rng.normal(size=(2, n + H - 1)))
        wins.append(margin_in_standard_errors(a, b, Y))
    corrected = np.mean(np.array(wins) < -1)
    uncorrected = np.mean(np.array(wins) / (np.sqrt((n - H) * (n - H + 1)) / n) < -1)
    assert uncorrected > 0.33 and corrected < 0.26, (uncorrected, corrected)


def test_windows_that_share_targets_widen_the_standard_error():
    """Forecasts of overlapping windows: a's errors are b's plus a slowly wandering offset, so
    neighbouring differences agree and the i.i.d. standard error would overstate the margin."""
    rng = np.random.default_rng(10)
    n, H = 400, 12
    series = rng.normal(size=n + H)
    Y = np.stack([series[i:i + H] for i in range(n)])
    wander = np.convolve(rng.normal(size=n + 40), np.ones(40) / 40, "valid")[:n]
    b = Y + rng.normal(0, 1.0, Y.shape)
    a = b - 0.05 + 0.5 * wander[:, None]
    d = ((a - Y) ** 2).mean(axis=1) - ((b - Y) ** 2).mean(axis=1)
    naive = d.mean() / (d.std(ddof=1) / np.sqrt(n))
    got = margin_in_standard_errors(a, b, Y)
    assert np.sign(got) == np.sign(naive) and abs(got) < 0.7 * abs(naive)


def test_a_model_that_ties_with_a_simpler_one_is_averaged_with_it():
    """The one-standard-error rule: a model whose lower validation error is inside the noise of
    the paired differences gets its rival as a partner (the model is their mean); a clear win
    stands alone; and with 4 windows of 4 steps nothing can win."""
    rng = np.random.default_rng(9)
    Y = rng.normal(size=(200, 4))
    val = slice(0, 100)
    noise = rng.normal(0, 1.0, Y.shape)
    f = {"ar": Y + noise, "ar-diff": Y + rng.normal(0, 1.3, Y.shape),
         "tie": Y + noise * 0.999 + rng.normal(0, 0.05, Y.shape),  # 0.1% lower, noisily
         "clear": Y + 0.5 * noise}
    for name in ("tie", "clear"):
        assert choose({k: f[k] for k in ("ar", "ar-diff", name)}, Y, val)[0] == name
    mate, margin = partner("tie", "ar", f, Y, val)
    assert mate == "ar" and -1 < margin < 0
    mate, margin = partner("clear", "ar", f, Y, val)
    assert mate is None and margin < -5
    assert partner("clear", "ar", f, Y, slice(0, 4))[0] == "ar"  # 4 windows of 4
    # A lead between 1 and the needed one (1.85 for the best of three networks) is a tie.
    close = {"ar": f["ar"], "close": Y + noise * 0.994 + rng.normal(0, 0.05, Y.shape)}
    mate, margin = partner("close", "ar", close, Y, val)
    assert mate is None and -ensemble_margin(3) < margin <= -1
    assert partner("close", "ar", close, Y, val, need=ensemble_margin(3)) == ("ar", margin)


def test_a_fitted_linear_model_is_the_rival_only_when_it_clearly_beats_the_best_baseline():
    """linear_rival: the best baseline by validation error, replaced by the best fitted linear
    candidate only when that one leads it by one standard error or more."""
    rng = np.random.default_rng(4)
    Y = rng.normal(size=(200, 4))
    val = slice(0, 120)
    noise = rng.normal(0, 1.0, Y.shape)
    f = {"persistence": Y + rng.normal(0, 2.0, Y.shape), "ar": Y + noise,
         "ar-diff": Y + noise * 0.999 + rng.normal(0, 0.05, Y.shape),  # ties with the AR
         "arx": Y + 0.5 * noise}  # clearly better
    errors = choose(f, Y, val)[1]
    baselines = ("persistence", "seasonal", "ar")
    rival, base, best, margin = linear_rival(errors, f, Y, val, baselines, ("ar-diff",))
    assert (rival, base, best) == ("ar", "ar", "ar-diff") and abs(margin) < 1
    rival, base, best, margin = linear_rival(errors, f, Y, val, baselines, ("ar-diff", "arx"))
    assert (rival, base, best) == ("arx", "ar", "arx") and margin < -5
    assert linear_rival(errors, f, Y, val, baselines, ()) == ("ar", "ar", None, None)
    worse = dict(f, **{"ar-diff": Y + 1.5 * noise})
    errors = choose(worse, Y, val)[1]
    rival, _, best, margin = linear_rival(errors, worse, Y, val, baselines, ("ar-diff",))
    assert (rival, best) == ("ar", "ar-diff") and margin > 1


def test_the_mean_of_two_forecasts_errs_less_than_the_worse_on_any_period():
    """Why a tie is averaged: per window and per horizon, the squared error of the mean is at
    most the mean of the two squared errors, so its RMSE over any period is at most the
    larger RMSE, whichever of the two that period favours."""
    rng = np.random.default_rng(13)
    Y = rng.normal(size=(300, 6))
    a, b = Y + rng.normal(0, 1, Y.shape), Y + 2.0 + rng.normal(0, 0.2, Y.shape)
    for period in (slice(0, 300), slice(10, 40), slice(250, 260)):
        mean = rmse_per_horizon((a[period] + b[period]) / 2, Y[period])
        worse = np.maximum(rmse_per_horizon(a[period], Y[period]),
                           rmse_per_horizon(b[period], Y[period]))
        assert np.all(mean <= worse)
        assert mean.mean() < 0.8 * worse.mean()  # errors of opposite kinds partly cancel


def test_expected_best_of_is_the_mean_maximum_of_normal_draws():
    rng = np.random.default_rng(5)
    draws = rng.standard_normal((400_000, 4))
    for m in (1, 2, 3, 4):
        assert expected_best_of(m) == pytest.approx(draws[:, :m].max(axis=1).mean(), abs=0.006)
    assert expected_best_of(2) == pytest.approx(1 / np.sqrt(np.pi), abs=1e-6)  # closed form
    assert ensemble_margin(3) == pytest.approx(1 + expected_best_of(3))


def test_prefer_ensemble_discounts_the_luck_of_the_best_of_several_networks():
    """Three equally good networks: the one luck favoured on the validation windows gives way
    to their mean; a network better in truth keeps its place; the rule leaves the others."""
    rng = np.random.default_rng(11)
    Y = rng.normal(size=(600, 3))
    val = slice(0, 300)
    singles = ("a", "b", "c")
    f = {k: Y + rng.normal(0, 1.0, Y.shape) for k in singles}
    f["ensemble"] = np.mean([f[k] for k in singles], axis=0)
    f["ar"] = Y + rng.normal(0, 1.2, Y.shape)
    lucky = min(singles, key=lambda k: np.mean((f[k][val] - Y[val]) ** 2))
    chosen, margin = prefer_ensemble(lucky, f, Y, val, singles, "ensemble")
    assert chosen == "ensemble" and margin > 0  # the mean of three beats each one here

    f["c"] = Y + rng.normal(0, 0.3, Y.shape)  # truly better than the others and their mean
    chosen, margin = prefer_ensemble("c", f, Y, val, singles, "ensemble")
    assert chosen == "c" and margin < -ensemble_margin(3)

    # b ahead of the ensemble by 1.4 standard errors: past the one-SE rule, not past this one
    ens, noise = f["ensemble"], rng.normal(0, 0.3, Y.shape)
    lo, hi = 0.5, 1.0  # b = Y + s (ensemble - Y) + noise; bisect s
    for _ in range(60):
        s = (lo + hi) / 2
        b = Y + s * (ens - Y) + noise
        lo, hi = (s, hi) if margin_in_standard_errors(b[val], ens[val], Y[val]) < -1.4 else (lo, s)
    f["b"] = b
    margin = margin_in_standard_errors(b[val], ens[val], Y[val])
    assert margin == pytest.approx(-1.4, abs=0.01)
    assert prefer_ensemble("b", f, Y, val, singles, "ensemble") == ("ensemble", margin)

    assert prefer_ensemble("ar", f, Y, val, singles, "ensemble") == ("ar", None)
    assert prefer_ensemble("ensemble", f, Y, val, singles, "ensemble") == ("ensemble", None)
    assert prefer_ensemble("b", f, Y, slice(0, 3), singles, "ensemble") == ("ensemble", 0.0)
    assert prefer_ensemble("b", {"b": b}, Y, val, singles, "ensemble") == ("b", None)


def test_the_report_says_which_way_each_lead_goes_and_what_it_decided():
    lines = []
    m = {"val_rmse_mean": {"ar-diff": 2.5, "lstm": 2.4, "ensemble": 2.7},
         "chosen": "ensemble + ar-diff", "baselines": [], "horizon": 0,
         "test_rmse_per_horizon": {"model": []}, "test_rmse_mean": {"model": 1.0},
         "test_mase": {"model": 1.0}, "winner_per_horizon": [], "best_baseline": "model",
         "model_vs_best_baseline": 1.0,
         "validation_rule": {"lowest": "lstm", "ensemble_margin_se": -0.93,
                             "val_baseline": "ar24", "fitted": "ar-diff",
                             "fitted_margin_se": -1.7,
                             "contender": "ensemble", "rival": "ar-diff", "margin_se": 0.51,
                             "partner": "ar-diff"}}
    forecast.print_table(m, lines.append)
    text = "\n".join(lines)
    assert "lstm beats the ensemble by 0.93 standard errors" in text
    assert "short of that, so the ensemble takes its place" in text
    assert "ar-diff beats ar24 by 1.70 standard errors on the validation windows: so ar-diff " \
        "is the linear rival" in text
    assert "ensemble trails ar-diff by 0.51 standard errors on the validation windows: short " \
        "of a lead of 1, so the model is the mean of the two" in text
    m["validation_rule"].update(ensemble_margin_se=-2.5, contender="lstm", margin_se=-3.0,
                                partner=None)
    lines.clear()
    forecast.print_table(m, lines.append)
    assert "lstm beats the ensemble by 2.50 standard errors" in lines[1] and "kept)" in lines[1]
    assert "lstm beats ar-diff by 3.00 standard errors" in lines[3] and "kept alone" in lines[3]
    m["validation_rule"].update(margin_se=-1.5, needed_se=ensemble_margin(3), partner="ar-diff")
    lines.clear()
    forecast.print_table(m, lines.append)  # the best of three networks needs 1.85 here too
    assert "lstm beats ar-diff by 1.50 standard errors on the validation windows: short of a " \
        "lead of 1.85, so the model is the mean of the two" in lines[3]
    m["validation_rule"].update(margin_se=-3.0, needed_se=None, partner=None)
    m["validation_rule"].update(fitted_margin_se=-0.4, rival="ar24")
    lines.clear()
    forecast.print_table(m, lines.append)
    assert "ar-diff beats ar24 by 0.40 standard errors on the validation windows: short of a " \
        "lead of 1, so ar24 is the linear rival" in lines[2]
    m["validation_rule"].update(ensemble_margin_se=None, lowest="ar-diff", contender="ar-diff",
                                margin_se=-0.4, partner="ar24")
    lines.clear()
    forecast.print_table(m, lines.append)  # no rival line: the contender is linear itself
    assert len([x for x in lines if x.startswith("  (")]) == 1
    assert "ar-diff beats ar24 by 0.40" in lines[1] and "mean of the two" in lines[1]


TINY = dict(epochs=3, hidden=4, seeds=1, quiet=True)


def test_the_choice_never_looks_at_the_test_period(tmp_path):
    """Shuffling the test period, every value a test window forecasts, changes no validation
    error and not the choice; the test errors do change (the shuffle reached the test
    period).  The test windows' inputs reach back before it, as a forecast's do."""
    rng = np.random.default_rng(7)
    t = np.arange(300)
    y = np.sin(t / 5) * 3 + 0.02 * t + rng.normal(0, 0.3, len(t))
    W, H = 12, 4
    first = forecast.run(csv=str(_csv(tmp_path / "a.csv", y)), column="y", window=W,
                         horizon=H, **TINY)
    test = chronological_split(len(make_windows(y, W, H)[0]), gap=H - 1)[2]
    shuffled = y.copy()
    tail = slice(test.start + W, None)  # the first test window's first target on
    shuffled[tail] = rng.permutation(shuffled[tail])
    second = forecast.run(csv=str(_csv(tmp_path / "b.csv", shuffled)), column="y", window=W,
                          horizon=H, **TINY)
    assert second["val_rmse_mean"] == first["val_rmse_mean"]
    assert second["chosen"] == first["chosen"]
    assert second["validation_rule"] == first["validation_rule"]
    assert second["season"] == first["season"]
    assert second["test_rmse_mean"]["model"] != first["test_rmse_mean"]["model"]


@pytest.mark.parametrize("scale", [1e-90, 1e-20, 1e20, 1e90])
def test_the_command_chooses_the_same_in_any_units(scale, tmp_path):
    """The same series in other units gets the same choice and the same errors in those units:
    the networks read standardised values and the linear fits solve on standardised columns.
    Float32 networks may round differently, so the errors agree to 1e-3, not to the bit."""
    rng = np.random.default_rng(4)
    t = np.arange(300)
    y = 20 + np.cumsum(rng.normal(0, 0.5, len(t))) + 3 * np.sin(2 * np.pi * t / 12)
    runs = [forecast.run(csv=str(_csv(tmp_path / f"{k}.csv", k * y)), column="y", window=24,
                         horizon=4, **TINY) for k in (1.0, scale)]
    assert runs[1]["chosen"] == runs[0]["chosen"]
    for name, value in runs[0]["val_rmse_mean"].items():
        assert runs[1]["val_rmse_mean"][name] / scale == pytest.approx(value, rel=1e-3), name
    assert runs[1]["model_vs_best_baseline"] == pytest.approx(runs[0]["model_vs_best_baseline"],
                                                              rel=1e-3)


@pytest.mark.parametrize("shape", ["trend", "sine"])
def test_default_command_forecasts_a_pure_trend_and_a_pure_sine(shape, tmp_path):
    t = np.arange(150, dtype=np.float64)
    y = 3.0 + 0.5 * t if shape == "trend" else 10 + 4 * np.sin(2 * np.pi * t / 12)
    m = forecast.run(csv=str(_csv(tmp_path / "s.csv", y)), column="y", window=24,
                     horizon=6, epochs=10, quiet=True)  # default model, fewer epochs
    assert m["test_rmse_mean"]["model"] < 1e-3 * np.ptp(y), m["test_rmse_mean"]
    if shape == "sine":
        assert m["season"] == 12


def test_a_daily_cycle_that_leaves_its_training_range_is_forecast_from_where_it_is(tmp_path):
    """The issue's hourly case: a daily cycle on a level that wanders, then rises after the
    training period.  The AR reverts to the training mean; the default command has the AR of
    the changes among its candidates, and beats every baseline it prints."""
    rng = np.random.default_rng(5)
    t = np.arange(1500)
    level = np.zeros(len(t))
    for i in range(1, len(t)):
        level[i] = 0.98 * level[i - 1] + rng.normal(0, 0.3)
    y = 5 * np.sin(2 * np.pi * t / 24) + level + 0.02 * np.maximum(t - 1000, 0)
    m = forecast.run(csv=str(_csv(tmp_path / "h.csv", y)), column="y", window=48,
                     horizon=24, **TINY)
    assert m["season"] == 24
    rmse = m["test_rmse_mean"]
    assert rmse["ar-diff"] < 0.8 * rmse["ar48"], rmse
    assert m["model_vs_best_baseline"] < 1.0, (m["chosen"], rmse)


def test_the_shortest_series_accepted_is_one_that_the_command_can_split(tmp_path):
    """W + H - 1 + 26 values for H = 4: 26 windows, the fewest that leave the validation
    period one window once its last H - 1, whose targets reach into the test period, are
    dropped.  One value fewer stops before any training, with the count needed and why."""
    W, H = 12, 4
    args = forecast.parse_options(forecast.add_arguments, forecast.EPOCHS,
                                  overrides=dict(window=W, horizon=H))
    assert forecast.min_length(args)[0] == W + H - 1 + 26
    y = np.sin(np.arange(W + H - 1 + 26) / 3)
    m = forecast.run(csv=str(_csv(tmp_path / "a.csv", y)), column="y", window=W, horizon=H,
                     **TINY)
    assert (m["n_val"], m["n_test"]) == (1, 4) and np.isfinite(m["test_rmse_mean"]["model"])
    with pytest.raises(ValueError, match=rf"b.csv:{W + H + 25}: .*40 values, at least 41 "
                                         r"needed \(26 windows of 12 \+ 4 values: training, "):
        forecast.run(csv=str(_csv(tmp_path / "b.csv", y[:-1])), column="y", window=W,
                     horizon=H, **TINY)


def test_a_constant_series_is_forecast_exactly_and_ties_its_baselines(tmp_path):
    m = forecast.run(csv=str(_csv(tmp_path / "c.csv", np.full(80, 5.0))), column="y",
                     window=12, horizon=4, **TINY)
    assert m["test_rmse_mean"][m["best_baseline"]] == 0
    assert m["model_vs_best_baseline"] == (1.0 if m["test_rmse_mean"]["model"] == 0
                                           else float("inf"))
    assert forecast.error_ratio(0.0, 0.0) == 1.0 and forecast.error_ratio(2.0, 4.0) == 0.5


def test_the_baselines_are_candidates_so_a_level_shift_falls_back_to_persistence(tmp_path):
    """A level that jumps during validation and stays: the AR fitted before the jump pulls
    its forecasts back to the old level.  Persistence is the right forecast; it is a candidate
    like the other baselines, so the validation period picks it and the model is exactly as
    good as the best baseline."""
    rng = np.random.default_rng(3)
    t = np.arange(200)
    y = np.where(t < 150, 0.0, 10.0) + rng.normal(0, 0.1, len(t))
    m = forecast.run(csv=str(_csv(tmp_path / "s.csv", y)), column="y", window=12, horizon=4,
                     **TINY)
    assert m["chosen"] == "persistence", m["val_rmse_mean"]
    assert m["model_vs_best_baseline"] == 1.0
    rmse = m["test_rmse_mean"]
    assert rmse["ar12"] > 5 * rmse["persistence"], rmse


def test_a_saved_model_that_chose_a_baseline_forecasts_as_that_baseline(tmp_path):
    """--load reproduces the test errors of persistence and of the seasonal naive forecast
    (whose period the checkpoint keeps) when either is the saved choice."""
    rng = np.random.default_rng(4)
    t = np.arange(150)
    y = 5 * np.sin(2 * np.pi * t / 6) + rng.normal(0, 0.3, len(t))
    path = tmp_path / "m.npz"
    m = forecast.run(csv=str(_csv(tmp_path / "s.csv", y)), column="y", window=12, horizon=3,
                     save=str(path), **TINY)
    assert m["season"] == 6
    model = engine.load(path)
    X, Y = make_windows(y, 12, 3)
    test = chronological_split(len(X))[2]
    args = forecast.parse_options(forecast.add_arguments, 1, None,
                                  {"load": str(path), "window": 12, "horizon": 3})
    for chosen, key in (("persistence", "persistence"), ("seasonal", "seasonal6")):
        model.metadata = dict(model.metadata, chosen=chosen)
        _, predict = forecast.saved_forecaster(args, model, 0)
        got = rmse_per_horizon(predict(X[test, :, 0], None), Y[test])
        np.testing.assert_allclose(got, m["test_rmse_per_horizon"][key], rtol=1e-12)
    model.metadata = dict(model.metadata, chosen="seasonal", season=13)
    with pytest.raises(AppError, match="season 13 must be in 1..12"):
        forecast.saved_forecaster(args, model, 0)


def test_exponential_smoothing_is_a_baseline_and_a_saved_choice_replays_it(tmp_path):
    """--ets (statsmodels installed) puts damped Holt-Winters, fitted on the training values,
    beside the other baselines and among the candidates; a checkpoint that chose it forecasts
    by running it through the series given to --load.  Without --ets it is left out."""
    pytest.importorskip("statsmodels")
    rng = np.random.default_rng(6)
    t = np.arange(160)
    y = 20 + 0.1 * t + 4 * np.sin(2 * np.pi * t / 8) + rng.normal(0, 0.3, len(t))
    path = tmp_path / "m.npz"
    m = forecast.run(csv=str(_csv(tmp_path / "s.csv", y)), column="y", window=16, horizon=4,
                     save=str(path), ets=True, **TINY)
    assert "ets" in m["baselines"] and "ets" in m["val_rmse_mean"] and m["season"] == 8
    plain = forecast.run(csv=str(tmp_path / "s.csv"), column="y", window=16, horizon=4, **TINY)
    assert "ets" not in plain["baselines"] and "ets" not in plain["val_rmse_mean"]
    model = engine.load(path)
    model.metadata = dict(model.metadata, chosen="ets")
    model.save(path)
    applied = forecast.run(load=str(path), csv=str(tmp_path / "s.csv"), column="y",
                           quiet=True)
    X, Y = make_windows(y, 16, 4)
    test = chronological_split(len(X))[2]
    hw = forecast.HoltWinters.from_state(model.metadata["ets"], 8)
    every = hw.forecast_origins(y, 16, 4)
    np.testing.assert_allclose(applied["rmse_mean"]["model"],
                               rmse_per_horizon(every[:len(X)], Y).mean(), rtol=1e-12)
    np.testing.assert_allclose(rmse_per_horizon(every[test], Y[test]),
                               m["test_rmse_per_horizon"]["ets"], rtol=1e-12)
    np.testing.assert_allclose(applied["next_forecast"], every[-1], rtol=1e-12)


def test_every_candidate_forecasts_after_the_series_as_its_checkpoint_does(monkeypatch,
                                                                          tmp_path):
    """forecast_next, which gives the training run's next values, agrees with --load for
    every candidate the checkpoint can hold (baselines, linear fits, ETS, the networks)."""
    pytest.importorskip("statsmodels")
    rng = np.random.default_rng(7)
    t = np.arange(200)
    y = 20 + 0.05 * t + 4 * np.sin(2 * np.pi * t / 8) + rng.normal(0, 0.3, len(t))
    csv, path = _csv(tmp_path / "s.csv", y), tmp_path / "m.npz"
    seen = []
    original = forecast.forecast_next
    monkeypatch.setattr(forecast, "forecast_next",
                        lambda *a: seen.append(a) or original(*a))
    m = forecast.run(csv=str(csv), column="y", window=16, horizon=4, save=str(path), ets=True,
                     **TINY)
    assert m["season"] == 8
    _, values, dates, d, args, fits = seen[0]
    model = engine.load(path)
    # The checkpoint holds one network: the choice's, or the ensemble beside a linear one.
    for name in ("persistence", "seasonal", "ar", "ar-diff", "ets", model.metadata["network"]):
        model.metadata = dict(model.metadata, chosen=name, partner=None)
        model.save(path)
        applied = forecast.run(load=str(path), csv=str(csv), column="y", quiet=True)
        np.testing.assert_allclose(original(name, values, dates, d, args, fits),
                                   applied["next_forecast"], rtol=1e-9, err_msg=name)


def test_ets_without_statsmodels_stops_before_reading_the_data(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "statsmodels", None)
    with pytest.raises(AppError, match=r"--ets needs statsmodels: pip install statsmodels"):
        forecast.run(csv=str(tmp_path / "absent.csv"), column="y", ets=True, **TINY)
