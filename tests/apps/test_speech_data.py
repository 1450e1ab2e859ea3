"""engine.apps.speech_data: the vendored FSDD loads whole and splits as documented, connected-digit
strings are spliced exactly as described (checked on synthetic recordings whose lengths encode
speaker, digit and take), and a user's manifest reads or fails with FILE:LINE: problem."""
import collections
import io
import re
import tarfile
import time
import wave

import numpy as np
import pytest

from engine import audio
from engine.apps import speech_data as sd

RATE = 8000


@pytest.fixture(scope="module")
def fsdd():
    """The vendored FSDD, read once for the module (about 1-2 s)."""
    start = time.perf_counter()
    recordings = sd.load_fsdd()
    print(f"load_fsdd: {time.perf_counter() - start:.2f} s")
    return recordings


def key(r):
    return r.speaker, r.digit, r.index


def wav_bytes(values, rate=RATE):
    """16-bit mono WAV file contents holding the int16 ``values``."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(values, dtype="<i2").tobytes())
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# FSDD
# ---------------------------------------------------------------------------------------------

def test_fsdd_counts(fsdd):
    assert len(fsdd) == 2500
    counts = collections.Counter((r.speaker, r.digit) for r in fsdd)
    assert sorted({s for s, _ in counts}) == ["george", "jackson", "nicolas", "theo", "yweweler"]
    assert sorted({d for _, d in counts}) == list(range(10))
    assert set(counts.values()) == {50}
    assert {r.rate for r in fsdd} == {8000}
    assert sorted({r.index for r in fsdd}) == list(range(50))
    for r in fsdd:
        assert r.samples.dtype == np.float32 and r.samples.ndim == 1 and r.samples.size > 0
        assert np.abs(r.samples).max() <= 1.0
    assert [key(r) for r in fsdd] == sorted(key(r) for r in fsdd)


def test_split_without_heldout(fsdd):
    split = sd.split_fsdd(fsdd)
    assert [len(split[k]) for k in ("train", "test", "heldout")] == [2250, 250, 0]
    assert all(r.index >= 5 for r in split["train"]) and all(r.index < 5 for r in split["test"])
    assert not {key(r) for r in split["train"]} & {key(r) for r in split["test"]}


def test_split_with_heldout(fsdd):
    split = sd.split_fsdd(fsdd, heldout_speaker="theo")
    assert [len(split[k]) for k in ("train", "test", "heldout")] == [1800, 200, 500]
    assert {r.speaker for r in split["heldout"]} == {"theo"}
    assert "theo" not in {r.speaker for r in split["train"] + split["test"]}
    keys = [{key(r) for r in split[k]} for k in ("train", "test", "heldout")]
    assert sum(map(len, keys)) == len(set.union(*keys)) == 2500


def test_split_unknown_speaker(fsdd):
    with pytest.raises(ValueError, match=r"unknown speaker 'bob'.*george.*yweweler"):
        sd.split_fsdd(fsdd, heldout_speaker="bob")


def write_tar(path, members):
    """An xz tar at ``path`` with ``members``: name -> bytes."""
    with tarfile.open(path, "w:xz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_load_fsdd_small_archive_sorted(tmp_path):
    members = {f"recordings/{d}_{s}_{i}.wav": wav_bytes([100 * d + i + 1] * 10)
               for s in ("zed", "amy") for d in (3, 1) for i in (10, 2)}
    recordings = sd.load_fsdd(write_tar(tmp_path / "small.tar.xz", members))
    assert [key(r) for r in recordings] == sorted(key(r) for r in recordings)
    assert [r.speaker for r in recordings][:4] == ["amy"] * 4
    r = recordings[0]
    assert (r.digit, r.index, r.rate) == (1, 2, RATE)
    np.testing.assert_array_equal(r.samples, np.full(10, 103 / 32768, np.float32))


@pytest.mark.parametrize("name, data, words", [
    ("recordings/one_george_0.wav", wav_bytes([1]), ["recordings/one_george_0.wav", "not named"]),
    ("1_george_0.wav", wav_bytes([1]), ["1_george_0.wav", "not named"]),
    ("recordings/1_george_0.wav", b"not a wav", ["recordings/1_george_0.wav",
                                                 "not a readable WAV"]),
], ids=["digit-not-a-number", "no-folder", "not-a-wav"])
def test_load_fsdd_bad_member(tmp_path, name, data, words):
    path = write_tar(tmp_path / "bad.tar.xz", {"recordings/0_amy_0.wav": wav_bytes([1]),
                                               name: data})
    with pytest.raises(ValueError, match="".join(f"(?=.*{re.escape(w)})" for w in words)):
        sd.load_fsdd(path)


def test_load_fsdd_bad_archives(tmp_path):
    junk = tmp_path / "junk.tar.xz"
    junk.write_bytes(b"\xfd7zXZ\0 and then nothing useful")
    with pytest.raises(ValueError, match="junk.tar.xz: not a readable tar archive"):
        sd.load_fsdd(junk)
    empty = write_tar(tmp_path / "empty.tar.xz", {})
    with pytest.raises(ValueError, match="no recordings"):
        sd.load_fsdd(empty)
    with pytest.raises(FileNotFoundError):
        sd.load_fsdd(tmp_path / "missing.tar.xz")


def test_load_fsdd_truncated_or_repeated(tmp_path):
    members = {f"recordings/{d}_amy_0.wav": wav_bytes(np.arange(4000)) for d in range(10)}
    whole = write_tar(tmp_path / "whole.tar.xz", members).read_bytes()
    cut = tmp_path / "cut.tar.xz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="cut.tar.xz: not a readable tar archive"):
        sd.load_fsdd(cut)
    twice = tmp_path / "twice.tar"
    with tarfile.open(twice, "w") as tar:
        for _ in range(2):
            info = tarfile.TarInfo("recordings/4_amy_7.wav")
            info.size = len(members["recordings/4_amy_0.wav"])
            tar.addfile(info, io.BytesIO(members["recordings/4_amy_0.wav"]))
    with pytest.raises(ValueError, match="twice.tar: recordings/4_amy_7.wav is in the archive "
                                         "twice"):
        sd.load_fsdd(twice)


# ---------------------------------------------------------------------------------------------
# Connected-digit strings, on synthetic recordings
# ---------------------------------------------------------------------------------------------

# Take k of digit d by speaker s lasts BASE + k + 3 d + 30 s samples, so that a piece's length
# says which recording it is; speaker 2 has digits 0-4 only.
BASE, SPEAKERS, TAKES = 64, ("ann", "ben", "cy"), 3


def decode(length):
    v = length - BASE
    return SPEAKERS[v // 30], (v % 30) // 3, v % 3


def burst(length):
    """A sine burst riding on 0.4, in [0.3, 0.5]: never near zero, so a piece stands out
    against the (negligible) noise, and its shape tells whether it was copied whole."""
    return (0.4 + 0.1 * np.sin(2 * np.pi * np.arange(length) / 16)).astype(np.float32)


@pytest.fixture(scope="module")
def synthetic():
    return [sd.Recording(burst(BASE + k + 3 * d + 30 * s), RATE, d, speaker, k)
            for s, speaker in enumerate(SPEAKERS) for d in range(5 if s == 2 else 10)
            for k in range(TAKES)]


def runs(x, threshold=1e-3):
    """(starts, ends) of the runs where x > threshold."""
    edges = np.diff(np.concatenate([[0], (x > threshold).astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def test_strings_are_spliced_as_described(synthetic):
    gap_ms, gain_db = (5, 20), (-6, 6)
    lo, hi = 40, 160                          # gap_ms in samples at 8 kHz
    strings = sd.make_strings(synthetic, 200, np.random.default_rng(1), min_digits=2,
                              max_digits=5, gap_ms=gap_ms, noise_db=(-200, -200),
                              gain_db=gain_db)
    lengths, speakers = set(), set()
    for x, transcript in strings:
        assert x.dtype == np.float32 and x.ndim == 1
        assert 2 <= len(transcript) <= 5 and all(isinstance(d, int) for d in transcript)
        starts, ends = runs(x)
        assert len(starts) == len(transcript)
        gaps = np.concatenate([[starts[0]], starts[1:] - ends[:-1], [len(x) - ends[-1]]])
        assert np.all((gaps >= lo) & (gaps <= hi))
        assert len(x) == gaps.sum() + (ends - starts).sum()
        pieces = [decode(n) for n in ends - starts]
        assert [d for _, d, _ in pieces] == transcript
        assert len({s for s, _, _ in pieces}) == 1, "one speaker per string"
        for (a, b), n in zip(zip(starts, ends), ends - starts):
            ratio = x[a:b] / burst(n)          # the whole recording, scaled by one gain
            np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
            assert gain_db[0] - 1e-4 <= 20 * np.log10(ratio[0]) <= gain_db[1] + 1e-4
        lengths.add(len(transcript))
        speakers.add(pieces[0][0])
        if pieces[0][0] == "cy":
            assert max(transcript) <= 4, "only the digits the speaker has"
    assert lengths == {2, 3, 4, 5} and speakers == set(SPEAKERS)


def test_strings_noise_level(synthetic):
    x, _ = sd.make_strings(synthetic, 1, np.random.default_rng(2), gap_ms=(300, 300),
                           noise_db=(-30, -30))[0]
    first_gap = x[:2400]                        # 300 ms at 8 kHz: noise only
    assert np.sqrt(np.mean(first_gap.astype(np.float64) ** 2)) == pytest.approx(10 ** -1.5,
                                                                                rel=0.1)


def test_strings_deterministic(synthetic):
    a = sd.make_strings(synthetic, 20, np.random.default_rng(7))
    b = sd.make_strings(synthetic, 20, np.random.default_rng(7))
    c = sd.make_strings(synthetic, 20, np.random.default_rng(8))
    for (xa, ta), (xb, tb) in zip(a, b):
        assert ta == tb
        np.testing.assert_array_equal(xa, xb)
    assert [t for _, t in a] != [t for _, t in c]


def test_strings_from_fsdd(fsdd):
    strings = sd.make_strings(sd.split_fsdd(fsdd)["train"], 20, np.random.default_rng(3))
    for x, transcript in strings:
        assert x.dtype == np.float32 and np.abs(x).max() <= 1.0
        assert 1 <= len(transcript) <= 7 and set(transcript) <= set(range(10))
        assert len(x) >= len(transcript) * 1148   # FSDD's shortest recording is 1148 samples


def test_strings_bad_arguments(synthetic):
    rng = np.random.default_rng(0)
    other = synthetic[:1] + [synthetic[1]._replace(rate=16000)]
    with pytest.raises(ValueError, match=r"different sample rates \[8000, 16000\]"):
        sd.make_strings(other, 1, rng)
    with pytest.raises(ValueError, match="no recordings"):
        sd.make_strings([], 1, rng)
    with pytest.raises(ValueError, match="min_digits=4 must be <= max_digits=3"):
        sd.make_strings(synthetic, 1, rng, min_digits=4, max_digits=3)
    with pytest.raises(ValueError, match="gap_ms"):
        sd.make_strings(synthetic, 1, rng, gap_ms=(-5, 10))
    with pytest.raises(ValueError, match="noise_db"):
        sd.make_strings(synthetic, 1, rng, noise_db=(-40, -60))


# ---------------------------------------------------------------------------------------------
# A user's manifest
# ---------------------------------------------------------------------------------------------

def make_user_data(tmp_path, manifest, wavs):
    """Write ``wavs`` (name -> (int16 values, rate)) and manifest.csv; return its path."""
    for name, (values, rate) in wavs.items():
        (tmp_path / name).write_bytes(wav_bytes(values, rate))
    path = tmp_path / "manifest.csv"
    path.write_text(manifest, encoding="utf-8")
    return path


def test_manifest_happy_path(tmp_path):
    wavs = {"a.wav": ([1000, -2000, 3000], RATE), "b.wav": ([5] * 7, RATE)}
    path = make_user_data(tmp_path, 'file,transcript\na.wav,hello world\n\nb.wav,"yes, no"\n',
                          wavs)
    samples, transcripts, alphabet, lines = sd.read_manifest(tmp_path, path)
    assert transcripts == ["hello world", "yes, no"] and lines == [2, 4]
    assert alphabet == sorted(set("hello worldyes, no"))
    np.testing.assert_array_equal(samples[0], np.array([1000, -2000, 3000]) / 32768)
    assert samples[0].dtype == np.float32 and samples[1].shape == (7,)


def test_manifest_resample(tmp_path):
    t = np.arange(1600)
    values = (8000 * np.sin(2 * np.pi * 440 * t / 16000)).astype(np.int16)
    path = make_user_data(tmp_path, "file,transcript\nhi.wav,hi\n", {"hi.wav": (values, 16000)})
    with pytest.raises(ValueError, match=r"manifest.csv:2:.*16000 Hz.*8000 Hz.*resample=True"):
        sd.read_manifest(tmp_path, path)
    samples, _, _, _ = sd.read_manifest(tmp_path, path, resample=True)
    assert samples[0].shape == (800,) and samples[0].dtype == np.float32
    np.testing.assert_array_equal(samples[0], audio.resample(values / 32768, 16000, 8000))


GOOD = {"a.wav": ([1, 2, 3], RATE)}


@pytest.mark.parametrize("manifest, wavs, line, words", [
    ("", {}, 1, ["empty file"]),
    ("a.wav,one\n", GOOD, 1, ["file,transcript"]),
    ("file,text\na.wav,one\n", GOOD, 1, ["file,transcript", "['file', 'text']"]),
    ("file,transcript\n", {}, 1, ["no recordings"]),
    ("file,transcript\na.wav,one\na.wav\n", GOOD, 3, ["1 fields", "header has 2"]),
    ("file,transcript\na.wav,one\nb.wav,two\n", GOOD, 3, ["b.wav", "not found"]),
    ("file,transcript\nbad.wav,one\n", {}, 2, ["bad.wav", "not a readable WAV"]),
    ("file,transcript\na.wav,one\nfast.wav,two\n", {**GOOD, "fast.wav": ([1, 2], 44100)}, 3,
     ["44100 Hz", "expected 8000 Hz", "--resample"]),
    ("file,transcript\na.wav,one\na.wav,  \n", GOOD, 3, ["empty transcript"]),
    ("file,transcript\n,one\n", GOOD, 2, ["empty file name"]),
])
def test_manifest_errors(tmp_path, manifest, wavs, line, words):
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    path = make_user_data(tmp_path, manifest, wavs)
    pattern = re.escape(f"manifest.csv:{line}:") + "".join(f"(?=.*{re.escape(w)})" for w in words)
    with pytest.raises(ValueError, match=pattern):
        sd.read_manifest(tmp_path, path)


# ---------------------------------------------------------------------------------------------
# CTC fit
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("transcript, needed", [
    ("a", 1), ("ab", 2), ("aa", 3), ("aab", 4), ([1, 1, 1], 5), ([3, 1, 3], 3), ("", 0)])
def test_check_fits(transcript, needed):
    assert sd.ctc_min_frames(transcript) == needed
    sd.check_fits(needed, transcript, "x.wav")
    if needed:
        message = (f"x.wav: transcript of {len(transcript)} labels needs at least {needed} "
                   f"frames, the audio gives {needed - 1}")
        with pytest.raises(ValueError, match=re.escape(message)):
            sd.check_fits(needed - 1, transcript, "x.wav")
