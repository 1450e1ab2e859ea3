"""The four applications end to end on tiny settings: the Python entry, ``python -m engine``,
user files they have never seen, bad data (exit 2 with FILE:LINE), save then sample."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import engine
from engine.apps import classify, forecast, stocks, text
from engine.apps.baselines import rmse_per_horizon
from engine.apps.cli import main
from engine.apps.common import AppError
from engine.apps.datasets import EXPECTED_DATES, read_csv_series
from engine.apps.windows import (CharVocab, StandardScaler, chronological_split,
                                 make_windows)

TINY = dict(epochs=1, hidden=8, quiet=True)
FTINY = dict(TINY, seeds=1)  # forecast trains one network per candidate
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------ user files
@pytest.fixture
def series_csv(tmp_path):
    t = np.arange(160)
    y = 10 + 5 * np.sin(t / 6) + np.random.default_rng(0).normal(0, 0.3, len(t))
    path = tmp_path / "level.csv"
    path.write_text("month,level\n" + "".join(f"{i},{v:.3f}\n" for i, v in zip(t, y)))
    return path


@pytest.fixture
def prices_csv(tmp_path):
    dates = np.arange("2020-01-01", "2020-10-01", dtype="datetime64[D]")
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(dates))))
    path = tmp_path / "prices.csv"
    path.write_text("Date,Close\n" + "".join(f"{d},{c:.4f}\n" for d, c in zip(dates, close)))
    return path


def test_plots_show_dollar_signs_in_the_users_names_as_written(tmp_path):
    """'$5#3$' would be TeX math to matplotlib (a ParseException in tight_layout)."""
    rng = np.random.default_rng(9)
    names = {"a": "$5#3$", "b": "b", "c": "$c"}
    rows = [(x, names[y]) for x, y in _ts_rows(rng, 24)]
    labels = tuple(names.values())
    train, test = _ts(tmp_path / "tr.ts", rows, labels), _ts(tmp_path / "te.ts", rows[:9], labels)
    m = classify.run(train=str(train), test=str(test), out=str(tmp_path / "o"), **TINY)
    assert m["classes"] == list(labels)
    folder = tmp_path / "$x#$"
    folder.mkdir()
    story = folder / "story.txt"
    story.write_text("The quick brown fox jumps over the lazy dog. " * 80, encoding="utf-8")
    text.run(text=str(story), seq=20, minutes=0.01, out=str(tmp_path / "t"), **TINY)
    assert (tmp_path / "t" / "text.png").stat().st_size > 1000


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text("The quick brown fox jumps over the lazy dog. " * 80, encoding="utf-8")
    return path


def _ts(path, rows, labels=("a", "b", "c")):
    head = (f"@problemName tiny\n@univariate false\n@dimensions 2\n@equalLength false\n"
            f"@classLabel true {' '.join(labels)}\n@data\n")
    lines = [":".join(",".join(f"{v:.3f}" for v in ch) for ch in x.T) + f":{y}"
             for x, y in rows]
    path.write_text(head + "\n".join(lines) + "\n")
    return path


def _ts_rows(rng, n):
    """n labelled sequences of 4-8 steps, 2 channels, class k centred on k."""
    out = []
    for i in range(n):
        k = i % 3
        x = rng.normal(k, 0.5, (int(rng.integers(4, 9)), 2))
        out.append((x, "abc"[k]))
    return out


@pytest.fixture
def ts_files(tmp_path):
    rng = np.random.default_rng(2)
    return _ts(tmp_path / "tr.ts", _ts_rows(rng, 24)), _ts(tmp_path / "te.ts", _ts_rows(rng, 9))


def _files_ok(out, name, keys):
    m = json.loads((out / f"{name}.json").read_text())
    assert (out / f"{name}.png").stat().st_size > 1000
    for key in keys:
        assert key in m, key
    return m


# ------------------------------------------------------------------------------ Python entry
def test_forecast_user_csv(series_csv, tmp_path):
    out = tmp_path / "o"
    m = forecast.run(csv=str(series_csv), column="level", window=12, horizon=3, out=str(out),
                     **FTINY)
    m = _files_ok(out, "forecast", ["test_rmse_per_horizon", "test_rmse_mean", "test_mase",
                                    "chosen", "val_rmse_mean", "winner_per_horizon"])
    seasonal = {f"seasonal{m['season']}"} if m["season"] else set()
    simple = {"persistence", "ar12", "ar-diff"} | seasonal
    assert set(m["val_rmse_mean"]) == simple | {"lstm", "lstm-norm", "lstm+ar", "ensemble"}
    rule = m["validation_rule"]  # the lowest, else the ensemble, else the linear rival
    assert rule["lowest"] == min(m["val_rmse_mean"], key=m["val_rmse_mean"].get)
    if rule["ensemble_margin_se"] is None:
        assert rule["contender"] == rule["lowest"]
    else:
        assert rule["lowest"] in ("lstm", "lstm-norm", "lstm+ar") and rule["contender"] == \
            (rule["lowest"] if rule["ensemble_margin_se"] <= -1.85 else "ensemble")
    baselines = {"persistence", "ar12"} | seasonal
    assert rule["val_baseline"] == min(baselines, key=m["val_rmse_mean"].get)
    assert rule["fitted"] == "ar-diff"  # the only fitted linear candidate here
    linear = "ar-diff" if rule["fitted_margin_se"] <= -1 else rule["val_baseline"]
    if rule["contender"] in baselines:
        assert rule["rival"] is None and m["chosen"] == rule["contender"]
    else:
        assert rule["rival"] == (rule["val_baseline"] if rule["contender"] == "ar-diff" else
                                 linear)
        single = rule["contender"] in ("lstm", "lstm-norm", "lstm+ar")  # the best of 3
        assert rule["needed_se"] == pytest.approx(1.85 if single else 1.0, abs=0.005)
        assert rule["partner"] == (None if rule["margin_se"] <= -rule["needed_se"] else
                                   rule["rival"])
    parts = [rule["contender"]] + ([rule["partner"]] if rule["partner"] else [])
    assert m["chosen"] == " + ".join(parts)
    if len(parts) == 1:
        assert m["test_rmse_mean"]["model"] == m["test_rmse_mean"][m["chosen"]]
    else:  # the mean of two errs less than the worse of them at every horizon
        worse = np.max([m["test_rmse_per_horizon"][k] for k in parts], axis=0)
        assert np.all(np.array(m["test_rmse_per_horizon"]["model"]) <= worse + 1e-12)
    assert set(m["baselines"]) == {"persistence", "ar12"} | seasonal
    assert all(len(v) == 3 for v in m["test_rmse_per_horizon"].values())
    assert set(m["winner_per_horizon"]) <= {"model", *m["baselines"]}


def test_forecast_epoch_windows_trains_each_epoch_on_that_many(series_csv, monkeypatch):
    """--epoch-windows N: every epoch of every network trains on N windows (rounded up to
    whole batches), fewer than the 102 training windows; without it, on all of them."""
    sizes, train_epoch = [], engine.Sequential._train_epoch
    def spy(self, x, y, lengths, order, *rest):
        sizes.append(len(order))
        return train_epoch(self, x, y, lengths, order, *rest)
    monkeypatch.setattr(engine.Sequential, "_train_epoch", spy)
    for windows, size in ((None, 102), (36, 40)):
        sizes.clear()
        forecast.run(csv=str(series_csv), column="level", window=12, horizon=3, batch_size=8,
                     epoch_windows=windows, **dict(FTINY, epochs=2))
        assert sizes == [size] * 6  # 3 networks, 2 epochs each


def test_forecast_saved_model_carries_its_preprocessing(series_csv, tmp_path):
    """The checkpoint alone (weights plus metadata) reproduces the app's test forecasts, for
    whichever forecaster the validation chose."""
    path = tmp_path / "f.npz"
    m = forecast.run(csv=str(series_csv), column="level", window=12, horizon=3,
                     save=str(path), **FTINY)
    model = engine.load(path)
    meta = model.metadata
    assert (meta["command"], meta["window"], meta["horizon"], meta["mode"]) == \
        ("forecast", 12, 3, "direct")
    X, Y = make_windows(read_csv_series(series_csv, "level"), 12, 3)
    test = chronological_split(len(X))[2]
    args = forecast.parse_options(forecast.add_arguments, 1, None,
                                  {"load": str(path), "window": 12, "horizon": 3})
    linear = ("persistence", "seasonal", "ar", "ar-diff")
    for chosen in (*linear, "lstm", "lstm-norm", "lstm+ar", "ensemble"):  # as if chosen
        if chosen not in linear and chosen != meta["network"] or \
                chosen == "seasonal" and not meta["season"]:
            continue
        model.metadata = dict(meta, chosen=chosen)
        _, predict = forecast.saved_forecaster(args, model, 0)
        key = {"ar": "ar12", "seasonal": f"seasonal{meta['season']}"}.get(chosen, chosen)
        np.testing.assert_allclose(rmse_per_horizon(predict(X[test, :, 0], None), Y[test]),
                                   m["test_rmse_per_horizon"][key], rtol=1e-5)


def test_a_saved_model_with_a_partner_forecasts_the_mean_of_the_two(series_csv, tmp_path):
    """A checkpoint whose network was averaged with a linear partner replays that mean on the
    series given to --load (every window and the next forecast), and so does a fitted linear
    model averaged with a baseline; a partner beside a baseline, a fitted partner beside a
    fitted choice, or one that is no linear candidate, is refused."""
    path = tmp_path / "f.npz"
    forecast.run(csv=str(series_csv), column="level", window=12, horizon=3, save=str(path),
                 **FTINY)
    model = engine.load(path)
    network = model.metadata["network"]
    model.metadata = dict(model.metadata, chosen=network, partner="ar-diff")
    model.save(path)
    applied = forecast.run(load=str(path), csv=str(series_csv), column="level", quiet=True)
    assert applied["chosen"] == f"{network} + ar-diff"
    series = read_csv_series(series_csv, "level")
    X, Y = make_windows(series, 12, 3)
    args = forecast.parse_options(forecast.add_arguments, 1, None,
                                  {"load": str(path), "window": 12, "horizon": 3})
    every = np.vstack([X[:, :, 0], series[None, -12:]])
    mean = np.mean([forecast.saved_forecaster(args, model, 0, 0, k)[1](every, None)
                    for k in (network, "ar-diff")], axis=0)
    np.testing.assert_allclose(applied["rmse_mean"]["model"],
                               rmse_per_horizon(mean[:-1], Y).mean(), rtol=1e-9)
    np.testing.assert_allclose(applied["next_forecast"], mean[-1], rtol=1e-9)
    model.metadata = dict(model.metadata, chosen="ar-diff", partner="ar")
    model.save(path)
    applied = forecast.run(load=str(path), csv=str(series_csv), column="level", quiet=True)
    mean = np.mean([forecast.saved_forecaster(args, model, 0, 0, k)[1](every, None)
                    for k in ("ar-diff", "ar")], axis=0)
    assert applied["chosen"] == "ar-diff + ar"
    np.testing.assert_allclose(applied["next_forecast"], mean[-1], rtol=1e-9)
    for meta, problem in ((dict(chosen="ar", partner="ar-diff"), "averaged with nothing"),
                          (dict(chosen="ar-diff", partner="arx"), "averaged with a baseline"),
                          (dict(chosen=network, partner="lstm"), "partner")):
        model.metadata = dict(model.metadata, **meta)
        model.save(path)
        with pytest.raises(AppError, match=problem):
            forecast.run(load=str(path), csv=str(series_csv), column="level", quiet=True)


def test_forecast_recursive_matches_horizon(series_csv):
    m = forecast.run(csv=str(series_csv), column="level", window=10, horizon=4,
                     mode="recursive", **FTINY)
    for name in ("model", "lstm", "lstm-norm", "lstm+ar", "ensemble"):
        assert len(m["test_rmse_per_horizon"][name]) == 4
        assert np.all(np.isfinite(m["test_rmse_per_horizon"][name]))


def test_stocks_user_csv(prices_csv, tmp_path):
    out = tmp_path / "o"
    stocks.run(csv=str(prices_csv), window=10, out=str(out), **TINY)
    m = _files_ok(out, "stocks", ["next_day_return", "volatility_5d"])
    ret = m["next_day_return"]
    assert set(ret["test_mse"]) == {"lstm", "zero", "mean"}
    assert set(m["volatility_5d"]["test_mse"]) == {"lstm", "zero", "mean", "persistence"}
    assert {"lstm", "majority", "edge"} <= set(ret["directional_accuracy"])


def test_stocks_validation_targets_stop_before_the_test_days(prices_csv, monkeypatch):
    """Sample k's targets are the returns k + W .. k + W + 4 (the next day's and the 5-day
    volatility's), so the validation samples stop GAP = 4 before the test samples: the last
    validation target (early stopping reads it) is the day before the first test target."""
    from engine.apps.datasets import read_price_csv
    from engine.apps.windows import chronological_split, log_returns
    W = 10
    prices = read_price_csv(str(prices_csv))
    r = log_returns(prices.close)
    X, y_ret, y_vol, _, _ = stocks.make_samples(prices, W)
    k = np.arange(len(X))
    np.testing.assert_allclose(y_ret, r[k + W])
    np.testing.assert_allclose(y_vol, np.sqrt([np.sum(r[i + W:i + W + 5] ** 2) for i in k]))
    _, val, test = chronological_split(len(X), gap=stocks.GAP)
    assert (val.stop - 1 + W + stocks.VOL_DAYS - 1) + 1 == test.start + W
    gaps = []
    monkeypatch.setattr(stocks, "chronological_split",
                        lambda n, gap=0: gaps.append(gap) or chronological_split(n, gap=gap))
    stocks.run(csv=str(prices_csv), window=W, **TINY)
    assert gaps == [4]


def test_stocks_edge_needs_significance():
    rng = np.random.default_rng(3)
    true = rng.normal(0, 1, 500)
    noise = {"zero": np.zeros(500)}
    assert not stocks.compare(rng.normal(0, 0.05, 500), true, noise)["edge"]  # noise: none
    assert stocks.compare(true + rng.normal(0, 0.1, 500), true, noise)["edge"]


def test_text_user_file_and_sample(text_file, tmp_path):
    out = tmp_path / "o"
    m = text.run(text=str(text_file), seq=20, batch_size=8, embed=4, sample=30, prime="The ",
                 out=str(out), **TINY)
    m = _files_ok(out, "text", ["heldout_nats_per_char", "heldout_bits_per_char", "history"])
    assert m["heldout_bits_per_char"] == pytest.approx(m["heldout_nats_per_char"] / np.log(2))
    assert len(m["sample"]) == 4 + 30 and m["sample"].startswith("The ")


def test_a_text_on_one_line_samples_without_a_prime(tmp_path):
    """The default prime is a newline only when the text has one; otherwise the text's
    first character in sorted order, so a one-line file needs no --prime."""
    path = tmp_path / "one.txt"
    path.write_text("the quick brown fox jumps over the lazy dog " * 20)
    m = text.run(text=str(path), seq=20, batch_size=8, embed=4, sample=10, **TINY)
    assert m["sample"][0] == " " and len(m["sample"]) == 11
    assert text.default_prime(CharVocab.from_text("b\na")) == "\n"


def test_heldout_nats_of_uniform_model_is_log_v(text_file):
    """A model with zero output weights predicts uniformly: exactly log V nats per char."""
    args_text = text_file.read_text()
    vocab, train_ids, val_ids = text.split_ids(args_text, _ns(seq=20))
    model = text.build_model(_ns(embed=4, hidden=8, backend=None, seed=0, lr=1e-3,
                                           layers=1), len(vocab))
    for p in model.layers[-1].params.values():
        p[...] = 0
    assert text.heldout_nats(model, val_ids) == pytest.approx(np.log(len(vocab)), rel=1e-6)


def _ns(**kw):
    from types import SimpleNamespace

    return SimpleNamespace(text=None, **kw)


def test_classify_user_ts(ts_files, tmp_path):
    out = tmp_path / "o"
    train, test = ts_files
    classify.run(train=str(train), test=str(test), out=str(out), **TINY)
    m = _files_ok(out, "classify", ["test_accuracy", "confusion_matrix", "classes"])
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == 9


def test_classify_reads_files_by_what_they_hold(ts_files, tmp_path):
    """A gzipped .ts, a .ts under another name, a tab-separated CSV named .tsv or .txt; an ARFF
    file stops naming its format."""
    import gzip

    ts = ts_files[0].read_text()
    want = classify.read_labelled(ts_files[0])
    (tmp_path / "a.ts.gz").write_bytes(gzip.compress(ts.encode()))
    (tmp_path / "a.txt").write_text(ts)
    for name in ("a.ts.gz", "a.txt"):
        got = classify.read_labelled(tmp_path / name)
        assert got[2] == want[2] and (got[1] == want[1]).all()
        assert all((a == b).all() for a, b in zip(got[0], want[0]))
    rows = "id\tlabel\tf\n" + "".join(f"s{i}\t{'ab'[i % 2]}\t{v}\n" for i in range(4)
                                         for v in range(3))
    for name in ("s.tsv", "s.txt"):
        (tmp_path / name).write_text(rows)
        X, y, names = classify.read_labelled(tmp_path / name)
        assert names == ["a", "b"] and len(X) == 4 and X[0].shape == (3, 1)
    (tmp_path / "w.txt").write_text("% Weka\n@RELATION x\n@ATTRIBUTE a NUMERIC\n@DATA\n1\n")
    for name in ("w.txt", "w.arff"):
        (tmp_path / name).write_text((tmp_path / "w.txt").read_text())
        with pytest.raises(ValueError, match=f"{name}:1: an ARFF file"):
            classify.read_labelled(tmp_path / name)


def test_classify_warns_when_the_test_file_names_its_features_otherwise(tmp_path, capsys):
    rng = np.random.default_rng(4)

    def write(path, head, rows):
        path.write_text(head + "\n" + "".join(
            f"s{i},{y}," + ",".join(f"{v:.3f}" for v in step) + "\n"
            for i, (x, y) in enumerate(rows) for step in x))
        return str(path)

    train = write(tmp_path / "tr.csv", "id,label,speed,load", _ts_rows(rng, 24))
    for head, warned in (("id,label,speed,load", False), ("id,label,load,speed", True)):
        test = write(tmp_path / "te.csv", head, _ts_rows(rng, 9))
        classify.run(train=train, test=test, **TINY)
        err = capsys.readouterr().err
        assert (f"warning: {test}: features ['load', 'speed'], but {train} has ['speed', "
                "'load']: they are read by position" in err) == warned, err


def test_classify_padding_does_not_leak(ts_files):
    """Predictions of a sequence are the same alone and padded in a batch with longer ones."""
    from engine.apps.datasets import read_ts

    X, y, _ = read_ts(ts_files[0])
    args = _ns(hidden=6, bidirectional=True, backend=None, seed=0, lr=1e-3)
    model = classify.build_model(args, 2, 3)
    xs, ls = classify.prepare(X, classify.StandardScaler().fit(np.concatenate(X)))
    batch = model.predict(xs, lengths=ls)
    i = int(np.argmin(ls))
    alone = model.predict(xs[i:i + 1, : ls[i]], lengths=ls[i:i + 1])
    np.testing.assert_allclose(batch[i], alone[0], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ command line
def _cli(*argv):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "engine", *argv], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)


def test_cli_bundled_data_all_commands(tmp_path):
    """One process per command on the bundled data sets, tiny settings."""
    runs = {
        "forecast": ["--hidden", "8"],
        "stocks": ["--ticker", "IBM", "--hidden", "8"],
        "text": ["--hidden", "8", "--embed", "4", "--minutes", "0.01", "--sample", "20"],
        "classify": ["--hidden", "8"],
    }
    for name, extra in runs.items():
        r = _cli(name, "--epochs", "1", "--quiet", "--out", str(tmp_path), *extra)
        assert r.returncode == 0, r.stderr
        _files_ok(tmp_path, name, ["command"])


def test_cli_save_then_sample(text_file, tmp_path):
    model = tmp_path / "char.npz"
    r = _cli("text", "--text", str(text_file), "--epochs", "1", "--hidden", "8", "--seq", "20",
             "--sample", "0", "--quiet", "--save", str(model))
    assert r.returncode == 0, r.stderr
    r = _cli("text", "--load", str(model), "--sample", "50", "--prime", "fox",
             "--temperature", "0.5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("fox") and len(r.stdout.rstrip("\n")) >= 53 - 2
    quiet = _cli("text", "--load", str(model), "--sample", "50", "--prime", "fox", "--quiet")
    assert quiet.returncode == 0 and quiet.stdout.startswith("fox")  # asked for: printed
    m = text.run(load=str(model), sample=50, prime="fox", quiet=True, out=str(tmp_path / "s"))
    assert len(m["sample"]) == 53
    assert json.loads((tmp_path / "s" / "text.json").read_text())["sample"] == m["sample"]
    assert not text.vocab_path(model).exists()  # the vocabulary lives in the checkpoint
    assert set(engine.load(model).metadata["vocab"]) == set(text_file.read_text())


def test_text_load_reads_older_saves_and_refuses_other_models(text_file, tmp_path):
    """Saves from before the vocabulary moved into the checkpoint kept it in a .vocab.json
    beside the model; a model saved by another command is refused by name."""
    model = tmp_path / "char.npz"
    text.run(text=str(text_file), epochs=1, hidden=8, seq=20, sample=0, save=str(model),
             quiet=True)
    loaded = engine.load(model)
    chars = loaded.metadata.pop("vocab")
    loaded.save(model)
    text.vocab_path(model).write_text(json.dumps({"chars": chars}), encoding="utf-8")
    assert text.run(load=str(model), sample=5, prime="fox", quiet=True)["sample"][:3] == "fox"
    loaded.metadata = {"command": "text", "vocab": chars[:-1]}  # one character short
    loaded.save(model)
    with pytest.raises(AppError, match=f"a vocabulary of {len(chars) - 1} characters"):
        text.run(load=str(model), sample=5, prime="fox", quiet=True)
    loaded.metadata = {"command": "forecast"}
    loaded.save(model)
    with pytest.raises(AppError, match="saved by the 'forecast' command"):
        text.run(load=str(model), sample=5, quiet=True)


# ------------------------------------------------------------------------------ bad data
def test_cli_bad_csv_exits_2_with_file_and_line(series_csv):
    lines = series_csv.read_text().splitlines()
    lines[4] = "3,abc"
    series_csv.write_text("\n".join(lines) + "\n")
    r = _cli("forecast", "--csv", str(series_csv), "--column", "level", "--quiet")
    assert r.returncode == 2
    assert f"{series_csv}:5: non-numeric value 'abc'" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("case", ["missing_column", "too_short", "empty_text",
                                  "unknown_label", "bad_price", "missing_file"])
def test_bad_data_messages(case, series_csv, prices_csv, ts_files, tmp_path, capsys):
    if case == "missing_column":
        argv, expect = ["forecast", "--csv", str(series_csv), "--column", "nope"], \
            f"{series_csv}:1: no column 'nope'"
    elif case == "too_short":
        argv, expect = ["forecast", "--csv", str(series_csv), "--column", "level",
                        "--window", "200"], f"{series_csv}:161: series too short"
    elif case == "empty_text":
        empty = tmp_path / "empty.txt"
        empty.write_text("  \n")
        argv, expect = ["text", "--text", str(empty)], f"{empty}:1: empty text"
    elif case == "unknown_label":
        bad = _ts(tmp_path / "bad.ts", [(np.ones((3, 2)), "a"), (np.ones((4, 2)), "z")],
                  labels=("a", "z"))
        argv, expect = ["classify", "--train", str(ts_files[0]), "--test", str(bad)], \
            f"{bad}:8: unknown label 'z'"
    elif case == "bad_price":
        lines = prices_csv.read_text().splitlines()
        lines[9] = lines[9].split(",")[0] + ",-1"
        prices_csv.write_text("\n".join(lines) + "\n")
        argv, expect = ["stocks", "--csv", str(prices_csv)], f"{prices_csv}:10: price -1.0"
    else:
        argv, expect = ["text", "--text", str(tmp_path / "none.txt")], "no such file"
    assert main(argv + ["--quiet", "--epochs", "1"]) == 2
    assert expect in capsys.readouterr().err


def test_commands_run_on_the_gpu_backend(tmp_path):
    """Tiny runs through the GPU backend (the CUDA simulator without a GPU, which simulates
    every thread: hence fewer samples than the CPU tests): the applications work on either
    backend."""
    y = 10 + 5 * np.sin(np.arange(36) / 6)  # forecast trains 3 networks: few windows
    series = tmp_path / "level.csv"
    series.write_text("month,level\n" + "".join(f"{i},{v:.3f}\n" for i, v in enumerate(y)))
    m = forecast.run(csv=str(series), column="level", window=4, horizon=2, epochs=1,
                     hidden=3, seeds=1, batch_size=64, quiet=True, backend="gpu",
                     out=str(tmp_path / "f"))
    assert set(m["test_rmse_mean"]) >= {"lstm", "lstm+ar", "ensemble", "persistence"}
    assert np.isfinite(m["test_rmse_mean"]["ensemble"])
    rng = np.random.default_rng(2)
    train = _ts(tmp_path / "tr.ts", _ts_rows(rng, 9))
    test = _ts(tmp_path / "te.ts", _ts_rows(rng, 6))
    m = classify.run(train=str(train), test=str(test), epochs=1, hidden=3, quiet=True,
                     backend="gpu", out=str(tmp_path / "c"))
    assert 0.0 <= m["test_accuracy"] <= 1.0


# ------------------------------------------------------------------------------ --load
def test_every_command_applies_its_saved_model(series_csv, prices_csv, ts_files, tmp_path):
    """``--save`` then ``--load``: forecast, stocks and classify apply the checkpoint to data
    from the command line with the preprocessing saved in it, and get what the model gives."""
    f = tmp_path / "f.npz"
    forecast.run(csv=str(series_csv), column="level", window=12, horizon=3, save=str(f), **FTINY)
    assert main(["forecast", "--load", str(f), "--csv", str(series_csv), "--column", "level",
                 "--quiet", "--out", str(tmp_path / "fo")]) == 0
    m = _files_ok(tmp_path / "fo", "forecast", ["rmse_mean", "next_forecast"])
    model = engine.load(f)
    series = read_csv_series(series_csv, "level")
    args = forecast.parse_options(forecast.add_arguments, 1, None,
                                  {"load": str(f), "window": 12, "horizon": 3})
    want = forecast.saved_forecaster(args, model, 0)[1](series[None, -12:], None)[0]
    np.testing.assert_allclose(m["next_forecast"], want, rtol=1e-6)

    s = tmp_path / "s.npz"
    stocks.run(csv=str(prices_csv), window=10, save=str(s), **TINY)
    got = stocks.run(load=str(s), csv=str(prices_csv), quiet=True)
    model = engine.load(s)
    close = np.loadtxt(prices_csv, delimiter=",", skiprows=1, usecols=1)
    r = np.diff(np.log(close))[-10:]
    x = (np.stack([r, np.abs(r)], 1)[None] / model.metadata["input_scale"]).astype(np.float32)
    sy = StandardScaler.from_state(model.metadata["target_scaler"])
    want = sy.inverse_transform(model.predict(x))[0]
    assert got["prediction"]["next_day_return"] == pytest.approx(want[0], rel=1e-5)
    assert got["prediction"]["volatility_5d"] == pytest.approx(want[1], rel=1e-5)

    c = tmp_path / "c.npz"
    train, test = ts_files
    trained = classify.run(train=str(train), test=str(test), save=str(c), **TINY)
    applied = classify.run(load=str(c), test=str(test), quiet=True)
    assert applied["test_accuracy"] == trained["test_accuracy"]
    assert applied["confusion_matrix"] == trained["confusion_matrix"]
    assert len(applied["predicted"]) == 9 and set(applied["predicted"]) <= {"a", "b", "c"}


def test_load_names_the_training_options_it_ignores(series_csv, ts_files, tmp_path, capsys):
    """--load trains nothing: training options given beside it are named on stderr (and the
    result is the saved model's, as without them); options --load reads, or none, print
    nothing."""
    f = tmp_path / "f.npz"
    forecast.run(csv=str(series_csv), column="level", window=12, horizon=3, save=str(f), **FTINY)
    data = dict(load=str(f), csv=str(series_csv), column="level", quiet=True)
    capsys.readouterr()
    plain = forecast.run(**data)
    assert capsys.readouterr().err == ""
    given = forecast.run(**data, hidden=32, epochs=5, ets=True)
    err = capsys.readouterr().err
    assert err.startswith(f"warning: --load {f}: --epochs, --ets, --hidden ignored: "), err
    assert "--csv" not in err and "--column" not in err
    assert given["next_forecast"] == plain["next_forecast"]

    c = tmp_path / "c.npz"
    train, test = ts_files
    classify.run(train=str(train), test=str(test), save=str(c), **TINY)
    capsys.readouterr()
    classify.run(load=str(c), test=str(test), train=str(train), quiet=True)
    err = capsys.readouterr().err
    assert "--train" in err and "ignored" in err and "--test" not in err
    with pytest.raises(AppError, match="--load classifies --test FILE: give the file"):
        classify.run(load=str(c), train=str(train), quiet=True)  # not JapaneseVowels' test set


def test_load_refuses_another_commands_model_and_bad_metadata(series_csv, ts_files, tmp_path,
                                                              capsys):
    c = tmp_path / "c.npz"
    classify.run(train=str(ts_files[0]), test=str(ts_files[1]), save=str(c), **TINY)
    assert main(["forecast", "--load", str(c), "--quiet"]) == 2
    assert f"{c}: a model saved by the 'classify' command" in capsys.readouterr().err
    f = tmp_path / "f.npz"
    forecast.run(csv=str(series_csv), column="level", window=12, horizon=3, save=str(f), **FTINY)
    model = engine.load(f)
    saved = engine.load(f).metadata
    bad_scales = {"input_scale": -1.0, "output_scale": 1.0, "level": None}
    for key, value, words in [("normaliser", bad_scales, "scales must be finite and > 0"),
                              ("window", 0, "expected an integer >= 1"),
                              ("mode", "sideways", "'direct' or 'recursive'"),
                              ("chosen", "magic", "expected one of"),
                              ("ar", {"coef": [[1.0]], "intercept": [0.0]}, "expected finite")]:
        bad = tmp_path / f"bad_{key}.npz"
        model.metadata = {**saved, "chosen": saved["network"], key: value}
        model.save(bad)
        assert main(["forecast", "--load", str(bad), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"{bad}: metadata {key!r}: " in err and words in err, err


def test_load_refuses_settings_the_saved_model_fixes(series_csv, prices_csv, tmp_path, capsys):
    """--window, --horizon, --mode and the inputs are the checkpoint's: another value given
    with --load stops with the saved one named instead of being silently replaced; the saved
    value itself, given again, is fine."""
    f, s = tmp_path / "f.npz", tmp_path / "s.npz"
    forecast.run(csv=str(series_csv), column="level", window=12, horizon=3, save=str(f), **FTINY)
    stocks.run(csv=str(prices_csv), window=10, save=str(s), **TINY)
    data = ["--csv", str(series_csv), "--column", "level", "--quiet"]
    for extra, words in [(["--window", "13"], f"--window 13: {f} was trained with --window 12"),
                         (["--horizon", "4"], "trained with --horizon 3"),
                         (["--mode", "recursive"], "trained with --mode direct"),
                         (["--columns", "level,month", "--target", "level"], "reads one column"),
                         (["--calendar"], "reads no calendar")]:
        assert main(["forecast", "--load", str(f)] + data + extra) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err, err
    assert main(["forecast", "--load", str(f), "--window", "12", "--horizon", "3"] + data) == 0
    assert main(["stocks", "--load", str(s), "--csv", str(prices_csv), "--window", "25",
                 "--quiet"]) == 2
    assert f"--window 25: {s} was trained with --window 10" in capsys.readouterr().err


# ------------------------------------------------------------------------ data as users have it
def test_forecast_reads_a_noaa_style_file_and_its_missing_value_code(series_csv, tmp_path,
                                                                     capsys):
    """Notes starting with # before the header, -999.99 for a missing value: read as data
    with a warning naming --na-values, and as missing with it."""
    lines = series_csv.read_text().splitlines()
    for i in (7, 40, 41):
        lines[i] = lines[i].split(",")[0] + ",-999.99"
    noaa = tmp_path / "noaa.csv"
    noaa.write_text("# Weekly averages, in ppm\n#\n" + "\n".join(lines) + "\n")
    argv = dict(csv=str(noaa), column="level", window=12, horizon=3, **FTINY)
    forecast.run(**argv)
    err = capsys.readouterr().err
    assert (f"warning: {noaa}: column 'level' holds -999.99 in 3 rows, far outside its other "
            "values" in err and "give --na-values -999.99" in err), err
    m = forecast.run(na_values=-999.99, missing="interpolate", **argv)
    assert m["missing_values"] == {"level": 3} and "warning" not in capsys.readouterr().err
    assert main(["forecast", "--csv", str(noaa), "--column", "level", "--na-values",
                 "-999.99"]) == 2
    assert f"{noaa}:10: missing value '-999.99'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse's own exit, status 2
        main(["forecast", "--csv", str(noaa), "--column", "level", "--na-values=-999.99,,-"])
    assert exc.value.code == 2
    assert "--na-values: expected numbers or words separated by commas" in \
        capsys.readouterr().err
    assert main(["forecast", "--csv", str(noaa), "--column", "level", "--na-values",
                 "-999.99,-9999", "--missing", "drop", "--window", "12", "--horizon", "3",
                 "--epochs", "1", "--hidden", "8", "--seeds", "1", "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err  # the list read as the option's value
    with pytest.raises(ValueError, match="--na-values: expected numbers or words"):
        forecast.run(na_values=[float("nan")], **argv)
    dashes = tmp_path / "dashes.csv"  # a word: '-' as a spreadsheet leaves an empty cell
    dashes.write_text(noaa.read_text().replace("-999.99", "-"))
    m = forecast.run(**dict(argv, csv=str(dashes)), na_values="-,N.A.", missing="drop")
    assert m["missing_values"] == {"level": 3}


@pytest.mark.parametrize("step, words", [((31, "D"), "1 month"), ((92, "D"), "1 quarter"),
                                         ((365, "D"), "1 year"), ((7, "D"), "7 days"),
                                         ((60, "m"), "1 hour"), ((90, "m"), "90 minutes")])
def test_the_skip_warning_names_the_usual_step(step, words):
    assert forecast._spacing(np.timedelta64(*step)) == words


def test_forecast_warns_when_the_dates_skip_steps(tmp_path, capsys):
    """Rows missing from an hourly file (read to the day without --calendar, but checked to
    the minute); a half-hourly clock put back in autumn stays in order by the day."""
    rng = np.random.default_rng(4)
    hours = np.arange("2021-01-01T00:00", "2021-01-11T00:00", 60, dtype="datetime64[m]")
    hours = np.delete(hours, [100, 101, 102, 150])
    level = 5 + 3 * np.sin(np.arange(len(hours)) * 2 * np.pi / 24) + rng.normal(0, 0.3,
                                                                              len(hours))
    path = tmp_path / "hourly.csv"
    path.write_text("timestamp,temp\n" + "".join(
        f"{str(d).replace('T', ' ')},{v:.3f}\n" for d, v in zip(hours, level)))
    argv = dict(csv=str(path), column="temp", window=24, horizon=6, **FTINY)
    forecast.run(**argv)
    assert (f"warning: {path}: the dates skip 4 steps in 2 places (the first after "
            "2021-01-05T03:00), where rows are usually 1 hour apart") in capsys.readouterr().err
    forecast.run(calendar=True, **argv)
    assert "the dates skip 4 steps" in capsys.readouterr().err
    halves = np.arange("2021-10-30T00:00", "2021-11-04T00:00", 30, dtype="datetime64[m]")
    clock = np.concatenate([halves[:52], halves[50:]])  # 01:00, 01:30, then again
    path.write_text("timestamp,temp\n" + "".join(
        f"{str(d).replace('T', ' ')},{v:.3f}\n" for d, v in zip(clock, level)))
    m = forecast.run(**argv)
    assert m["n_test"] > 0 and "warning" not in capsys.readouterr().err
    m = forecast.run(calendar=True, **argv)  # read to the minute: back by an hour, no more
    assert m["n_test"] > 0 and "warning" not in capsys.readouterr().err
    days = np.delete(np.arange("2020-01-01", "2020-12-01", dtype="datetime64[D]"), [40, 41])
    path.write_text("date,temp\n" + "".join(f"{d},{v:.3f}\n" for d, v in zip(days, level)))
    forecast.run(**argv)
    assert ("the dates skip 2 steps in 1 place (the first after 2020-02-09), where rows are "
            "usually 1 day apart") in capsys.readouterr().err
    path.write_text("date,temp\n" + "".join(f"{d},{v:.3f}\n" for d, v in
                                             zip(np.r_[days[:50], days[:200]], level)))
    with pytest.raises(ValueError, match=r":52: date 2020-01-01 is before 2020-02-21 on line "
                                         r"51: rows must be in date order"):
        forecast.run(**argv)


def test_missing_interpolate_fills_the_dates_the_rows_skip(tmp_path, capsys):
    """Rows missing from an hourly axis forecast as the same rows written with empty cells;
    a weekday series' weekends and holidays skip nothing."""
    rng = np.random.default_rng(5)
    hours = np.arange("2021-01-01T00:00", "2021-01-11T00:00", 60, dtype="datetime64[m]")
    level = 5 + 3 * np.sin(np.arange(len(hours)) * 2 * np.pi / 24) + rng.normal(0, 0.3,
                                                                              len(hours))
    gone = [100, 101, 102, 150]
    cells = [f"{v:.3f}" for v in level]
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,temp\n" + "".join(
        f"{d},{'' if i in gone else c}\n" for i, (d, c) in enumerate(zip(hours, cells))))
    skipped = tmp_path / "skipped.csv"
    skipped.write_text("timestamp,temp\n" + "".join(
        f"{d},{c}\n" for i, (d, c) in enumerate(zip(hours, cells)) if i not in gone))
    argv = dict(column="temp", window=24, horizon=6, missing="interpolate", **FTINY)
    want = forecast.run(csv=str(empty), **argv)
    capsys.readouterr()
    got = forecast.run(csv=str(skipped), **dict(argv, quiet=False))
    out, err = capsys.readouterr()
    assert "warning" not in err, err
    assert ("missing dates: the dates skip 4 steps in 2 places (the first after "
            "2021-01-05T03:00), where rows are usually 1 hour apart, filled by linear "
            "interpolation") in out
    assert want["missing_values"] == {"temp": 4} and got["filled_steps"] == 4
    for key in ("chosen", "val_rmse_mean", "test_rmse_mean", "next_forecast", "test_period"):
        assert got[key] == want[key], key
    odd = tmp_path / "odd.csv"  # a skip of 4.5 steps has no dates to fill
    odd.write_text(skipped.read_text().replace("2021-01-05T07:00", "2021-01-05T07:30"))
    forecast.run(csv=str(odd), **argv)
    assert "--missing interpolate cannot put rows in their place" in capsys.readouterr().err
    hole = tmp_path / "hole.csv"  # a gap longer than a fifth of the rows: not made up
    days = np.r_[np.arange("2020-01-01", "2020-03-01", dtype="datetime64[D]"),
                 np.arange("2020-06-01", "2020-08-01", dtype="datetime64[D]")]
    hole.write_text("date,temp\n" + "".join(f"{d},{v:.3f}\n" for d, v in zip(days, level)))
    m = forecast.run(csv=str(hole), **argv)
    assert "filled_steps" not in m and "too many for --missing interpolate to fill" in \
        capsys.readouterr().err
    days = np.arange("2019-01-01", "2021-01-01", dtype="datetime64[D]")
    weekdays = np.delete(days[np.is_busday(days)], [20, 200])  # two holidays
    weekdays_csv = tmp_path / "weekdays.csv"
    weekdays_csv.write_text("date,temp\n" + "".join(
        f"{d},{v:.3f}\n" for d, v in zip(weekdays, rng.normal(size=len(weekdays)))))
    m = forecast.run(csv=str(weekdays_csv), **argv)
    assert "warning" not in capsys.readouterr().err and "filled_steps" not in m


