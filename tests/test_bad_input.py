"""Bad input to the public API (issue 20, points 5 and "done when"): each papercut by name,
then a seeded, bounded fuzz of the API and the command line with random bad values, where
every outcome must be a clean ValueError/TypeError (exit 2 and ``error:`` for the CLI), a
success with finite results, and never another exception or a hang."""
import math

import numpy as np
import pytest

import engine
from engine import LSTM, SGD, Adam, Dense, Embedding, Sequential
from engine.apps import cli

F32 = np.float32


def _model():
    return Sequential([LSTM(3, 4, batch_first=True, seed=0), Dense(4, 2, seed=1)],
                      output="many_to_one").compile("mse", Adam(0.01))


# ------------------------------------------------------------------ papercuts, by name
def test_cross_entropy_takes_a_list_of_class_ids(rng):
    logits = rng.standard_normal((2, 3)).astype(F32)
    loss, grad = engine.softmax_cross_entropy(logits, [0, 2])
    want = np.log(np.exp(logits).sum(1)) - logits[[0, 1], [0, 2]]
    assert float(loss) == pytest.approx(want.mean(), rel=1e-5) and grad.shape == (2, 3)


@pytest.mark.parametrize("grads", [[np.ones(3)], None, "g"])
def test_optimizer_step_needs_a_dict_of_gradients(grads):
    model = _model()
    with pytest.raises(TypeError, match="params and grads must be dicts"):
        model.optimizer.step(model.params, grads)


@pytest.mark.parametrize("grads", [[3], b"\x00", 5, [np.arange(3)]])
def test_clip_grad_norm_needs_float_arrays(grads):
    with pytest.raises(TypeError, match="grads must be"):
        engine.clip_grad_norm(grads, 1.0)


@pytest.mark.parametrize("state,error", [(None, TypeError), ({0: np.ones(3)}, TypeError),
                                          ({"9.weight": np.ones(3)}, ValueError)])
def test_sequential_load_state_dict_names_bad_keys(state, error):
    with pytest.raises(error, match="state_dict|keys|unexpected key"):
        _model().load_state_dict(state)


@pytest.mark.parametrize("kind", ["complex", "numeric strings"])
def test_load_state_dict_refuses_complex_and_strings(kind):
    model = _model()
    sd = model.state_dict()
    key = "0.weight_ih_l0"
    sd[key] = sd[key] * (1 + 1j) if kind == "complex" else sd[key].astype(str)
    before = model.state_dict()[key]
    with pytest.raises(ValueError, match="must hold real numbers"):
        model.load_state_dict(sd)
    np.testing.assert_array_equal(model.state_dict()[key], before)  # nothing changed


@pytest.mark.parametrize("value,error", [(float("nan"), ValueError), (math.inf, ValueError),
                                         (-1e308, ValueError), ("1", TypeError),
                                         (1j, TypeError)])
def test_forget_bias_must_be_a_finite_real(value, error):
    with pytest.raises(error, match="forget_bias"):
        Sequential([LSTM(3, 4), Dense(4, 2)], forget_bias=value)


@pytest.mark.parametrize("seed", [1.5, "1", -1])
def test_fit_seed_must_be_a_non_negative_int(rng, seed):
    x, y = rng.standard_normal((4, 5, 3)).astype(F32), rng.standard_normal((4, 2)).astype(F32)
    with pytest.raises((TypeError, ValueError), match="seed"):
        _model().fit(x, y, seed=seed, verbose=False)


@pytest.mark.parametrize("value", [["tanh"], {"tanh": 1}, "sigmoid"])
def test_cell_activation_must_be_a_known_name(value):
    with pytest.raises(ValueError, match="cell_activation must be one of"):
        LSTM(3, 4, cell_activation=value)


def test_layer_sizes_must_chain_when_the_model_is_built():
    with pytest.raises(ValueError, match=r"layers\[1\] \(Dense\) takes 5 features, but "
                                         r"layers\[0\] gives 4"):
        Sequential([LSTM(3, 4), Dense(5, 2)])
    with pytest.raises(ValueError, match=r"layers\[1\] \(LSTM\) takes 3"):
        Sequential([Embedding(10, 4), LSTM(3, 4)])


# ------------------------------------------------------------------ fuzz
BAD_VALUES = [None, -1, 0, 1.5, float("nan"), float("inf"), -1e308, 10 ** 30, "3", "", [3],
              {}, True, 1j, object(), np.float32("nan"), np.array([1, 2]), np.zeros((0, 3)),
              np.full((2, 5, 3), np.nan, F32), np.ones((2, 5, 3), np.float64),
              np.ones((2, 5, 3), np.int64), np.ones((2, 5, 7), F32), "float16", b"\x00"]

