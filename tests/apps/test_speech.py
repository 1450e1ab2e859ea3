"""``python -m engine speech``: tiny runs of the whole command (digits, a held-out speaker, a
user's manifest, --save/--load/--transcribe, the plot), its pieces (features, encoding, the
length batches), and its errors, which come before any training."""
import json
import wave

import numpy as np
import pytest

import engine
from engine.apps import speech
from engine.apps.cli import main
from engine.apps.speech_data import load_fsdd

TINY = dict(epochs=1, strings=12, hidden=6, batch_size=64, quiet=True)


@pytest.fixture(scope="module")
def fsdd():
    return load_fsdd()


@pytest.fixture
def few(fsdd, monkeypatch):
    """The command on a fifth of FSDD (takes 0, 5, 10, ...: 50 test, 450 train recordings)
    and 6 test strings per set, to keep the runs short."""
    monkeypatch.setattr(speech, "load_fsdd", lambda: [r for r in fsdd if r.index % 5 == 0])
    monkeypatch.setattr(speech, "TEST_STRINGS", 6)


def write_wav(path, samples, rate=speech.RATE):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def test_digits_run_reports_every_set_and_plots(tmp_path, few):
    m = speech.run(heldout_speaker="theo", out=str(tmp_path), **TINY)
    assert set(m["results"]) == {"test strings", "isolated test digits", "theo strings",
                                 "theo isolated digits"}
    for result in m["results"].values():
        for how in ("greedy", "beam"):
            assert 0 <= result[how]["label_error_rate"] and \
                0 <= result[how]["sequence_accuracy"] <= 1
    cm = np.array(m["results"]["isolated test digits"]["confusion_matrix"])
    assert cm.shape == (10, 11) and cm.sum() == 40  # 4 speakers x 10 digits x take 0
    assert m["history"]["audio_seconds_per_second"] > 0
    assert (tmp_path / "speech.png").stat().st_size > 10_000


def test_save_load_and_transcribe(tmp_path, fsdd, few, capsys):
    path = tmp_path / "asr.npz"
    wav = write_wav(tmp_path / "three.wav", fsdd[30].samples)
    trained = speech.run(save=str(path), transcribe=str(wav), **TINY)
    assert set(trained["transcript"]) <= set(speech.DIGITS)
    applied = speech.run(load=str(path), quiet=True, out=str(tmp_path / "a"))
    assert applied["results"] == trained["results"]  # the confusion matrix too
    assert (tmp_path / "a" / "speech.png").stat().st_size > 10_000
    capsys.readouterr()
    again = speech.run(load=str(path), transcribe=str(wav), quiet=True, out=str(tmp_path / "b"))
    assert again["transcript"] == trained["transcript"]
    assert capsys.readouterr().out == again["transcript"] + "\n"  # quiet: the transcript alone
    assert json.loads((tmp_path / "b" / "speech.json").read_text())["transcript"] == \
        again["transcript"] and (tmp_path / "b" / "speech.png").stat().st_size > 10_000
    # a recording at 16 kHz is resampled, and gives the transcript of its 8 kHz original
    up = write_wav(tmp_path / "up.wav", np.repeat(fsdd[30].samples, 2), rate=16000)
    assert isinstance(speech.run(load=str(path), transcribe=str(up), quiet=True)["transcript"],
                      str)
    assert engine.load(path).metadata["alphabet"] == speech.DIGITS
    cut = tmp_path / "cut.wav"  # a library warning, in the command line's form
    cut.write_bytes(wav.read_bytes()[:-1000])
    capsys.readouterr()
    assert main(["speech", "--load", str(path), "--transcribe", str(cut), "--quiet"]) == 0
    assert capsys.readouterr().err.startswith(f"warning: {cut}: the file holds ")


