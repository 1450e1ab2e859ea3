"""Sequential: gradients against PyTorch (many-to-one with lengths, many-to-many with a mask),
truncated BPTT, training on small synthetic tasks, determinism, argument checks."""
import re

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from engine import LSTM, SGD, Adam, Dense, Embedding, Sequential, set_forget_bias
from tests.helpers import tol


def _classifier(V=9, E=4, H=6, C=3, dtype="float32", seed=0, **kw):
    return Sequential([Embedding(V, E, dtype=dtype, seed=seed),
                       LSTM(E, H, batch_first=True, dtype=dtype, seed=seed + 1),
                       Dense(H, C, dtype=dtype, seed=seed + 2)], output="many_to_one", **kw)


def _torch_copy(model):
    emb, lstm, dense = model.layers
    dt = getattr(torch, model.dtype.name)
    t_emb = torch.nn.Embedding(emb.num_embeddings, emb.embedding_dim, dtype=dt)
    t_lstm = torch.nn.LSTM(lstm.input_size, lstm.hidden_size, batch_first=True, dtype=dt)
    t_dense = torch.nn.Linear(dense.in_features, dense.out_features, dtype=dt)
    for t, ours in ((t_emb, emb), (t_lstm, lstm), (t_dense, dense)):
        t.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return t_emb, t_lstm, t_dense


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_many_to_one_with_lengths_matches_torch_packed(rng, dtype):
    model = _classifier(dtype=dtype).compile("cross_entropy", SGD(0.0))
    B, T = 5, 7
    x = rng.integers(0, 9, (B, T))
    y = rng.integers(0, 3, B)
    lengths = np.array([7, 3, 5, 1, 6])
    out, _ = model._run(model.backend.asarray(x), None, lengths)
    loss, grad = model._loss_and_grad(out, y, lengths)
    model.backward(grad)

    t_emb, t_lstm, t_dense = _torch_copy(model)
    packed = pack_padded_sequence(t_emb(torch.from_numpy(x)), torch.from_numpy(lengths),
                                  batch_first=True, enforce_sorted=False)
    _, (h_n, _) = t_lstm(packed)
    ref = torch.nn.functional.cross_entropy(t_dense(h_n[0]), torch.from_numpy(y))
    ref.backward()
    np.testing.assert_allclose(loss, ref.item(), **tol(dtype))
    grads = model.grads
    for prefix, t in (("0.", t_emb), ("1.", t_lstm), ("2.", t_dense)):
        for name, p in t.named_parameters():
            np.testing.assert_allclose(grads[prefix + name], p.grad.numpy(), **tol(dtype),
                                       err_msg=prefix + name)


def test_bidirectional_many_to_one_uses_h_n(rng):
    """The reverse half of a bidirectional many-to-one output is the reverse direction's final
    state (step 0), as PyTorch's h_n: output and gradients against torch."""
    lstm = LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype="float64",
                seed=0)
    dense = Dense(8, 2, dtype="float64", seed=1)
    model = Sequential([lstm, dense], output="many_to_one").compile("mse", SGD(0.0))
    x = rng.standard_normal((3, 5, 3))
    y = rng.standard_normal((3, 2))
    out, _ = model._run(x, None, None)
    loss, grad = model._loss_and_grad(out, y, None)
    model.backward(grad)
    t_lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True,
                           dtype=torch.float64)
    t_lstm.load_state_dict({k: torch.from_numpy(v) for k, v in lstm.state_dict().items()})
    t_dense = torch.nn.Linear(8, 2, dtype=torch.float64)
    t_dense.load_state_dict({k: torch.from_numpy(v) for k, v in dense.state_dict().items()})
    _, (h_n, _) = t_lstm(torch.from_numpy(x))
    ref_out = t_dense(torch.cat([h_n[-2], h_n[-1]], dim=1))
    torch.nn.functional.mse_loss(ref_out, torch.from_numpy(y)).backward()
    np.testing.assert_allclose(out, ref_out.detach().numpy(), **tol(np.float64))
    for name, p in t_lstm.named_parameters():
        np.testing.assert_allclose(model.grads["0." + name], p.grad.numpy(), **tol(np.float64))


