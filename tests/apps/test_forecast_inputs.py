"""forecast with several inputs (--columns/--target) and calendar inputs (--calendar): the
calendar against Python's datetime, the readers, the normaliser's covariate channels, a
target led by another column and a load cycling by weekday, saved and loaded, and the
errors."""
import datetime

import numpy as np
import pytest

import engine
from engine.apps import forecast
from engine.apps.baselines import rmse_per_horizon
from engine.apps.cli import main
from engine.apps.datasets import read_dated_columns
from engine.apps.forecasters import (NetForecaster, Normaliser, build_network,
                                     calendar_cycles, calendar_features, mix)

RUN = dict(seeds=1, epochs=25, quiet=True)


def test_calendar_features_match_pythons_datetime():
    rng = np.random.default_rng(0)
    minutes = rng.integers(0, 60 * 24 * 365 * 60, 200)  # 1970 to 2030
    dates = np.datetime64("1970-01-01T00:00") + minutes.astype("timedelta64[m]")
    got = calendar_features(dates, ["hour of day", "day of week", "day of year"])
    for row, m in zip(got, minutes):
        d = datetime.datetime(1970, 1, 1) + datetime.timedelta(minutes=int(m))
        jan1 = datetime.datetime(d.year, 1, 1)
        phases = [(d.hour * 60 + d.minute) / 1440, d.weekday() / 7,
                  (d - jan1).total_seconds() / 60 / (365.2425 * 1440)]
        want = [f(2 * np.pi * p) for p in phases for f in (np.sin, np.cos)]
        np.testing.assert_allclose(row, want, atol=1e-12)


@pytest.mark.parametrize("step, span, cycles", [
    ("h", 24 * 21, ["hour of day", "day of week"]),
    ("h", 24 * 800, ["hour of day", "day of week", "day of year"]),
    ("D", 400, ["day of week"]),
    ("D", 1000, ["day of week", "day of year"]),
    ("W", 200, ["day of year"]),
    ("M", 30 * 12, ["day of year"]),
    ("D", 10, []),
    ("Y", 50, [])])
def test_calendar_cycles_are_those_the_step_and_span_can_show(step, span, cycles):
    start = np.datetime64("2001-01-01", step) if step != "Y" else np.datetime64("1900", "Y")
    assert calendar_cycles(start + np.arange(span)) == cycles


def test_read_dated_columns_drops_a_row_missing_in_any_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("time,a,b\n2020-01-01 01:30,1,10\n2020-01-01 02:30,,20\n"
                    "2020-01-01 03:30,3,\n2020-01-01 04:30,4,40\n2020-01-01 05:30,5,50\n")
    values, dates = read_dated_columns(path, ["b", "a"], missing="drop", unit="m")
    np.testing.assert_array_equal(values, [[10, 1], [40, 4], [50, 5]])
    assert str(dates[0]) == "2020-01-01T01:30" and str(dates[-1]) == "2020-01-01T05:30"
    values, _ = read_dated_columns(path, ["a", "b"], missing="interpolate")
    np.testing.assert_allclose(values[:, 0], [1, 2, 3, 4, 5])
    np.testing.assert_allclose(values[:, 1], [10, 20, 30, 40, 50])


