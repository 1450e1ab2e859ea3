"""The recognizer's stack in Sequential: BiLSTM over variable lengths, Subsample between
layers, a Dense per frame and the CTC loss, against the same model in PyTorch
(pack_padded_sequence, nn.functional.ctc_loss) in float64; the Subsample layer alone; the
transcript checks; a checkpoint; the GPU backend (simulator) against the CPU."""
import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import engine
from engine import LSTM, SGD, Dense, Sequential
from engine.layers import Subsample

TORCH_TOL = dict(rtol=1e-9, atol=1e-12)


def recognizer(F=3, H=5, C=4, factor=2, dtype="float64", backend="cpu"):
    layers = [LSTM(F, H, bidirectional=True, batch_first=True, dtype=dtype, seed=1,
                   backend=backend),
              Subsample(2 * H, factor, dtype=dtype, backend=backend),
              LSTM(2 * H * factor, H, bidirectional=True, batch_first=True, dtype=dtype,
                   seed=2, backend=backend),
              Dense(2 * H, C, dtype=dtype, seed=3, backend=backend)]
    return Sequential(layers).compile("ctc", SGD(0.1))


def batch(rng, N=5, T=13, F=3, S=3):
    x = rng.normal(size=(N, T, F))
    lengths = rng.integers(T // 2 + 1, T + 1, size=N)
    lengths[0] = T
    y = np.full((N, S), -1)
    for i, L in enumerate(rng.integers(0, S + 1, size=N)):
        y[i, :L] = rng.integers(1, 4, size=L)
    y[1, :2] = [2, 2]  # a repeat
    return x, y, lengths


def torch_forward(model, x, lengths):
    """The same network in torch: packed BiLSTM, zero-padded stacking of frame pairs, packed
    BiLSTM, Linear; returns log-probabilities (T', N, C) and the output lengths."""
    sd = {k: torch.tensor(v) for k, v in model.state_dict().items()}
    l0, l2 = model.layers[0], model.layers[2]
    lstm0 = torch.nn.LSTM(l0.input_size, l0.hidden_size, bidirectional=True, batch_first=True,
                          dtype=torch.float64)
    lstm2 = torch.nn.LSTM(l2.input_size, l2.hidden_size, bidirectional=True, batch_first=True,
                          dtype=torch.float64)
    dense = torch.nn.Linear(model.layers[3].in_features, model.layers[3].out_features,
                            dtype=torch.float64)
    for i, module in ((0, lstm0), (2, lstm2), (3, dense)):
        module.load_state_dict({k[2:]: v for k, v in sd.items() if k.startswith(f"{i}.")})
    k = model.layers[1].factor
    xt = torch.tensor(x)
    out, _ = lstm0(pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True,
                                        enforce_sorted=False))
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    N, T, D = out.shape
    out = torch.cat([out, out.new_zeros(N, -T % k, D)], 1).reshape(N, -1, k * D)
    sub = torch.tensor(-(-lengths // k))
    out, _ = lstm2(pack_padded_sequence(out, sub, batch_first=True, enforce_sorted=False))
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=-(-T // k))
    logp = dense(out).log_softmax(2).transpose(0, 1)
    return logp, sub, [(i, m) for i, m in ((0, lstm0), (2, lstm2), (3, dense))]


def test_loss_and_every_gradient_match_torch(rng):
    model = recognizer()
    x, y, lengths = batch(rng)
    out = model.forward(x, lengths=lengths)
    loss, grad = model._loss_and_grad(out, y, lengths)
    model.backward(grad)
    logp, sub, modules = torch_forward(model, x, lengths)
    tl = torch.tensor((y != -1).sum(1))
    want = torch.nn.functional.ctc_loss(logp, torch.tensor(np.where(y < 0, 1, y)), sub, tl)
    want.backward()
    np.testing.assert_allclose(float(loss), want.item(), **TORCH_TOL)
    for i, module in modules:
        for name, p in module.named_parameters():
            np.testing.assert_allclose(model.grads[f"{i}.{name}"], p.grad.numpy(), **TORCH_TOL,
                                       err_msg=f"{i}.{name}")


def test_evaluate_is_ctc_loss_of_predict(rng):
    model = recognizer()
    x, y, lengths = batch(rng, N=7)
    out = model.predict(x, lengths=lengths)
    steps = model.output_lengths(lengths)
    assert out.shape == (7, 7, 4) and np.array_equal(steps, -(-lengths // 2))
    direct, _ = engine.ctc_loss(np.ascontiguousarray(out.transpose(1, 0, 2)), y, steps,
                                (y != -1).sum(1))
    np.testing.assert_allclose(model.evaluate(x, y, lengths=lengths, batch_size=3),
                               float(direct), rtol=1e-12)


def test_fit_learns_to_transcribe(rng):
    """Each sample is a few 'words': bursts of a label's own input pattern with quiet gaps;
    after training the greedy transcript of most samples is right."""
    from engine.decoding import greedy_decode

    N, T, C = 48, 24, 4
    patterns = rng.normal(size=(C, 3)) * 2
    x = rng.normal(scale=0.3, size=(N, T, 3))
    y = np.full((N, 3), -1)
    for i in range(N):
        labels = rng.integers(1, C, size=rng.integers(1, 4))
        for j, label in enumerate(labels):
            x[i, 2 + 7 * j: 6 + 7 * j] += patterns[label]
        y[i, :len(labels)] = labels
    model = Sequential([LSTM(3, 16, bidirectional=True, batch_first=True, seed=0),
                        Subsample(32, 2), Dense(64, C, seed=1)])
    model.compile("ctc", engine.Adam(0.02))
    x = x.astype(np.float32)
    history = model.fit(x, y, epochs=40, batch_size=8, seed=0, verbose=False)
    assert history["loss"][-1] < 0.25 * history["loss"][0]
    hyps = greedy_decode(model.predict(x).transpose(1, 0, 2))
    refs = [list(row[row > 0]) for row in y]
    assert np.mean([h == r for h, r in zip(hyps, refs)]) > 0.8


def test_subsample_stacks_frames_and_its_backward_is_the_adjoint(rng):
    layer = Subsample(3, 4, dtype="float64")
    x = rng.normal(size=(2, 10, 3))
    out = layer.forward(x)
    assert out.shape == (2, 3, 12)
    np.testing.assert_array_equal(out[1, 1], x[1, 4:8].reshape(-1))
    np.testing.assert_array_equal(out[0, 2], np.concatenate([x[0, 8:].reshape(-1),
                                                             np.zeros(6)]))
    g = rng.normal(size=out.shape)
    np.testing.assert_allclose((out * g).sum(), (x * layer.backward(g)).sum(), rtol=1e-12)
    assert np.array_equal(layer.out_lengths(np.array([1, 4, 5, 10])), [1, 1, 2, 3])


@pytest.mark.parametrize("y, match", [
    ([[1, -1, 2]] + [[1, 2, 3]] * 4, r"y\[0\].*-1 is padding and may only end a row"),
    ([[1, 0, 2]] + [[1, 2, 3]] * 4, r"y\[0\].*labels must lie in 1..3 \(0 is the blank\)"),
    ([[1, 2, 3]] * 4 + [[1, 4, -1]], r"y\[4\].*labels must lie in 1..3"),
    ([[1.0, 2.0, 3.0]] * 5, r"y must be \(N=5, S\) integer transcripts"),
])
def test_bad_transcripts_are_refused_before_training(rng, y, match):
    model = recognizer()
    x, _, lengths = batch(rng)
    with pytest.raises(ValueError, match=match):
        model.fit(x, np.array(y), lengths=lengths, verbose=False)


def test_a_transcript_too_long_for_its_output_steps_is_refused(rng):
    model = recognizer()
    x, y, lengths = batch(rng, T=13)
    y = np.full((5, 5), -1)
    y[:, :2] = 1
    y[3] = [1, 1, 2, 2, 3]  # needs 5 + 2 = 7 steps: 13 frames give 7, 12 give 6
    lengths[3] = 12
    with pytest.raises(ValueError, match=r"y\[3\]: a transcript of 5 labels needs at least 7 "
                                         r"output steps.*sample 3 gives 6"):
        model.fit(x, y, lengths=lengths, verbose=False)
    lengths[3] = 13
    model.fit(x, y, lengths=lengths, verbose=False, epochs=1)


def test_ctc_needs_whole_sequences_and_many_to_many(rng):
    with pytest.raises(ValueError, match="loss='ctc' needs output='many_to_many'"):
        Sequential([LSTM(3, 4, batch_first=True), Dense(4, 3)],
                   output="many_to_one").compile("ctc", SGD(0.1))
    model = Sequential([LSTM(3, 4, batch_first=True), Dense(4, 3)]).compile("ctc", SGD(0.1))
    x = rng.normal(size=(2, 6, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="tbptt cannot cut a CTC loss"):
        model.fit(x, np.array([[1, 2], [2, -1]]), tbptt=3, verbose=False)


def test_checkpoint_keeps_the_subsample_layer(rng, tmp_path):
    model = recognizer()
    x, y, lengths = batch(rng)
    model.save(tmp_path / "m.npz")
    loaded = engine.load(tmp_path / "m.npz")
    assert isinstance(loaded.layers[1], Subsample) and loaded.layers[1].factor == 2
    np.testing.assert_array_equal(loaded.predict(x, lengths=lengths),
                                  model.predict(x, lengths=lengths))


def test_gpu_backend_matches_cpu(rng):
    x, y, lengths = batch(rng, N=2, T=6, S=2)
    lengths[1] = 5  # 3 output steps: enough for [2, 2]
    losses, grads = [], []
    for backend in ("cpu", "gpu"):
        model = recognizer(H=3, backend=backend)
        out = model.forward(x, lengths=lengths)
        loss, grad = model._loss_and_grad(out, y, lengths)
        model.backward(grad)
        losses.append(float(loss))
        grads.append({k: model.backend.to_numpy(g) for k, g in model.grads.items()})
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-10)
    for k in grads[0]:
        np.testing.assert_allclose(grads[1][k], grads[0][k], rtol=1e-8, atol=1e-12, err_msg=k)
