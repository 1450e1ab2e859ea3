"""Training faults (issue 20, point 3): divergence stops with finite weights restored and
nothing non-finite saved; resume is bit-exact with dropout; arrays given to or returned by
``forward`` cannot change the gradients behind the user's back."""
import numpy as np
import pytest

import engine
from engine import LSTM, SGD, Adam, Dense, Sequential

F32 = np.float32


@pytest.fixture
def xy(rng):
    return rng.standard_normal((64, 10, 3)).astype(F32), rng.standard_normal((64, 2)).astype(F32)


def _model(opt, **lstm):
    return Sequential([LSTM(3, 8, batch_first=True, seed=0, **lstm), Dense(8 * (
        2 if lstm.get("bidirectional") else 1), 2, seed=1)], output="many_to_one").compile(
        "mse", opt)


def _weights(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_divergence_stops_with_the_epochs_start_weights(xy, tmp_path):
    x, y = xy
    model = _model(SGD(1e4))
    start = _weights(model)
    with pytest.raises(engine.TrainingDiverged, match=r"training diverged at epoch 1, batch \d+ "
                                                      r"\(loss = .*start of epoch 1"):
        model.fit(x, y, epochs=3, batch_size=8, verbose=False)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, start[k], err_msg=k)
    model.save(tmp_path / "ok.npz")  # finite weights: saved and loaded
    engine.load(tmp_path / "ok.npz")


def test_divergence_with_early_stopping_restores_the_best_epoch(xy):
    """lr 0.01 for the first epoch's 8 steps, then 1e4: epoch 2 diverges, epoch 1 is best."""
    x, y = xy
    model = _model(SGD(0.01, schedule=lambda step: 0.01 if step < 8 else 1e4))
    straight = _model(SGD(0.01))
    straight.fit(x, y, epochs=1, batch_size=8, seed=0, verbose=False)
    with pytest.raises(engine.TrainingDiverged, match="epoch 2.*best epoch so far \\(1\\)"):
        model.fit(x, y, epochs=3, batch_size=8, seed=0, validation_data=(x[:16], y[:16]),
                  patience=2, verbose=False)
    for k, v in straight.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v, err_msg=k)


def test_save_refuses_non_finite_weights_and_keeps_the_old_file(tmp_path):
    model = _model(Adam())
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()
    model.params["1.bias"][0] = np.nan
    with pytest.raises(ValueError, match=r"cannot save .*'1.bias'.* NaN or Inf"):
        model.save(path)
    assert path.read_bytes() == before


def test_resume_is_bit_exact_with_dropout(xy, tmp_path):
    """Dropout between stacked layers draws from each LSTM's generator, whose state the
    checkpoint keeps: two epochs, save, load, two more equal four straight, bit for bit."""
    x, y = xy
    kw = dict(num_layers=2, dropout=0.4)
    straight = _model(Adam(0.01), **kw)
    h_straight = straight.fit(x, y, epochs=4, batch_size=16, seed=3, verbose=False)
    first = _model(Adam(0.01), **kw)
    h_first = first.fit(x, y, epochs=2, batch_size=16, seed=3, verbose=False)
    first.save(tmp_path / "ck.npz")
    resumed = engine.load(tmp_path / "ck.npz")
    h_rest = resumed.fit(x, y, epochs=2, batch_size=16, seed=3, verbose=False)
    assert h_first["loss"] + h_rest["loss"] == h_straight["loss"]
    for k, v in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)


def _grads_after(layer, x, state, edit):
    """The parameter gradients of one forward/backward, with ``edit(x, state)`` applied to
    the caller's arrays between the two."""
    out = layer(x, state) if state is not None else layer(x)
    out = out[0] if isinstance(out, tuple) else out
    g = np.random.default_rng(7).standard_normal(out.shape).astype(out.dtype)
    edit(x, state)
    layer.backward(g)
    return {k: v.copy() for k, v in layer.grads.items()}


def test_editing_forwards_input_or_state_in_place_leaves_the_gradients(rng):
    """The chosen design: the caller's writeable input and state are copied when a backward
    will read them (bench/results note the cost), so editing them later changes nothing."""
    x = rng.standard_normal((6, 4, 3)).astype(F32)
    state = tuple(rng.standard_normal((1, 4, 8)).astype(F32) for _ in range(2))
    lstm = LSTM(3, 8, seed=0)
    want = _grads_after(lstm, x.copy(), tuple(s.copy() for s in state), lambda x, s: None)

    def scribble(x, s):
        x *= 100.0
        s[0][...] = 5.0
    got = _grads_after(lstm, x, state, scribble)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    dense = Dense(3, 2, activation="tanh", seed=0)
    want = _grads_after(dense, x.copy(), None, lambda x, s: None)
    got = _grads_after(dense, x, None, lambda x, s: x.__imul__(-3.0))
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_editing_forwards_output_in_place_raises(rng):
    x = rng.standard_normal((6, 4, 3)).astype(F32)
    out, _ = LSTM(3, 8, seed=0)(x)
    with pytest.raises(ValueError, match="read-only"):
        out[0] = 0.0
    y = Dense(3, 2, activation="tanh", seed=0)(x)
    with pytest.raises(ValueError, match="read-only"):
        y += 1.0
    with engine.no_grad():  # nothing kept: the caller owns the output
        out, _ = LSTM(3, 8, seed=0)(x)
    out[0] = 0.0


def test_on_batch_can_stop_fit_within_an_epoch(xy):
    x, y = xy
    model, seen = _model(Adam(0.01)), []
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=False,
                        on_batch=lambda loss: seen.append(loss) or len(seen) == 3)
    assert len(seen) == 3 and model.optimizer.steps == 3 and len(history["loss"]) == 1
    assert history["loss"][0] == pytest.approx(np.mean(seen), rel=1e-6)
    with pytest.raises(TypeError, match="on_batch must be a callable"):
        model.fit(x, y, on_batch=3, verbose=False)


def test_text_budget_is_checked_within_the_epoch(tmp_path):
    """--minutes stops training after the update that used it up, not at the end of an
    epoch: here an epoch is 2 million characters and the budget a few updates."""
    from engine.apps import text
    rng = np.random.default_rng(4)
    path = tmp_path / "long.txt"
    path.write_text("".join(rng.choice(list("abcdefgh \n"), 2_000_000)))
    m = text.run(text=str(path), minutes=0.001, seq=10, batch_size=2, hidden=8, embed=4,
                 epochs=3, sample=0, quiet=True)
    assert m["epochs_run"] == 1 and 0 < m["train_chars"] < 1_000_000