def test_forecast_warns_when_a_date_column_does_not_read(tmp_path, capsys):
    y = np.random.default_rng(8).normal(size=120)
    path = tmp_path / "words.csv"
    path.write_text("Date,y\n" + "".join(f"Day {i + 1},{v:.3f}\n" for i, v in enumerate(y)))
    forecast.run(csv=str(path), column="y", window=12, horizon=3, **FTINY)
    assert capsys.readouterr().err == (
        f"warning: {path}:2: cannot read date 'Day 1': expected {EXPECTED_DATES}, or give "
        "--date-format (for example --date-format %d/%m/%Y); column 'Date' is not read as "
        "dates, and the plots count steps\n")


def test_commands_take_missing_values_and_other_date_forms(series_csv, prices_csv, tmp_path,
                                                           capsys):
    lines = series_csv.read_text().splitlines()
    lines[5] = lines[5].split(",")[0] + ","
    series_csv.write_text("\n".join(lines) + "\n")
    argv = ["forecast", "--csv", str(series_csv), "--column", "level", "--window", "12",
            "--horizon", "3", "--epochs", "1", "--hidden", "8", "--quiet"]
    assert main(argv) == 2
    assert f"{series_csv}:6: missing value ''" in capsys.readouterr().err
    assert main(argv + ["--missing", "interpolate"]) == 0
    for policy, done in [("interpolate", "interpolated linearly"), ("drop", "their rows dropped")]:
        m = forecast.run(csv=str(series_csv), column="level", window=12, horizon=3,
                         missing=policy, **dict(FTINY, quiet=False))
        assert m["missing_values"] == {"level": 1}
        assert f"missing values: 1 in 'level', {done}" in capsys.readouterr().out
    gappy = tmp_path / "gappy_prices.csv"
    price_lines = prices_csv.read_text().splitlines()
    price_lines[9] = price_lines[9].split(",")[0] + ",NA"
    gappy.write_text("\n".join(price_lines) + "\n")
    m = stocks.run(csv=str(gappy), missing="drop", window=10, **dict(TINY, quiet=False))
    assert m["missing_values"] == {"Close": 1}
    assert "missing values: 1 in 'Close', their rows dropped" in capsys.readouterr().out
    rows = [line.split(",") for line in prices_csv.read_text().splitlines()[1:]]
    day_first = tmp_path / "day_first.csv"
    day_first.write_text("Date,Close\n" + "".join(
        f"{d[8:10]}/{d[5:7]}/{d[:4]},{c}\n" for d, c in rows))
    m = stocks.run(csv=str(day_first), date_format="%d/%m/%Y", window=10, **TINY)
    assert m["n_test"] > 0