def test_many_to_many_mask_matches_torch_packed(rng):
    """Time-major LSTM inside the model, MSE averaged over the valid steps only."""
    lstm = LSTM(3, 5, seed=1)  # batch_first=False: the model transposes for it
    model = Sequential([lstm, Dense(5, 2, activation="tanh", seed=2)]).compile("mse", SGD(0.0))
    B, T = 4, 6
    x = rng.standard_normal((B, T, 3)).astype(np.float32)
    y = rng.standard_normal((B, T, 2)).astype(np.float32)
    lengths = np.array([6, 2, 4, 5])
    out, _ = model._run(x, None, lengths)
    loss, grad = model._loss_and_grad(out, y, lengths)
    model.backward(grad)

    t_lstm = torch.nn.LSTM(3, 5, batch_first=True)
    t_lstm.load_state_dict({k: torch.from_numpy(v) for k, v in lstm.state_dict().items()})
    t_dense = torch.nn.Linear(5, 2)
    t_dense.load_state_dict({k: torch.from_numpy(v)
                             for k, v in model.layers[1].state_dict().items()})
    packed = pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                  batch_first=True, enforce_sorted=False)
    h, _ = pad_packed_sequence(t_lstm(packed)[0], batch_first=True, total_length=T)
    mask = torch.from_numpy(np.arange(T)[None, :] < lengths[:, None])
    ref = torch.nn.functional.mse_loss(torch.tanh(t_dense(h))[mask],
                                       torch.from_numpy(y)[mask])
    ref.backward()
    np.testing.assert_allclose(loss, ref.item(), **tol(np.float32))
    for name, p in t_lstm.named_parameters():
        np.testing.assert_allclose(model.grads["0." + name], p.grad.numpy(), **tol(np.float32))


def test_tbptt_carries_state_and_cuts_gradients(rng):
    """With lr=0 the chunked loss equals the full-sequence loss (state is carried), and the
    last chunk's gradients equal PyTorch's with the carried state detached."""
    B, T, K = 3, 8, 5
    x = rng.standard_normal((B, T, 2)).astype(np.float64)
    y = rng.standard_normal((B, T, 1)).astype(np.float64)

    def make():
        return Sequential([LSTM(2, 4, batch_first=True, dtype="float64", seed=0),
                           Dense(4, 1, dtype="float64", seed=1)]).compile("mse", SGD(0.0))

    full = make().evaluate(x, y)
    model = make()
    hist = model.fit(x, y, batch_size=B, shuffle=False, tbptt=K, verbose=False)
    np.testing.assert_allclose(hist["loss"][0], full, **tol(np.float64))

    t_lstm = torch.nn.LSTM(2, 4, batch_first=True, dtype=torch.float64)
    t_lstm.load_state_dict({k: torch.from_numpy(v)
                            for k, v in model.layers[0].state_dict().items()})
    t_dense = torch.nn.Linear(4, 1, dtype=torch.float64)
    t_dense.load_state_dict({k: torch.from_numpy(v)
                             for k, v in model.layers[1].state_dict().items()})
    xt = torch.from_numpy(x)
    _, (h, c) = t_lstm(xt[:, :K])
    out, _ = t_lstm(xt[:, K:], (h.detach(), c.detach()))
    torch.nn.functional.mse_loss(t_dense(out), torch.from_numpy(y[:, K:])).backward()
    for name, p in t_lstm.named_parameters():
        np.testing.assert_allclose(model.grads["0." + name], p.grad.numpy(),
                                   **tol(np.float64))


