"""The command line's promise (issue 20, point 1): bad data, bad options, an unusable backend
or output path end in ``error: ...`` and exit status 2, with no traceback, before any
training starts; ``run(**options)`` from Python raises the same problems as ValueErrors."""
import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

import engine
from engine.apps import forecast, stocks, text
from engine.apps.cli import main
from engine.apps.common import AppError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    """Every case here must stop before the first epoch."""
    def fit(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(engine.Sequential, "fit", fit)


def _series(tmp_path, values, name="level.csv"):
    path = tmp_path / name
    path.write_text("month,level\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    return path


def _prices(tmp_path, close):
    dates = np.arange("2020-01-01", "2021-01-01", dtype="datetime64[D]")[:len(close)]
    path = tmp_path / "prices.csv"
    path.write_text("Date,Close\n" + "".join(f"{d},{c}\n" for d, c in zip(dates, close)))
    return path


def _wave(n=120):
    return [f"{10 + 5 * np.sin(t / 6):.3f}" for t in range(n)]


def _bad_data(case, tmp_path):
    """(argv, words the error must hold) for one bad file."""
    if case == "nan_cell":
        values = _wave()
        values[3] = "nan"
        path = _series(tmp_path, values)
        return ["forecast", "--csv", str(path), "--column", "level"], \
            [f"{path}:5:", "missing value 'nan'", "--missing interpolate"]
    if case == "inf_price":
        close = [f"{100 + i:.2f}" for i in range(200)]
        close[7] = "inf"
        path = _prices(tmp_path, close)
        return ["stocks", "--csv", str(path)], [f"{path}:9:", "'inf'", "not finite"]
    if case == "huge_values":
        path = _series(tmp_path, [f"{v}e299" for v in _wave()])
        return ["forecast", "--csv", str(path), "--column", "level"], \
            [f"{path}:2:", "too large"]
    if case == "truncated_gzip":
        data = gzip.compress(("month,level\n" + "".join(
            f"{i},{v}\n" for i, v in enumerate(_wave()))).encode())
        path = tmp_path / "level.csv.gz"
        path.write_bytes(data[: len(data) // 2])
        return ["forecast", "--csv", str(path), "--column", "level"], \
            [f"{path}:1:", "cannot decompress"]
    if case == "csv_field_too_long":
        path = _series(tmp_path, _wave())
        path.write_text(path.read_text() + '7,"' + "9" * 200_000 + '"\n')
        return ["forecast", "--csv", str(path), "--column", "level"], \
            [f"{path}:", "field larger than field limit"]
    if case == "constant_prices":
        path = _prices(tmp_path, ["50.00"] * 200)
        return ["stocks", "--csv", str(path)], [f"{path}:", "constant"]
    if case == "binary_text":
        path = tmp_path / "image.txt"
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
        return ["text", "--text", str(path)], [f"{path}:", "binary file"]
    if case == "prime_not_in_text":
        path = tmp_path / "one_line.txt"
        path.write_text("the quick brown fox jumps over the lazy dog " * 40)
        return ["text", "--text", str(path), "--seq", "20", "--prime", "The"], \
            ["--prime", "'T'", "not in the vocabulary"]
    if case == "one_class":
        path = tmp_path / "seqs.csv"
        path.write_text("id,label,f\n" + "".join(f"s{i},cat,{np.sin(i + t):.3f}\n"
                                                 for i in range(20) for t in range(4)))
        return ["classify", "--train", str(path), "--test", str(path)], \
            [f"{path}:", "label 'cat'", "at least two classes"]
    if case == "one_sequence_per_row":  # the UCR archive's layout: label, then the values
        rng = np.random.default_rng(1)
        path = tmp_path / "wide.csv"
        path.write_text("label," + ",".join(f"t{t}" for t in range(12)) + "\n" + "".join(
            f"{i % 3}," + ",".join(f"{v:.3f}" for v in rng.standard_normal(12)) + "\n"
            for i in range(30)))
        return ["classify", "--train", str(path), "--test", str(path)], \
            [f"{path}:5:", "sequence '0' continues", "one row per time step", "UCR"]
    if case == "one_step_sequences":  # the same layout, every first cell different
        rng = np.random.default_rng(3)
        path = tmp_path / "wide.csv"
        path.write_text("id,label,f\n" + "".join(
            f"r{i},{'ab'[i % 2]},{v:.3f}\n" for i, v in enumerate(rng.standard_normal(30))))
        return ["classify", "--train", str(path), "--test", str(path)], \
            [f"{path}:", "30 sequences is a single step", "one row per time step", "UCR"]
    if case == "one_step_ts":  # a .ts file has no other layout to suggest
        rng = np.random.default_rng(4)
        path = tmp_path / "steps.ts"
        path.write_text("@problemName x\n@univariate true\n@classLabel true a b\n@data\n"
                        + "".join(f"{v:.3f}:{'ab'[i % 2]}\n"
                                  for i, v in enumerate(rng.standard_normal(20))))
        return ["classify", "--train", str(path), "--test", str(path)], \
            [f"{path}:", "20 sequences is a single step", "several steps"]
    if case == "label_is_a_measurement":
        rng = np.random.default_rng(2)
        path = tmp_path / "scores.csv"
        path.write_text("id,score,f\n" + "".join(
            f"s{i},{score:.4f},{v:.3f}\n" for i, score in enumerate(rng.standard_normal(20))
            for v in rng.standard_normal(5)))
        return ["classify", "--train", str(path), "--test", str(path)], \
            [f"{path}:", "20 sequences has a label of its own", "measurement"]
    if case == "folder_as_file":
        return ["text", "--text", str(tmp_path)], [f"{tmp_path}:1:", "folder"]
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["nan_cell", "inf_price", "huge_values", "truncated_gzip",
                                  "csv_field_too_long", "constant_prices", "binary_text",
                                  "prime_not_in_text", "one_class", "one_sequence_per_row",
                                  "one_step_sequences", "one_step_ts", "label_is_a_measurement",
                                  "folder_as_file"])
def test_bad_data_exits_2_before_training(case, tmp_path, capsys):
    argv, words = _bad_data(case, tmp_path)
    assert main(argv + ["--quiet", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and all(w in err for w in words), err


# (command, option, value): each out of range or not a number of the option's kind
BAD_OPTIONS = [("forecast", "--hidden", "0"), ("forecast", "--batch-size", "0"),
               ("forecast", "--lr", "-1"), ("forecast", "--lr", "nan"),
               ("forecast", "--patience", "0"), ("forecast", "--window", "-3"),
               ("forecast", "--horizon", "0"), ("forecast", "--epochs", "0"),
               ("forecast", "--hidden", "2.5"), ("forecast", "--seeds", "0"),
               ("forecast", "--season", "-1"), ("stocks", "--window", "0"),
               ("text", "--layers", "0"), ("text", "--embed", "0"), ("text", "--seq", "0"),
               ("text", "--minutes", "0"), ("text", "--temperature", "nan"),
               ("text", "--batch-size", "0"), ("text", "--sample", "-1"),
               ("classify", "--hidden", "100000"), ("classify", "--lr", "inf")]


@pytest.mark.parametrize("command,option,value", BAD_OPTIONS)
def test_bad_option_exits_2_naming_it(command, option, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, f"{option}={value}", "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {option}: expected " in err and repr(value) in err, err


@pytest.mark.parametrize("module,option,value", [
    (forecast, "hidden", 0), (forecast, "hidden", 1.5), (forecast, "lr", float("nan")),
    (stocks, "window", 0), (text, "temperature", -1.0), (forecast, "seed", 1.5),
    (forecast, "epochs", True)])
def test_bad_option_from_python_is_a_value_error(module, option, value):
    with pytest.raises(ValueError, match=f"--{option.replace('_', '-')}: expected "):
        module.run(quiet=True, **{option: value})


def test_a_season_the_window_cannot_hold_is_refused_before_training(capsys):
    for season, words in [("61", "--season 61 is longer than --window 60"),
                          ("1", "--season 1 is persistence")]:
        assert main(["forecast", "--quiet", "--season", season]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err, err


def test_unknown_backend_and_unusable_output_paths(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [(["--backend", "tpu"], "--backend tpu:"),
             (["--save", str(a_file / "model.npz")], "is a file, not a folder"),
             (["--save", str(tmp_path)], "is a folder"),
             (["--out", str(a_file)], "exists and is not a folder"),
             (["--out", str(a_file / "plots")], "is a file, not a folder")]
    for extra, words in cases:
        assert main(["forecast", "--quiet", *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err, (extra, err)
    with pytest.raises(AppError, match="--backend tpu"):
        forecast.run(backend="tpu", quiet=True)


def test_gpu_backend_without_a_gpu_is_one_line_and_exit_2():
    """A subprocess, outside the CUDA simulator the test suite may use: the real
    ``--backend gpu`` on a machine without a usable GPU."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    r = subprocess.run([sys.executable, "-m", "engine", "forecast", "--backend", "gpu",
                        "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    if r.returncode == 0:
        pytest.skip("a GPU is usable here")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: --backend gpu: ") and r.stderr.count("\n") == 1


def test_an_option_value_starting_with_a_dash_is_attached_to_its_option():
    from engine.apps.cli import _attach_dash_values

    assert _attach_dash_values(["forecast", "--na-values", "-999.99,-9999", "--quiet"]) == \
        ["forecast", "--na-values=-999.99,-9999", "--quiet"]
    assert _attach_dash_values(["forecast", "--na-values", "-", "--na-values", "--quiet"]) == \
        ["forecast", "--na-values=-", "--na-values", "--quiet"]  # an option stays an option
    assert _attach_dash_values(["forecast", "--window", "-3"]) == ["forecast", "--window", "-3"]