def test_normaliser_covariate_channels_round_trip_and_mix():
    rng = np.random.default_rng(1)
    X, Z = rng.normal(size=(30, 6)).cumsum(1), rng.normal(3, 2, size=(30, 6, 2))
    n = Normaliser.fit(X, rng.normal(size=(30, 2)), change=True, train_values=X.ravel(), Z=Z)
    assert n.columns == [0, 1, 2, 3]
    x = n.inputs(X, Z)
    assert x.shape == (30, 6, 4)
    np.testing.assert_allclose(x[..., 2:].reshape(-1, 2).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(x[..., 2:].reshape(-1, 2).std(0), 1, atol=1e-5)
    assert Normaliser.from_state(n.state()) == n
    with pytest.raises(ValueError, match=r"covariate windows, shape \(30, 6, 2\)"):
        n.inputs(X)
    for bad in ([[1.0], [0.0]], [[1.0, 2.0], [1.0]], [[], []]):
        with pytest.raises(ValueError):
            Normaliser.from_state(dict(n.state(), covariates=bad))
    # A mix of members reading the covariates is the mean of the members.
    members = []
    for seed, norm in enumerate([n, Normaliser(n.input_scale, 0.5, None, n.covariates)]):
        model = build_network(len(norm.columns), 4, 2, 1e-2, "cpu", seed)
        model.fit(norm.inputs(X, Z), rng.normal(size=(30, 2)).astype(np.float32), epochs=2,
                  verbose=False)
        members.append(NetForecaster(model, norm, None, "direct"))
    want = sum(f.predict(X, 2, Z) for f in members) / 2
    np.testing.assert_allclose(mix(members, 6).predict(X, 2, Z), want, rtol=1e-5, atol=1e-5)


@pytest.fixture
def led_csv(tmp_path):
    """y follows x three days later: only a forecaster that reads x can see y's next days."""
    rng = np.random.default_rng(2)
    x = np.zeros(700)
    for t in range(1, len(x)):
        x[t] = 0.9 * x[t - 1] + rng.normal()
    y = 2 * np.roll(x, 3) + 0.3 * rng.normal(size=len(x))
    days = np.datetime64("2020-01-01") + np.arange(len(x))
    path = tmp_path / "led.csv"
    path.write_text("date,y,x\n" + "".join(f"{d},{a:.5f},{b:.5f}\n"
                                           for d, a, b in zip(days, y, x)))
    return path


def test_a_leading_column_is_read(led_csv, tmp_path):
    one = forecast.run(csv=str(led_csv), column="y", window=12, horizon=3, **RUN)
    both = forecast.run(csv=str(led_csv), columns="x,y", target="y", window=12, horizon=3,
                        save=str(tmp_path / "m.npz"), **RUN)
    assert "arx" in both["val_rmse_mean"] and "arx" not in one["val_rmse_mean"]
    # y's next three values are 2 x's last three plus noise 0.3: within twice the noise.
    assert both["test_rmse_mean"]["model"] < 0.6 < 0.3 * one["test_rmse_mean"]["model"]
    assert both["model_vs_best_baseline"] < 0.3


def test_the_calendar_carries_a_weekday_the_window_cannot_see(tmp_path):
    """An hourly load, lower on weekends, forecast from one day: only the day of week tells a
    Friday's next day from a Monday's."""
    hours = np.datetime64("2021-01-04T00:00") + np.arange(24 * 7 * 10).astype("timedelta64[h]")
    t = np.arange(len(hours))
    weekend = (hours.astype("datetime64[D]").astype(np.int64) + 3) % 7 >= 5
    load = 10 + 3 * np.sin(2 * np.pi * t / 24) - 4 * weekend
    load += 0.3 * np.random.default_rng(3).normal(size=len(t))
    path = tmp_path / "hourly.csv"
    path.write_text("timestamp,load\n" + "".join(f"{str(h).replace('T', ' ')},{v:.4f}\n"
                                                 for h, v in zip(hours, load)))
    small = dict(RUN, hidden=16, epochs=15)
    plain = forecast.run(csv=str(path), column="load", window=24, horizon=24, **small)
    dated = forecast.run(csv=str(path), column="load", window=24, horizon=24, calendar=True,
                         save=str(tmp_path / "c.npz"), **small)
    assert dated["test_rmse_mean"]["model"] < 0.6 * plain["test_rmse_mean"]["model"]
    # The checkpoint reproduces the test forecasts, the calendar made anew from the dates.
    model = engine.load(tmp_path / "c.npz")
    assert model.metadata["calendar"] == ["hour of day", "day of week"]
    args = forecast.parse_options(forecast.add_arguments, 1, None, {
        "load": str(tmp_path / "c.npz"), "csv": str(path), "column": "load",
        "window": 24, "horizon": 24, "calendar": True})
    values, _, dates, _, _, _ = forecast.load_series(args)
    d = forecast.prepare(values, dates, args, lambda *a: None)
    test = d["split"][2]
    meta = model.metadata
    for chosen in ("arx", meta["network"]):  # as if each had been chosen
        model.metadata = dict(meta, chosen=chosen)
        _, predict = forecast.saved_forecaster(args, model, 0, 4)
        np.testing.assert_allclose(rmse_per_horizon(predict(d["X"][test], d["Z"][test]),
                                                    d["Y"][test]),
                                   dated["test_rmse_per_horizon"][chosen], rtol=1e-5)
    model.metadata = meta
    # --load: every window of the series, and the day after its end.
    again = forecast.apply_saved(args, lambda *a: None)
    assert again["rmse_mean"]["model"] < 0.6 * plain["test_rmse_mean"]["model"]
    assert np.isfinite(again["next_forecast"]).all() and len(again["next_forecast"]) == 24


def test_saved_multivariate_models_reproduce_their_test_forecasts(led_csv, tmp_path,
                                                                  capsys):
    path = tmp_path / "m.npz"
    m = forecast.run(csv=str(led_csv), columns="y,x", target="y", window=8, horizon=2,
                     save=str(path), **dict(RUN, epochs=3))
    model = engine.load(path)
    meta = model.metadata
    assert meta["columns"] == ["y", "x"] and meta["calendar"] == []
    args = forecast.parse_options(forecast.add_arguments, 1, None, {
        "load": str(path), "window": 8, "horizon": 2, "csv": str(led_csv), "columns": "y,x",
        "target": "y"})
    values, _, dates, _, _, _ = forecast.load_series(args)
    d = forecast.prepare(values, dates, args, lambda *a: None)
    test = d["split"][2]
    for chosen in ("ar", "ar-diff", "arx", meta["network"]):  # as if each had been chosen
        model.metadata = dict(meta, chosen=chosen)
        _, predict = forecast.saved_forecaster(args, model, 1)
        key = {"ar": "ar8"}.get(chosen, chosen)
        got = rmse_per_horizon(predict(d["X"][test], d["Z"][test]), d["Y"][test])
        np.testing.assert_allclose(got, m["test_rmse_per_horizon"][key], rtol=1e-5)
    # --load without the file of its columns, or with a file that lacks one: refused.
    assert main(["forecast", "--load", str(path), "--quiet"]) == 2
    assert "reads the columns ['y', 'x']: give --csv FILE" in capsys.readouterr().err
    other = tmp_path / "other.csv"
    other.write_text("y,z\n" + "".join(f"{v},{v}\n" for v in range(50)))
    assert main(["forecast", "--load", str(path), "--csv", str(other), "--quiet"]) == 2
    assert "'x'" in capsys.readouterr().err
    assert main(["forecast", "--load", str(path), "--csv", str(led_csv), "--column", "x",
                 "--quiet"]) == 2  # it forecasts y, not the column named
    assert "--column 'x': " in capsys.readouterr().err
    assert main(["forecast", "--load", str(path), "--csv", str(led_csv), "--column", "y",
                 "--quiet"]) == 0


@pytest.mark.parametrize("options", [
    dict(column="y"), dict(columns="x,y", target="y"), dict(column="y", calendar=True),
    dict(column="y", mode="recursive"), dict(column="y", ets=True)])
def test_the_training_run_forecasts_the_values_after_the_series(led_csv, tmp_path, options):
    """The report's next values are the saved model's, as --load gives them on the same
    file, whatever the inputs and the choice (its partner included)."""
    if options.get("ets"):
        pytest.importorskip("statsmodels")
    path = tmp_path / "m.npz"
    trained = forecast.run(csv=str(led_csv), window=12, horizon=3, save=str(path),
                           **options, **dict(RUN, epochs=3))
    applied = forecast.run(load=str(path), csv=str(led_csv), column="y", quiet=True)
    assert applied["chosen"] == trained["chosen"] and len(trained["next_forecast"]) == 3
    np.testing.assert_allclose(trained["next_forecast"], applied["next_forecast"], rtol=1e-9)


@pytest.mark.parametrize("argv, words", [
    (["--csv", "{led}", "--columns", "y,x"], "--columns needs --target NAME"),
    (["--csv", "{led}", "--columns", "y,x", "--target", "z"], "--target 'z' is not one of"),
    (["--csv", "{led}", "--columns", "y,y", "--target", "y"], "distinct column names"),
    (["--csv", "{led}", "--columns", "y,", "--target", "y"], "an empty name between or after"),
    (["--csv", "{led}", "--columns", "y,x", "--target", "y", "--column", "x"], "disagree"),
    (["--columns", "y,x", "--target", "y"], "name columns of --csv FILE"),
    (["--csv", "{led}", "--columns", "y,x", "--target", "y", "--mode", "recursive"],
     "cannot forecast other inputs"),
    (["--csv", "{led}", "--columns", "y,nope", "--target", "y"], "nope"),
    (["--csv", "{plain}", "--column", "y", "--calendar"], "--calendar needs dates"),
    (["--csv", "{led}", "--column", "y", "--calendar", "--window", "5", "--horizon", "2"],
     None)])
def test_bad_inputs_are_refused_before_training(led_csv, tmp_path, capsys, argv, words):
    plain = tmp_path / "plain.csv"
    plain.write_text("y\n" + "".join(f"{v}\n" for v in range(200)))
    argv = [a.format(led=led_csv, plain=plain) for a in argv]
    if words is None:  # daily dates over two years: the day of week and of year
        m = forecast.run(**{"csv": str(led_csv), "column": "y", "calendar": True, "window": 5,
                            "horizon": 2, **RUN, "epochs": 1})
        assert m["chosen"] and m["val_rmse_mean"]["arx"] > 0
        return
    assert main(["forecast", "--quiet", "--epochs", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err, err