def test_tbptt_with_one_chunk_is_plain_training(rng):
    x = rng.standard_normal((8, 6, 2)).astype(np.float32)
    y = rng.standard_normal((8, 6, 1)).astype(np.float32)
    runs = []
    for tbptt in (None, 6):
        m = Sequential([LSTM(2, 4, batch_first=True, seed=0), Dense(4, 1, seed=1)])
        m.compile("mse", Adam(0.01)).fit(x, y, epochs=2, batch_size=4, seed=0, tbptt=tbptt,
                                         verbose=False)
        runs.append(m.state_dict())
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])


def test_many_to_one_classifier_learns(rng):
    """Which of 3 marker tokens came first in a sequence of noise tokens."""
    N, T = 384, 10
    x = rng.integers(3, 9, (N, T))
    y = rng.integers(0, 3, N)
    pos = rng.integers(0, T // 2, N)
    x[np.arange(N), pos] = y
    lengths = rng.integers(T // 2 + 1, T + 1, N)
    model = _classifier(H=12, seed=4).compile("cross_entropy", Adam(0.02))
    hist = model.fit(x, y, epochs=12, batch_size=32, seed=0, lengths=lengths, verbose=False)
    assert hist["loss"][-1] < 0.1 < hist["loss"][0]
    pred = model.predict(x, lengths=lengths).argmax(axis=1)
    assert (pred == y).mean() > 0.97


def test_many_to_many_regressor_learns(rng):
    """y_t = x_{t-1} + x_{t-2}: needs two steps of memory."""
    N, T = 256, 12
    x = rng.standard_normal((N, T, 1)).astype(np.float32)
    y = np.zeros_like(x)
    y[:, 1:] += x[:, :-1]
    y[:, 2:] += x[:, :-2]
    model = Sequential([LSTM(1, 16, batch_first=True, seed=0), Dense(16, 1, seed=1)])
    model.compile("mse", Adam(0.01), clip_norm=5.0)
    hist = model.fit(x, y, epochs=20, batch_size=32, seed=0, verbose=False,
                     validation_data=(x[:64], y[:64]))
    assert hist["loss"][-1] < 0.02 < hist["loss"][0]
    assert len(hist["val_loss"]) == 20 and hist["val_loss"][-1] < 0.02
    assert model.predict(x[:5]).shape == (5, T, 1)


def test_same_seed_same_run_bitwise(rng):
    x = rng.integers(0, 9, (40, 6))
    y = rng.integers(0, 3, 40)
    runs = []
    for _ in range(2):
        m = _classifier(seed=7).compile("cross_entropy", Adam(0.01), clip_norm=1.0)
        runs.append((m.fit(x, y, epochs=3, batch_size=8, seed=11, verbose=False),
                     m.state_dict()))
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k])
    other = _classifier(seed=7).compile("cross_entropy", Adam(0.01), clip_norm=1.0)
    assert other.fit(x, y, epochs=3, batch_size=8, seed=12, verbose=False) != runs[0][0]


def test_steps_per_epoch_takes_the_data_in_turn_one_pass_at_a_time(rng, monkeypatch):
    """Fewer batches than the data hold: each epoch is the next part of an endless stream of
    shuffled passes, so every sample is trained on once per pass.  As many as the data hold,
    or more: the usual epochs, batch for batch."""
    x = rng.integers(0, 9, (10, 6))
    y = rng.integers(0, 3, 10)
    runs = []
    for steps in (None, 3):  # 3 batches of 4 hold the 10 samples
        m = _classifier(seed=7).compile("cross_entropy", Adam(0.01))
        runs.append((m.fit(x, y, epochs=2, batch_size=4, seed=1, verbose=False,
                           steps_per_epoch=steps), m.state_dict()))
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k])

    orders, train_epoch = [], Sequential._train_epoch
    def spy(self, x, y, lengths, order, *rest):
        orders.append(np.array(order))
        return train_epoch(self, x, y, lengths, order, *rest)
    monkeypatch.setattr(Sequential, "_train_epoch", spy)
    m = _classifier().compile("cross_entropy", Adam(0.01))
    history = m.fit(x, y, epochs=5, batch_size=2, steps_per_epoch=2, seed=3, verbose=False)
    assert len(history["loss"]) == 5 and [len(o) for o in orders] == [4] * 5
    stream = np.concatenate(orders)  # epoch 3 spans the two passes
    assert sorted(stream[:10]) == sorted(stream[10:]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:])
    with pytest.raises(ValueError, match="steps_per_epoch"):
        m.fit(x, y, steps_per_epoch=0, verbose=False)