def test_manifest_with_its_own_alphabet(tmp_path, fsdd, capsys):
    rows = ["file,transcript"]
    words = {0: "o", 1: "i", 2: "t"}
    chosen = [r for d in words for r in [r for r in fsdd if r.digit == d][:7]]
    for i, r in enumerate(chosen):
        write_wav(tmp_path / f"{i}.wav", r.samples)
        rows.append(f"{i}.wav,{words[r.digit]}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    saved = tmp_path / "m.npz"
    m = speech.run(wavs=str(tmp_path), manifest=str(tmp_path / "m.csv"), save=str(saved),
                   **TINY)
    assert m["alphabet"] == ["i", "o", "t"]
    assert set(m["results"]) == {"test recordings"}
    rows[10] = rows[10].split(",")[0] + ",tz"  # a test recording's letter the model lacks
    (tmp_path / "new.csv").write_text("\n".join(rows) + "\n")
    assert main(["speech", "--load", str(saved), "--wavs", str(tmp_path), "--manifest",
                 str(tmp_path / "new.csv"), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'new.csv'}:11: transcript 'tz' has "
                                       "'z', which the model's alphabet 'iot' lacks\n")


def test_a_transcript_longer_than_its_audio_is_named_by_line(tmp_path, fsdd, capsys):
    write_wav(tmp_path / "a.wav", fsdd[0].samples[:800])  # 0.1 s: 3 output steps
    (tmp_path / "m.csv").write_text("file,transcript\na.wav,ok\na.wav,abcd\n")
    assert main(["speech", "--wavs", str(tmp_path), "--manifest", str(tmp_path / "m.csv"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "m.csv:3: transcript of 4 labels needs at least 4 frames, the audio gives 3" in err


@pytest.mark.parametrize("argv, words", [
    (["--wavs", "somewhere"], "give both --wavs DIR and --manifest CSV"),
    (["--heldout-speaker", "bob"], "unknown speaker 'bob'"),
    (["--transcribe", "README.md"], "README.md: not a readable WAV file"),
    (["--transcribe", "missing.wav"], "missing.wav: no such file"),
    (["--transcribe", "tests"], "tests:1: is a folder: expected a file"),
])
def test_bad_options_stop_before_training(argv, words, monkeypatch, capsys):
    def fit(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(engine.Sequential, "fit", fit)
    assert main(["speech", "--quiet", *argv]) == 2
    assert words in capsys.readouterr().err


def test_a_recording_of_one_frame_or_less_stops_before_training(tmp_path, fsdd, monkeypatch,
                                                                capsys):
    """25 ms (200 samples at 8 kHz) is one analysis frame, which the recording's own mean
    makes all zeros: an error, not an empty transcript.  One sample more is two frames."""
    def fit(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(engine.Sequential, "fit", fit)
    for n in (1, 120, 200):
        write_wav(tmp_path / "short.wav", fsdd[0].samples[:n])
        assert main(["speech", "--quiet", "--transcribe", str(tmp_path / "short.wav")]) == 2
        assert f"short.wav: {n / 8:.1f} ms of audio, no longer than one 25 ms analysis frame" \
            in capsys.readouterr().err
    write_wav(tmp_path / "short.wav", fsdd[0].samples[:201])
    args = speech.parse_options(speech.add_arguments, 1, None,
                                {"transcribe": str(tmp_path / "short.wav"), "quiet": True})
    assert len(speech.read_recording(args, lambda line: None)) == 201


def test_features_state_round_trip_and_encoding(fsdd):
    features = speech.Features.fit([r.samples for r in fsdd[:20]])
    again = speech.Features.from_state(features.state())
    np.testing.assert_array_equal(again(fsdd[3].samples), features(fsdd[3].samples))
    x, lengths = features.batch([r.samples for r in fsdd[:3]])
    assert x.dtype == np.float32 and x.shape == (3, lengths.max(), speech.N_MELS)
    assert np.all(x[2, lengths[2]:] == 0)
    y = speech.encode(["ab", "", "ba"], ["a", "b"])
    np.testing.assert_array_equal(y, [[1, 2], [-1, -1], [2, 1]])
    with pytest.raises(ValueError, match="expected 40 means"):
        speech.Features.from_state({"mean": [0.0], "std": [1.0]})


def test_length_batches_group_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 500, size=103)
    order = speech.length_batches(lengths, 10, rng)
    assert sorted(order) == list(range(103))
    ranked = np.empty(103, int)
    ranked[np.argsort(lengths, kind="stable")] = np.arange(103)
    for start in range(0, 103, 10):  # each batch: consecutive ranks, in some order of batches
        ranks = np.sort(ranked[order[start:start + 10]])
        assert ranks[-1] - ranks[0] == len(ranks) - 1 and ranks[0] % 10 == 0


def test_output_steps_match_the_model(fsdd):
    args = speech.parse_options(speech.add_arguments, 1, None, dict(hidden=4))
    model = speech.build_model(args, 10)
    features = speech.Features.fit([fsdd[0].samples])
    for n in (1, 200, 201, 1000, 3333):
        x, lengths = features.batch([np.resize(fsdd[0].samples, n)])
        assert model.predict(x, lengths=lengths).shape[1] == speech.output_steps(n)


def test_cosine_learning_rate_falls_from_lr_to_its_floor():
    rates = [speech.cosine_lr(3e-3, e, 20) for e in range(20)]
    assert rates[0] == pytest.approx(3e-3) and rates[-1] == pytest.approx(0.05 * 3e-3)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert speech.cosine_lr(1e-2, 0, 1) == pytest.approx(1e-2)


def test_speech_runs_on_the_gpu_backend(tmp_path, fsdd):
    """A tiny manifest through the GPU backend (the CUDA simulator without a GPU: the CTC
    kernels included)."""
    rows = ["file,transcript"]
    for i, r in enumerate([r for r in fsdd if r.index == 0][:10]):
        write_wav(tmp_path / f"{i}.wav", r.samples[:800])
        rows.append(f"{i}.wav,{'ab'[r.digit % 2]}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    m = speech.run(wavs=str(tmp_path), manifest=str(tmp_path / "m.csv"), backend="gpu",
                   epochs=1, hidden=3, quiet=True)
    assert m["alphabet"] == ["a", "b"] and np.isfinite(m["history"]["loss"][0])


def test_singles_draws_that_many_recordings_afresh(fsdd):
    args = speech.parse_options(speech.add_arguments, 1, None, dict(strings=3, singles=7))
    train = [r for r in fsdd if r.index >= 5][:40]
    rng = np.random.default_rng(0)
    first, first_texts = speech.epoch_examples(train, args, rng)
    second, _ = speech.epoch_examples(train, args, rng)
    assert len(first) == len(second) == 10 and all(len(t) == 1 for t in first_texts[3:])
    assert any(len(a) != len(b) for a, b in zip(first[3:], second[3:]))  # drawn afresh
