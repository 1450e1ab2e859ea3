"""Checkpoints: round trip, bit-exact resume, atomic writes, rejection of bad files."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import engine
from engine import LSTM, SGD, Adam, Dense, Embedding, Sequential


def _model(opt):
    m = Sequential([Embedding(8, 4, seed=0), LSTM(4, 6, batch_first=True, seed=1),
                    Dense(6, 3, activation="tanh", seed=2), Dense(3, 3, seed=3)],
                   output="many_to_one")
    return m.compile("cross_entropy", opt, clip_norm=1.0)


@pytest.fixture
def data(rng):
    return rng.integers(0, 8, (30, 7)), rng.integers(0, 3, 30), rng.integers(2, 8, 30)


@pytest.mark.parametrize("make_opt", [lambda: Adam(0.01, weight_decay=0.01),
                                      lambda: SGD(0.1, momentum=0.9, nesterov=True)])
def test_resume_is_bitwise_identical(tmp_path, data, make_opt):
    x, y, lengths = data
    straight = _model(make_opt())
    h_straight = straight.fit(x, y, epochs=4, batch_size=8, seed=5, lengths=lengths,
                              verbose=False)
    first = _model(make_opt())
    h_first = first.fit(x, y, epochs=2, batch_size=8, seed=5, lengths=lengths, verbose=False)
    first.save(tmp_path / "ck.npz")
    resumed = engine.load(tmp_path / "ck.npz")
    h_rest = resumed.fit(x, y, epochs=2, batch_size=8, seed=5, lengths=lengths, verbose=False)
    assert h_first["loss"] + h_rest["loss"] == h_straight["loss"]
    for k, v in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)
    assert resumed.epoch == 4
    assert resumed.optimizer.steps == straight.optimizer.steps


def test_round_trip_keeps_configuration(tmp_path, rng):
    model = Sequential([LSTM(3, 5, num_layers=2, bidirectional=True, dtype="float64", seed=0),
                        Dense(10, 2, activation="sigmoid", bias=False, dtype="float64")],
                       forget_bias=0.5)
    model.save(tmp_path / "m.npz")  # uncompiled: weights and configuration only
    loaded = engine.load(tmp_path / "m.npz")
    assert loaded.loss is None and loaded.forget_bias == 0.5
    lstm = loaded.layers[0]
    assert (lstm.num_layers, lstm.bidirectional, lstm.batch_first, lstm.dtype) == \
        (2, True, False, np.float64)
    assert loaded.layers[1].activation == "sigmoid" and not loaded.layers[1].bias
    x = rng.standard_normal((4, 6, 3))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_save_is_atomic(tmp_path, data, monkeypatch):
    """A failing write leaves the previous checkpoint intact and no temporary file behind."""
    x, y, _ = data
    model = _model(Adam(0.01))
    path = tmp_path / "ck.npz"
    model.save(path)
    before = path.read_bytes()
    model.fit(x, y, batch_size=10, verbose=False)

    def broken_savez(f, **arrays):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ck.npz"]


def test_rejects_truncated_and_foreign_files(tmp_path):
    good = tmp_path / "good.npz"
    _model(Adam()).save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.npz"):
        engine.load(truncated)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="notes.npz"):
        engine.load(text)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.ones(3))
    with pytest.raises(ValueError, match="foreign.npz.*not an lstm-engine checkpoint"):
        engine.load(foreign)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __format__=np.array("lstm-engine-checkpoint"),
             __version__=np.array(1), __config__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled.npz"):
        engine.load(pickled)
    with pytest.raises(FileNotFoundError):
        engine.load(tmp_path / "missing.npz")


def test_rejects_inconsistent_contents(tmp_path):
    path = tmp_path / "ck.npz"
    _model(Adam()).save(path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["param/1.weight_hh_l0"] = arrays["param/1.weight_hh_l0"][:, :3]
    bad = tmp_path / "bad_shape.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match="bad_shape.npz.*weight_hh_l0"):
        engine.load(bad)
    config = json.loads(str(arrays["__config__"]))
    config["layers"][0]["type"] = "Conv1d"
    arrays["__config__"] = np.array(json.dumps(config))
    odd = tmp_path / "odd.npz"
    np.savez(odd, **arrays)
    with pytest.raises(ValueError, match="odd.npz"):
        engine.load(odd)


def test_metadata_round_trips_and_bad_metadata_writes_nothing(tmp_path):
    model = _model(Adam())
    model.metadata = {"vocab": "abcé\n", "scaler": {"mean": [1.5, -2.0], "scale": 0.25},
                      "window": 60, "classes": ["a", "b"], "note": None, "ok": True}
    path = tmp_path / "ck.npz"
    model.save(path)
    assert engine.load(path).metadata == model.metadata
    before = path.read_bytes()
    for bad, text in [({"t": (1, 2)}, "come back changed"), ({1: "x"}, "come back changed"),
                      ({"x": np.float32(1)}, "JSON values"), ({"x": float("nan")}, "JSON"),
                      (["not", "a", "dict"], "must be a dict")]:
        model.metadata = bad
        with pytest.raises(TypeError, match=text):
            model.save(path)
        assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ck.npz"]


def test_save_names_a_missing_directory_and_follows_the_umask(tmp_path):
    model = _model(Adam())
    with pytest.raises(FileNotFoundError, match=r"cannot save to .*m\.npz: no directory"):
        model.save(tmp_path / "no" / "such" / "m.npz")
    old = os.umask(0o027)
    try:
        model.save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600


def test_umask_is_read_with_and_without_proc(monkeypatch):
    from engine import checkpoint

    old = os.umask(0o027)
    try:
        assert checkpoint._umask() == 0o027

        def no_proc(*a, **k):
            raise OSError("no /proc")

        monkeypatch.setattr(checkpoint, "open", no_proc, raising=False)
        assert checkpoint._umask() == 0o027
    finally:
        assert os.umask(old) == 0o027  # the fallback put the mask back


# ------------------------------------------------------------------ untrusted files (issue 20)
def _entries(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _trained(tmp_path, data):
    x, y, _ = data
    model = _model(Adam(0.01))
    model.fit(x, y, batch_size=10, verbose=False)
    path = tmp_path / "ck.npz"
    model.save(path)
    return path


def _with(tmp_path, path, name, change):
    """A copy of checkpoint ``path`` with ``change(entries)`` applied, saved as ``name``."""
    arrays = _entries(path)
    change(arrays)
    out = tmp_path / name
    np.savez(out, **arrays)
    return out


def _config(change):
    def apply(arrays):
        config = json.loads(str(arrays["__config__"]))
        change(config)
        arrays["__config__"] = np.array(json.dumps(config))
    return apply


def _set(key, value):
    def apply(arrays):
        arrays[key] = value
    return apply


def _drop(key):
    def apply(arrays):
        del arrays[key]
    return apply


def _deep(arrays):
    """Metadata nested 100,000 lists deep (json.dumps itself cannot write it)."""
    config = json.loads(str(arrays["__config__"]))
    config["metadata"] = "DEEP"
    deep = "[" * 100_000 + "]" * 100_000
    arrays["__config__"] = np.array(json.dumps(config).replace('"DEEP"', deep))


MALFORMED = {
    "no_version": _drop("__version__"),
    "format_not_a_string": _set("__format__", np.arange(3)),
    "config_2d": _set("__config__", np.array([["{}"]])),
    "epoch_1e400": _config(lambda c: c.update(epoch=float("inf"))),
    "layers_not_a_list": _config(lambda c: c.update(layers={"0": 1})),
    "ten_million_layers": _config(lambda c: c["layers"][1]["args"].update(num_layers=10 ** 7)),
    "hidden_declared_huge": _config(lambda c: c["layers"][1]["args"].update(hidden_size=4096)),
    "size_is_a_string": _config(lambda c: c["layers"][2]["args"].update(in_features="6")),
    "deep_json": _deep,
    "metadata_a_list": _config(lambda c: c.update(metadata=[1, 2])),
    "weights_complex": lambda a: a.update({"param/3.bias": a["param/3.bias"] * 1j}),
    "nan_exp_avg": lambda a: a["optim/3.bias/exp_avg"].__setitem__(0, np.nan),
    "negative_exp_avg_sq": lambda a: a["optim/3.bias/exp_avg_sq"].__setitem__(0, -1.0),
    "missing_buffer": _drop("optim/2.weight/exp_avg"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_every_malformed_checkpoint_raises_checkpoint_error(case, tmp_path, data):
    bad = _with(tmp_path, _trained(tmp_path, data), f"{case}.npz", MALFORMED[case])
    with pytest.raises(engine.CheckpointError, match=f"{case}.npz: ") as exc:
        engine.load(bad)
    assert isinstance(exc.value, ValueError)


def test_unused_entries_are_never_read(tmp_path, data):
    """An extra entry that could not even be read (a pickle) is skipped, as a 3 GB one
    would be: only the entries the configuration names are read."""
    path = _trained(tmp_path, data)
    odd = _with(tmp_path, path, "extra.npz",
                _set("junk/huge", np.array([{"pickled": True}], dtype=object)))
    model = engine.load(odd)
    for (k, a), b in zip(engine.load(path).state_dict().items(), model.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_folders_and_pipes_are_refused_without_blocking(tmp_path):
    with pytest.raises(engine.CheckpointError, match="is a folder"):
        engine.load(tmp_path)
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(engine.CheckpointError, match="not a regular file"):
        engine.load(fifo)


def test_layer_sizes_are_capped():
    with pytest.raises(ValueError, match="num_layers must be <= 1024"):
        LSTM(4, 8, num_layers=10 ** 7)
    with pytest.raises(ValueError, match="hidden_size must be <= "):
        LSTM(4, 10 ** 9)


def test_save_removes_temporaries_of_dead_saves_only(tmp_path, data):
    """A save killed before its rename leaves ``.<name>.saving-<pid>-*.npz``: the next save of
    the same file removes those of processes that no longer run, and nothing else."""
    path = _trained(tmp_path, data)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = tmp_path / f".ck.npz.saving-{done.stdout.strip()}-x1.npz"
    alive = tmp_path / f".ck.npz.saving-{os.getppid()}-x2.npz"
    other = tmp_path / f".other.npz.saving-{done.stdout.strip()}-x3.npz"
    for f in (dead, alive, other):
        f.write_bytes(b"partial")
    engine.load(path).save(path)
    assert not dead.exists() and alive.exists() and other.exists()