def test_forget_bias_is_set_by_default(rng):
    lstm = LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
    Sequential([lstm, Dense(8, 1)])
    H = 4
    for name, p in lstm.params.items():
        if name.startswith("bias_"):
            want = 1.0 if name.startswith("bias_ih") else 0.0
            np.testing.assert_array_equal(p[H:2 * H], want)
            assert np.all(p[:H] != want)  # other gates keep their random init
    off = LSTM(3, 4, seed=0)
    before = off.state_dict()
    Sequential([off], forget_bias=None)
    for k, v in off.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(ValueError, match="bias=True"):
        set_forget_bias(LSTM(3, 4, bias=False))


def test_verbose_shows_a_progress_bar(rng, capsys):
    x = rng.standard_normal((8, 4, 2)).astype(np.float32)
    y = rng.standard_normal((8, 4, 1)).astype(np.float32)
    m = Sequential([LSTM(2, 3, batch_first=True), Dense(3, 1)]).compile("mse", SGD(0.1))
    m.fit(x, y, batch_size=4, verbose=True)
    assert "sample/s" in capsys.readouterr().err
    m.fit(x, y, batch_size=4, verbose=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("output", ["many_to_one", "many_to_many"])
def test_fit_checks_all_data_before_the_first_batch(rng, output):
    """Every sample is checked against the first layer and the output before any update, so a
    bad last sample cannot stop an epoch half way with the weights already changed."""
    m = Sequential([LSTM(3, 4, batch_first=True, seed=0), Dense(4, 2, seed=1)], output=output)
    m.compile("mse", SGD(0.1))
    before = {k: v.copy() for k, v in m.state_dict().items()}
    x = rng.standard_normal((6, 5, 3)).astype(np.float32)
    y = rng.standard_normal((6, 2) if output == "many_to_one" else (6, 5, 2)).astype(np.float32)
    want = "(N=6, F=2)" if output == "many_to_one" else "(N=6, T=5, F=2)"
    bad_x, bad_y = x.copy(), y.copy()
    bad_x[-1, -1, -1] = np.nan
    bad_y[-1] = np.inf
    cases = [
        ((bad_x, y), ValueError, "x contains NaN or Inf"),
        ((x[:, :, :2], y), ValueError, r"x must have shape \(N, T, 3\) for the first layer"),
        ((x.astype(np.float64), y), TypeError, "x must have dtype float32"),
        ((x, bad_y), ValueError, "y contains NaN or Inf"),
        ((x, y[..., :1]), ValueError, f"y must have shape {re.escape(want)} for {output}"),
        ((x, y.astype(np.float64)), TypeError, "y must have dtype float32"),
    ]
    for args, exc, text in cases:
        with pytest.raises(exc, match=text):
            m.fit(*args, batch_size=2, verbose=False)
        with pytest.raises(exc, match=text):
            m.evaluate(*args)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert m.fit(x.tolist(), y.tolist(), batch_size=2, verbose=False)["loss"][0] > 0


def test_rejects_bad_arguments(rng):
    x = rng.integers(0, 9, (6, 5))
    y = rng.integers(0, 3, 6)
    m = _classifier()
    with pytest.raises(ValueError, match="compile"):
        m.fit(x, y)
    m.compile("cross_entropy", SGD(0.1))
    with pytest.raises(ValueError, match="N=6"):
        m.fit(x, y[:5], verbose=False)
    with pytest.raises(TypeError, match="integer class ids"):
        m.fit(x, y.astype(np.float32), verbose=False)
    with pytest.raises(TypeError, match="x must be an array, got int"):
        m.fit(5, y, verbose=False)
    with pytest.raises(ValueError, match=r"token ids in \[0, 9\), got values in \[\d, 9\]"):
        m.fit(np.where(x == 0, 9, x), y, verbose=False)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\).*\[-1, 2\]"):
        m.fit(x, np.where(y == 0, -1, y), verbose=False)
    with pytest.raises(ValueError, match=r"y must have shape \(N=6,\) for many_to_one"):
        m.fit(x, y[:, None], verbose=False)
    with pytest.raises(ValueError, match=r"x must be an array \(N, T, ...\)"):
        m.fit(x[0], y, verbose=False)
    with pytest.raises(ValueError, match=r"1\.\.T=5"):
        m.fit(x, y, lengths=np.array([1, 2, 3, 4, 5, 6]), verbose=False)
    with pytest.raises(ValueError, match=r"1\.\.T=5"):
        m.fit(x, y, lengths=np.array([0, 2, 3, 4, 5, 5]), verbose=False)
    with pytest.raises(ValueError, match=r"shape \(batch=6,\)"):
        m.fit(x, y, lengths=np.array([2, 3]), verbose=False)
    with pytest.raises(ValueError, match="many_to_many"):
        m.fit(x, y, tbptt=2, verbose=False)
    with pytest.raises(ValueError, match="batch_size"):
        m.fit(x, y, batch_size=0, verbose=False)
    bi = Sequential([LSTM(2, 3, bidirectional=True, batch_first=True)]).compile("mse", SGD(0.1))
    with pytest.raises(ValueError, match="unidirectional"):
        bi.fit(rng.standard_normal((4, 6, 2)).astype(np.float32),
               rng.standard_normal((4, 6, 6)).astype(np.float32), tbptt=3, verbose=False)
    with pytest.raises(ValueError, match="loss"):
        m.compile("hinge", SGD(0.1))
    with pytest.raises(TypeError, match="optimizer"):
        m.compile("mse", "adam")
    with pytest.raises(ValueError, match="first layer"):
        Sequential([LSTM(3, 4), Embedding(5, 3)])
    with pytest.raises(ValueError, match="dtype"):
        Sequential([LSTM(3, 4), Dense(4, 2, dtype="float64")])
    with pytest.raises(ValueError, match="many_to_one"):
        Sequential([Dense(3, 2)], output="many_to_one")
    with pytest.raises(ValueError, match="output"):
        Sequential([LSTM(3, 4)], output="last")