def test_forecast_plots_against_the_dates_of_the_data(series_csv, tmp_path, capsys):
    values = [line.split(",")[1] for line in series_csv.read_text().splitlines()[1:]]
    days = np.arange("2020-01-01", len(values), dtype="datetime64[D]")
    dated = tmp_path / "dated.csv"
    dated.write_text("Date,level\n" + "".join(f"{d},{v}\n" for d, v in zip(days, values)))
    m = forecast.run(csv=str(dated), column="level", window=12, horizon=3,
                     out=str(tmp_path / "o"), **FTINY)
    assert m["test_period"][1] == str(days[-1]) and m["test_period"][0] > str(days[100])
    assert (tmp_path / "o" / "forecast.png").stat().st_size > 1000
    hours = np.datetime64("2020-01-01T00:00") + np.arange(len(values)) * np.timedelta64(1, "h")
    dated.write_text("Date,level\n" + "".join(f"{d},{v}\n" for d, v in zip(hours, values)))
    m = forecast.run(csv=str(dated), column="level", window=12, horizon=3, **FTINY)
    assert m["test_period"][1] == str(hours[-1])  # the plots' x axis has the hours, not days
    undated = forecast.run(csv=str(series_csv), column="level", window=12, horizon=3, **FTINY)
    assert "test_period" not in undated
    assert main(["forecast", "--csv", str(series_csv), "--column", "level", "--date-column",
                 "level", "--quiet"]) == 2
    assert f"{series_csv}:2: cannot read date" in capsys.readouterr().err