# Public calls with their valid arguments; one argument at a time is replaced by a bad value.
def _calls(rng):
    x = rng.standard_normal((2, 5, 3)).astype(F32)
    y = rng.standard_normal((2, 2)).astype(F32)
    logits = rng.standard_normal((2, 3)).astype(F32)
    model = _model()
    return [
        (LSTM, dict(input_size=3, hidden_size=4, num_layers=1, dropout=0.0, proj_size=0,
                    cell_activation="tanh", dtype="float32", seed=0)),
        (Dense, dict(in_features=3, out_features=2, activation=None, dtype="float32")),
        (Embedding, dict(num_embeddings=5, embedding_dim=3)),
        (lambda **k: Sequential([LSTM(3, 4), Dense(4, 2)], **k),
         dict(output="many_to_one", forget_bias=1.0)),
        (lambda **k: LSTM(3, 4, batch_first=True, seed=0)(**k), dict(input=x)),
        (model.compile, dict(loss="mse", optimizer=Adam(), clip_norm=1.0)),
        (model.fit, dict(x=x, y=y, epochs=1, batch_size=2, seed=0, verbose=False)),
        (model.predict, dict(x=x)),
        (model.evaluate, dict(x=x, y=y)),
        (engine.softmax_cross_entropy, dict(logits=logits, targets=np.array([0, 2]))),
        (engine.mse, dict(pred=y, target=y)),
        (Adam, dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)),
        (SGD, dict(lr=0.1, momentum=0.0)),
        (engine.clip_grad_norm, dict(grads={"a": np.ones(3, F32)}, max_norm=1.0)),
        (model.load_state_dict, dict(state_dict=model.state_dict())),
    ]


def _finite(result):
    """Whether every array in ``result`` (nested tuples, lists, dicts) is finite."""
    if isinstance(result, dict):
        return all(_finite(v) for v in result.values())
    if isinstance(result, (tuple, list)):
        return all(_finite(v) for v in result)
    if isinstance(result, np.ndarray) and result.dtype.kind == "f":
        return bool(np.isfinite(result).all())
    return True


def _finite_params(obj):
    """Whether a layer or model that a call built or changed holds finite parameters."""
    params = getattr(obj, "params", None)
    return not isinstance(params, dict) or all(
        np.isfinite(np.asarray(p)).all() for p in params.values())


def test_fuzz_the_api_with_bad_arguments():
    """400 calls, each with one argument replaced by a random bad value."""
    rng = np.random.default_rng(20)
    outcomes = {"refused": 0, "accepted": 0}
    for trial in range(400):
        calls = _calls(rng)
        func, kwargs = calls[rng.integers(len(calls))]
        key = list(kwargs)[rng.integers(len(kwargs))]
        bad = BAD_VALUES[rng.integers(len(BAD_VALUES))]
        kwargs = dict(kwargs, **{key: bad})
        try:
            result = func(**kwargs)
        except (ValueError, TypeError) as e:
            assert str(e), f"trial {trial}: {func} {key}={bad!r}: empty message"
            outcomes["refused"] += 1
            continue
        except Exception as e:  # noqa: BLE001 - what the test is for
            pytest.fail(f"trial {trial}: {getattr(func, '__name__', func)}({key}={bad!r}) "
                        f"raised {type(e).__name__}: {e}")
        assert _finite(result) and _finite_params(result), \
            f"trial {trial}: {key}={bad!r} gave a non-finite result"
        outcomes["accepted"] += 1
    assert outcomes["refused"] > 200  # the fuzz reaches the checks


def test_fuzz_checkpoints_of_random_bytes(tmp_path, rng):
    """Random and mutated files given to engine.load: CheckpointError, never another error."""
    good = tmp_path / "good.npz"
    _model().save(good)
    data = good.read_bytes()
    for trial in range(60):
        blob = bytearray(data)
        if trial % 3 == 0:
            blob = bytearray(rng.integers(0, 256, rng.integers(0, 2000), np.uint8).tobytes())
        else:
            for i in rng.integers(0, len(blob), 1 + trial % 7):
                blob[i] = rng.integers(0, 256)
        path = tmp_path / f"t{trial}.npz"
        path.write_bytes(bytes(blob))
        try:
            engine.load(path)
        except engine.CheckpointError:
            pass


class _TrainingStarted(Exception):
    pass


def test_fuzz_the_command_line(monkeypatch, capsys, rng):
    """200 command lines with random options and values: argparse's exit 2, or ``error: ...``
    and exit 2 before training, or (for values that happen to be valid) the start of
    training; never a traceback."""
    def fit(*args, **kwargs):
        raise _TrainingStarted
    monkeypatch.setattr(engine.Sequential, "fit", fit)
    options = {"forecast": ["--window", "--horizon", "--hidden", "--lr", "--batch-size",
                            "--patience", "--csv", "--column", "--mode", "--load", "--season",
                            "--seeds", "--columns", "--target"],
               "stocks": ["--window", "--hidden", "--lr", "--ticker", "--csv"],
               "text": ["--minutes", "--seq", "--embed", "--layers", "--temperature",
                        "--prime", "--text", "--load"],
               "classify": ["--hidden", "--lr", "--train", "--test", "--load"]}
    common = ["--epochs", "--seed", "--backend", "--save", "--out"]
    values = ["0", "-1", "1.5", "nan", "inf", "1e400", "", "x", "3", "tpu", "/dev/null",
              "/nonexistent/dir/f.npz", "/proc", "99999999999"]
    for trial in range(200):
        command = list(options)[rng.integers(len(options))]
        names = options[command] + common
        argv = [command, "--quiet"]
        for name in rng.choice(names, size=rng.integers(1, 3), replace=False):
            argv += [str(name), str(values[rng.integers(len(values))])]
        try:
            status = cli.main(argv)
        except SystemExit as e:
            status = e.code
        except _TrainingStarted:
            continue
        except Exception as e:  # noqa: BLE001 - what the test is for
            pytest.fail(f"trial {trial}: {argv} raised {type(e).__name__}: {e}")
        err = capsys.readouterr().err
        assert status == 2 and "error: " in err and "Traceback" not in err, (argv, err)