@pytest.mark.slow
def test_adding_problem_needs_forget_bias():
    """The issue's experiment (minutes of CPU): T=100, hidden 128, batch 64, Adam 1e-3.
    With forget_bias=1 the test MSE falls below 0.01 within 3,000 steps; with PyTorch's
    default initialisation it gets there later or not at all (PyTorch: stays near 0.16)."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "adding_problem.py"
    spec = importlib.util.spec_from_file_location("adding_problem", path)
    ap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ap)
    on = ap.first_below(ap.run(forget_bias=1.0, verbose=False))
    off = ap.first_below(ap.run(forget_bias=None, verbose=False))
    assert on is not None and on <= 3000
    assert off is None or off > on


def test_dropout_is_on_in_fit_and_off_in_predict_and_evaluate(rng):
    x = rng.standard_normal((16, 6, 3)).astype(np.float32)
    y = rng.standard_normal((16, 1)).astype(np.float32)
    lstm = LSTM(3, 8, num_layers=2, dropout=0.5, batch_first=True, seed=0)
    model = Sequential([lstm, Dense(8, 1, seed=0)], output="many_to_one")
    model.compile("mse", SGD(lr=0.0))
    model.fit(x, y, epochs=1, batch_size=16, verbose=False)
    assert lstm._saved["layers"][1]["mask"] is not None  # dropped while training
    first = model.predict(x)
    np.testing.assert_array_equal(first, model.predict(x))  # deterministic: no dropout
    assert not lstm.training
    loss = model.evaluate(x, y)
    assert loss == pytest.approx(float(((first - y) ** 2).mean()), rel=1e-5)


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_tiny_classifier_and_regressor_train_on_both_backends(rng, backend):
    """The GPU backend runs in the CUDA simulator here: tiny shapes, few steps."""
    x = rng.standard_normal((8, 3, 2)).astype(np.float32)
    y_cls = (x[:, :, 0].sum(axis=1) > 0).astype(np.int64)
    y_reg = np.cumsum(x[:, :, :1], axis=1).astype(np.float32)
    clf = Sequential([LSTM(2, 4, batch_first=True, seed=1, backend=backend),
                      Dense(4, 2, seed=1, backend=backend)], output="many_to_one")
    clf.compile("cross_entropy", Adam(lr=0.3))
    h = clf.fit(x, y_cls, epochs=4, batch_size=8, seed=0, verbose=False)
    assert h["loss"][-1] < 0.5 * h["loss"][0]
    reg = Sequential([LSTM(2, 4, batch_first=True, seed=2, backend=backend),
                      Dense(4, 1, seed=2, backend=backend)])
    reg.compile("mse", Adam(lr=0.3))
    h = reg.fit(x, y_reg, epochs=4, batch_size=8, seed=0, verbose=False)
    assert h["loss"][-1] < 0.5 * h["loss"][0]


def test_summary_counts_parameters_like_torch_and_shows_output_shapes(rng, capsys):
    m = Sequential([Embedding(60, 16, seed=0),
                    LSTM(16, 32, num_layers=2, batch_first=True, bidirectional=True, seed=1),
                    Dense(64, 5, seed=2)], output="many_to_one")
    m.summary()
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    n_lstm = sum(p.numel() for p in torch.nn.LSTM(16, 32, 2, bidirectional=True).parameters())
    assert lines["0:"][-3:] == ["T,", "16)", "960"]
    assert lines["1:"][-3:] == ["(N,", "64)", f"{n_lstm:,}"]
    assert lines["2:"][-3:] == ["(N,", "5)", "325"]
    assert lines["total"][-1] == f"{960 + n_lstm + 325:,}"
    assert m.predict(rng.integers(0, 60, (3, 4))).shape == (3, 5)


def _regressor():
    m = Sequential([LSTM(3, 4, batch_first=True, seed=0), Dense(4, 1, seed=1)],
                   output="many_to_one")
    return m.compile("mse", Adam(0.01))


def test_early_stopping_stops_and_restores_the_best_epoch(rng, monkeypatch):
    """Scripted val losses: best at epoch 4, then 2 epochs without improvement (patience 2).
    The weights are then bit-identical to those of a plain 4-epoch run."""
    x = rng.standard_normal((12, 5, 3)).astype(np.float32)
    y = rng.standard_normal((12, 1)).astype(np.float32)
    script = iter([3.0, 2.0, 2.5, 1.5, 1.6, 1.5, 0.1, 0.1])
    m = _regressor()
    monkeypatch.setattr(m, "_evaluate", lambda *a: next(script))
    h = m.fit(x, y, epochs=8, batch_size=4, seed=3, validation_data=(x, y), patience=2,
              verbose=False)
    assert h["val_loss"] == [3.0, 2.0, 2.5, 1.5, 1.6, 1.5] and h["best_epoch"] == 4
    assert len(h["loss"]) == 6 and m.epoch == 6
    ref = _regressor()
    ref.fit(x, y, epochs=4, batch_size=4, seed=3, verbose=False)
    for k, v in ref.state_dict().items():
        np.testing.assert_array_equal(m.state_dict()[k], v, err_msg=k)


def test_early_stopping_arguments_and_a_diverged_run(rng, monkeypatch, capsys):
    x = rng.standard_normal((8, 5, 3)).astype(np.float32)
    y = rng.standard_normal((8, 1)).astype(np.float32)
    m = _regressor()
    with pytest.raises(ValueError, match="patience .* needs validation_data"):
        m.fit(x, y, patience=2, verbose=False)
    with pytest.raises(ValueError, match="patience must be >= 1"):
        m.fit(x, y, validation_data=(x, y), patience=0, verbose=False)
    monkeypatch.setattr(m, "_evaluate", lambda *a: float("nan"))
    h = m.fit(x, y, epochs=5, validation_data=(x, y), patience=2, verbose=True)
    assert h["best_epoch"] is None and len(h["loss"]) == 2  # last weights kept, no crash
    err = capsys.readouterr().err
    assert "epoch 2: loss" in err and "val_loss nan" in err and "early stop" in err


def test_validation_split_holds_out_the_last_samples(rng):
    x = rng.standard_normal((10, 5, 3)).astype(np.float32)
    y = rng.standard_normal((10, 1)).astype(np.float32)
    lengths = rng.integers(1, 6, 10)
    split = _regressor().fit(x, y, epochs=3, batch_size=4, seed=1, lengths=lengths,
                             validation_split=0.3, patience=2, verbose=False)
    explicit = _regressor().fit(x[:7], y[:7], epochs=3, batch_size=4, seed=1,
                                lengths=lengths[:7], validation_data=(x[7:], y[7:], lengths[7:]),
                                patience=2, verbose=False)
    assert split == explicit and len(split["val_loss"]) == 3
    m = _regressor()
    with pytest.raises(ValueError, match="not both"):
        m.fit(x, y, validation_split=0.3, validation_data=(x, y), verbose=False)
    with pytest.raises(ValueError, match="leaves 0 of 10 samples"):
        m.fit(x, y, validation_split=0.95, verbose=False)
    with pytest.raises(ValueError, match="leaves 10 of 10 samples"):
        m.fit(x, y, validation_split=0.0, verbose=False)
    with pytest.raises(ValueError, match=r"validation_split must be in \[0, 1\)"):
        m.fit(x, y, validation_split=1.0, verbose=False)


def test_predict_carries_states_across_calls_and_batches(rng):
    """Chunks with carried states give the one-shot outputs, whatever the batch size; a
    2-layer LSTM and a second LSTM give a list of two (h, c) pairs."""
    m = Sequential([LSTM(3, 4, num_layers=2, batch_first=True, seed=0), Dense(4, 4, seed=1),
                    LSTM(4, 5, batch_first=True, seed=2)])
    x = rng.standard_normal((5, 7, 3)).astype(np.float32)
    whole, (s1, s2) = m.predict(x, return_states=True)
    assert s1[0].shape == (2, 5, 4) and s2[1].shape == (1, 5, 5)
    head, st = m.predict(x[:, :3], batch_size=2, return_states=True)
    tail, st = m.predict(x[:, 3:], batch_size=2, states=st, return_states=True)
    np.testing.assert_allclose(np.concatenate([head, tail], axis=1), whole, rtol=1e-6,
                               atol=1e-6)
    for got, want in zip(st, (s1, s2)):
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match=r"states must be a list of 2 \(h, c\) pairs.*length 1"):
        m.predict(x, states=[s1])
    with pytest.raises(ValueError, match=r"states\[1\]\[c\] must have shape "
                                         r"\(num_layers\*num_directions=1, N=5, 5\)"):
        m.predict(x, states=[s1, (s2[0], s2[1][:, :4])])


def test_predict_and_evaluate_show_a_bar_only_when_asked(rng, capsys):
    m = _regressor()
    x = rng.standard_normal((10, 5, 3)).astype(np.float32)
    y = rng.standard_normal((10, 1)).astype(np.float32)
    quiet = m.predict(x, batch_size=4)
    assert capsys.readouterr().err == ""
    np.testing.assert_array_equal(m.predict(x, batch_size=4, verbose=True), quiet)
    assert "predict" in capsys.readouterr().err
    assert m.evaluate(x, y, batch_size=4, verbose=True) == m.evaluate(x, y, batch_size=4)
    assert "evaluate" in capsys.readouterr().err
