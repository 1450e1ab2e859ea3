"""engine.audio against a slow, obvious reference written here (per-frame loops, the DFT by its
definition, filters bin by bin, the DCT-II and the deltas by their formulas), then properties
that could fail: a sine lands in its band, frame_count matches log_mel, WAV files round-trip and
bad ones are named, resampling keeps a sine's frequency and the length ratio."""
import cmath
import io
import math
import re
import struct
import warnings
import wave
from pathlib import Path

import numpy as np
import pytest

from engine import audio
from engine.audio import (add_deltas, frame_count, log_mel, mel_filterbank, mfcc, read_wav,
                          resample)

# ---------------------------------------------------------------------------- tolerances
# Output dtype -> assert_allclose arguments against the float64 reference.  The module computes
# in float64 and rounds once to float32 (6e-8 relative); FFT against DFT differs by ~1e-15 of
# the frame's largest power, which in the log of a band 1e6 times quieter is ~1e-9.
REF_TOL = {
    np.dtype(np.float32): dict(rtol=1e-5, atol=1e-5),
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-10),
}
# Filterbank weights: the same formula in the same precision.
FB_TOL = dict(rtol=1e-12, atol=1e-12)


def assert_close(got, want):
    np.testing.assert_allclose(got, want, **REF_TOL[got.dtype])


# ----------------------------------------------------------------------------- reference

def hz_to_mel_reference(f):
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_to_hz_reference(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def band_edges_reference(n_mels, fmin, fmax):
    """The n_mels + 2 band edges in Hz, equally spaced in mel."""
    lo, hi = hz_to_mel_reference(fmin), hz_to_mel_reference(fmax)
    return [mel_to_hz_reference(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]


def mel_filterbank_reference(n_mels, n_fft, rate, fmin, fmax):
    """(n_fft // 2 + 1, n_mels) float64, each weight from the triangle's two sides."""
    edges = band_edges_reference(n_mels, fmin, fmax)
    fb = np.zeros((n_fft // 2 + 1, n_mels))
    for m in range(n_mels):
        left, centre, right = edges[m:m + 3]
        for k in range(n_fft // 2 + 1):
            f = k * rate / n_fft
            if left < f <= centre:
                fb[k, m] = (f - left) / (centre - left)
            elif centre < f < right:
                fb[k, m] = (right - f) / (right - centre)
    return fb


def power_spectrum_reference(frame, n_fft):
    """|X_k|^2 for k = 0 .. n_fft // 2, X_k = sum_n x[n] exp(-2 pi i k n / n_fft)."""
    return [abs(sum(x * cmath.exp(-2j * math.pi * k * n / n_fft)
                    for n, x in enumerate(frame))) ** 2
            for k in range(n_fft // 2 + 1)]


def log_mel_reference(samples, rate, n_mels=40, win_ms=25.0, hop_ms=10.0, n_fft=None,
                      fmin=0.0, fmax=None, preemphasis=0.97):
    """(T, n_mels) float64: one frame at a time until a frame reaches the last sample."""
    win, hop = round(rate * win_ms / 1000), round(rate * hop_ms / 1000)
    n_fft = n_fft or 2 ** math.ceil(math.log2(win))
    fb = mel_filterbank_reference(n_mels, n_fft, rate, fmin, rate / 2 if fmax is None else fmax)
    x = [float(v) for v in samples]
    y = [x[0]] + [x[n] - preemphasis * x[n - 1] for n in range(1, len(x))]
    rows, start = [], 0
    while True:
        frame = [(y[start + n] if start + n < len(y) else 0.0)
                 * (0.54 - 0.46 * math.cos(2 * math.pi * n / (win - 1))) for n in range(win)]
        power = power_spectrum_reference(frame, n_fft)
        rows.append([math.log(sum(p * fb[k, m] for k, p in enumerate(power)) + 1e-10)
                     for m in range(n_mels)])
        if start + win >= len(y):
            return np.array(rows)
        start += hop


def dct_reference(row, n_out):
    """Orthonormal DCT-II of one row, first n_out coefficients."""
    M = len(row)
    return [math.sqrt((1.0 if k == 0 else 2.0) / M)
            * sum(e * math.cos(math.pi * k * (2 * m + 1) / (2 * M)) for m, e in enumerate(row))
            for k in range(n_out)]


def deltas_reference(c, width):
    """(T, F) float64 regression deltas, frames beyond the ends replaced by the end frames."""
    T, F = c.shape
    d = np.zeros((T, F))
    for t in range(T):
        for f in range(F):
            num = sum(n * (c[min(t + n, T - 1), f] - c[max(t - n, 0), f])
                      for n in range(1, width + 1))
            d[t, f] = num / (2 * sum(n * n for n in range(1, width + 1)))
    return d


def add_deltas_reference(c, order, width):
    blocks = [np.asarray(c, dtype=np.float64)]
    for _ in range(order):
        blocks.append(deltas_reference(blocks[-1], width))
    return np.concatenate(blocks, axis=1)


def bessel_i0_reference(x):
    """Modified Bessel function of order 0 by its series sum_k ((x / 2)^k / k!)^2 (for
    x <= 5 the terms past k = 25 are below 1e-30)."""
    return sum(((x / 2) ** k / math.factorial(k)) ** 2 for k in range(25))


def resample_reference(x, rate, new_rate):
    """Zero-stuff by up, low-pass by a Kaiser-windowed sinc of 10 * max(up, down) taps each
    side, keep every down-th sample: y[j] = sum_i x[i] h[j * down - i * up] (h centred at 0)."""
    g = math.gcd(rate, new_rate)
    up, down = new_rate // g, rate // g
    half, cutoff = 10 * max(up, down), 1.0 / max(up, down)

    h = {}
    for k in range(-half, half + 1):
        sinc = 1.0 if k == 0 else math.sin(math.pi * cutoff * k) / (math.pi * cutoff * k)
        window = bessel_i0_reference(5.0 * math.sqrt(1 - (k / half) ** 2))
        h[k] = cutoff * sinc * window / bessel_i0_reference(5.0)
    gain = up / sum(h.values())
    n_out = math.ceil(len(x) * up / down)
    return np.array([gain * sum(float(v) * h[j * down - i * up] for i, v in enumerate(x)
                                if abs(j * down - i * up) <= half) for j in range(n_out)])


def mfcc_reference(samples, rate, n_mfcc=13, deltas=2, n_mels=40, **kw):
    lm = log_mel_reference(samples, rate, n_mels=n_mels, **kw)
    return add_deltas_reference(np.array([dct_reference(r, n_mfcc) for r in lm]), deltas, 2)


# --------------------------------------------------------------- against the reference
# (rate, n_samples, log_mel keyword arguments): lengths shorter than one window, exactly one,
# one more, and not a multiple of the hop; small n_fft keeps the DFT by definition fast.
CASES = [
    (1600, 1, {}),
    (1600, 17, {"n_mels": 12}),
    (1600, 40, {"n_mels": 8}),
    (1600, 41, {"n_mels": 8}),
    (1600, 203, {"n_mels": 16, "fmin": 50.0, "fmax": 700.0}),
    (2000, 333, {"n_mels": 10, "win_ms": 20.0, "hop_ms": 7.5, "preemphasis": 0.0}),
    (3000, 257, {"n_mels": 23, "n_fft": 100, "fmin": 120.0}),
    (4000, 301, {"n_mels": 6, "hop_ms": 25.0, "win_ms": 12.5, "fmax": 1500.0}),
    (8000, 700, {"n_mels": 40}),
]


def _signal(rng, n):
    """Noise plus a sine, the scale of speech: uniform noise alone has a flat spectrum."""
    t = np.arange(n)
    return (0.3 * rng.uniform(-1, 1, n) + 0.5 * np.sin(0.3 * t + rng.uniform(0, 6))).astype(
        np.float32)


@pytest.mark.parametrize("rate,n,kw", CASES)
def test_log_mel_matches_reference(rng, rate, n, kw):
    x = _signal(rng, n)
    got = log_mel(x, rate, **kw)
    assert got.dtype == np.float32
    assert_close(got, log_mel_reference(x, rate, **kw))


@pytest.mark.parametrize("rate,n,kw", CASES[1::2])
def test_mfcc_matches_reference(rng, rate, n, kw):
    x = _signal(rng, n)
    n_mels = kw.pop("n_mels")
    n_mfcc = min(13, n_mels)
    got = mfcc(x, rate, n_mfcc=n_mfcc, n_mels=n_mels, **kw)
    assert got.dtype == np.float32 and got.shape[1] == 3 * n_mfcc
    assert_close(got, mfcc_reference(x, rate, n_mfcc=n_mfcc, n_mels=n_mels, **kw))


def test_mfcc_defaults_give_39_features(rng):
    x = _signal(rng, 8000)
    got = mfcc(x, 8000)
    assert got.shape == (frame_count(8000, 8000), 39)
    static = mfcc(x, 8000, deltas=0)
    np.testing.assert_array_equal(got[:, :13], static)
    ceps = np.array([dct_reference(r, 13) for r in log_mel(x, 8000).astype(np.float64)])
    assert_close(static, ceps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T", [1, 2, 3, 7, 20])
def test_add_deltas_matches_reference(rng, dtype, T):
    c = rng.normal(size=(T, 5)).astype(dtype)
    for order in range(4):
        for width in (1, 2, 3):
            got = add_deltas(c, order=order, width=width)
            assert got.dtype == dtype and got.shape == (T, 5 * (1 + order))
            assert_close(got, add_deltas_reference(c, order, width))


@pytest.mark.parametrize("n_mels,n_fft,rate,fmin,fmax", [
    (40, 256, 8000, 0.0, 4000.0), (23, 100, 3000, 120.0, 1500.0), (1, 64, 1600, 0.0, 800.0)])
def test_mel_filterbank_matches_reference(n_mels, n_fft, rate, fmin, fmax):
    fb = mel_filterbank(n_mels, n_fft, rate, fmin, fmax)
    assert fb.shape == (n_fft // 2 + 1, n_mels) and fb.dtype == np.float64
    np.testing.assert_allclose(fb, mel_filterbank_reference(n_mels, n_fft, rate, fmin, fmax),
                               **FB_TOL)


def test_mel_filterbank_returns_a_copy_of_the_cache():
    fb = mel_filterbank(20, 256, 8000)
    fb[:] = -1.0
    assert mel_filterbank(20, 256, 8000).min() == 0.0


def test_blocks_of_frames_change_nothing(rng, monkeypatch):
    x = _signal(rng, 4000)
    whole = log_mel(x, 8000)
    monkeypatch.setattr(audio, "BLOCK_FRAMES", 7)  # 48 frames: 6 full blocks and a partial one
    np.testing.assert_array_equal(log_mel(x, 8000), whole)


# ---------------------------------------------------------------------------- properties

def _eligible_bands(n_mels, n_fft, rate, min_bins=4):
    """Bands whose centres lie >= min_bins FFT bins from both neighbours' centres, so that the
    Hamming main lobe (4 bins wide) cannot straddle two centres."""
    centres = band_edges_reference(n_mels, 0.0, rate / 2)[1:-1]
    bin_hz = rate / n_fft
    return [m for m in range(1, n_mels - 1)
            if min(centres[m] - centres[m - 1], centres[m + 1] - centres[m]) >= min_bins * bin_hz
            and centres[m + 1] < rate / 2 * 0.95], centres


@pytest.mark.parametrize("rate,n_mels", [(8000, 20), (16000, 40), (11025, 30)])
def test_a_sine_peaks_in_the_band_centred_nearest_it(rng, rate, n_mels):
    n_fft = 2 ** math.ceil(math.log2(round(rate * 0.025)))
    bands, centres = _eligible_bands(n_mels, n_fft, rate)
    assert len(bands) >= 5
    t = np.arange(int(0.2 * rate)) / rate
    for m in rng.choice(bands, size=5, replace=False):
        gap = min(centres[m] - centres[m - 1], centres[m + 1] - centres[m])
        f = centres[m] + rng.uniform(-0.3, 0.3) * gap
        x = (0.5 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6))).astype(np.float32)
        energy = log_mel(x, rate, n_mels=n_mels).mean(axis=0)
        assert np.argmax(energy) == np.argmin(np.abs(np.array(centres) - f)) == m, (f, m)


@pytest.mark.parametrize("rate,win_ms,hop_ms", [
    (1600, 25.0, 10.0), (8000, 25.0, 10.0), (16000, 20.0, 5.0), (3000, 10.0, 15.0)])
def test_frame_count_equals_log_mel_frames(rng, rate, win_ms, hop_ms):
    win, hop = round(rate * win_ms / 1000), round(rate * hop_ms / 1000)
    lengths = sorted({1, win - 1, win, win + 1, win + hop, win + hop + 1,
                      *rng.integers(1, 6 * win, 40).tolist()})
    for n in lengths:
        T = frame_count(n, rate, hop_ms=hop_ms, win_ms=win_ms)
        x = rng.uniform(-1, 1, n).astype(np.float32)
        assert log_mel(x, rate, n_mels=4, win_ms=win_ms, hop_ms=hop_ms).shape == (T, 4)
        # The last frame reaches the last sample; the one before it does not.
        assert (T - 1) * hop + win >= n and (T == 1 or (T - 2) * hop + win < n), (n, T)


def test_frame_count_small_cases():
    assert [frame_count(n, 8000) for n in (1, 199, 200, 201, 280, 281)] == [1, 1, 1, 2, 2, 3]


def _wav_bytes(ints, width, rate, channels):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(ints.tobytes())
    return buf.getvalue()


# width -> (dtype written, lowest, highest, offset, scale): value = (int - offset) / scale
PCM = {1: ("u1", 0, 255, 128, 128), 2: ("<i2", -32768, 32767, 0, 32768),
       4: ("<i4", -2 ** 31, 2 ** 31 - 1, 0, 2 ** 31)}


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("width", [1, 2, 4])
def test_read_wav_round_trips(rng, tmp_path, width, channels):
    dtype, lo, hi, offset, scale = PCM[width]
    ints = rng.integers(lo, hi, size=(301, channels), endpoint=True).astype(dtype)
    ints[0], ints[1] = lo, hi  # the extremes map inside [-1, 1]
    path = tmp_path / f"w{width}c{channels}.wav"
    path.write_bytes(_wav_bytes(ints, width, 11025, channels))
    want = ((ints.astype(np.float64) - offset) / scale).mean(axis=1).astype(np.float32)
    for source in (path, str(path), io.BytesIO(path.read_bytes())):
        samples, rate = read_wav(source)
        assert rate == 11025 and type(rate) is int
        assert samples.dtype == np.float32 and samples.shape == (301,)
        np.testing.assert_array_equal(samples, want)
        assert np.abs(samples).max() <= 1.0


def _riff(code, channels, rate, bits, samples, extensible=False, chunks=b""):
    """The bytes of a WAV file written by hand: format ``code`` (1 PCM, 3 float, ...), in a
    WAVE_FORMAT_EXTENSIBLE header when asked, with ``chunks`` (raw bytes) before the data."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else code, channels, rate, rate * align,
                      align, bits)
    if extensible:  # cbSize, valid bits, channel mask, SubFormat GUID (code first)
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", code) + bytes(14)
    data = np.asarray(samples).tobytes()
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + chunks + b"data" + \
        struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_read_wav_takes_24_bit_float_and_extensible_files_and_skips_other_chunks(rng):
    """What recorders and editors write besides 16-bit PCM: 24-bit PCM, 32- and 64-bit float
    (clipped to [-1, 1] as playback would), the extensible header, and LIST chunks (one of odd
    length, padded) before the data."""
    ints = rng.integers(-2 ** 23, 2 ** 23, size=(50, 2))
    packed = ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]  # little-endian low bytes
    want24 = (ints / 2.0 ** 23).mean(axis=1).astype(np.float32)
    floats = rng.uniform(-1.5, 1.5, size=60)
    want_f = np.clip(floats, -1, 1).astype(np.float32)
    odd = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\0"
    cases = [(_riff(1, 2, 44100, 24, packed), want24, 44100),
             (_riff(1, 2, 44100, 24, packed, extensible=True, chunks=odd), want24, 44100),
             (_riff(3, 1, 16000, 32, floats.astype("<f4")), want_f, 16000),
             (_riff(3, 1, 16000, 64, floats.astype("<f8"), extensible=True), want_f, 16000),
             (_riff(1, 1, 8000, 16, (floats.clip(-1, 1) * 32000).astype("<i2"), chunks=odd),
              (floats.clip(-1, 1) * 32000).astype("<i2") / np.float32(32768), 8000)]
    for data, want, rate in cases:
        samples, got_rate = read_wav(io.BytesIO(data), name="x.wav")
        assert got_rate == rate and samples.dtype == np.float32
        np.testing.assert_allclose(samples, want, rtol=0, atol=1e-7)


def test_read_wav_expands_g711_mu_law_and_a_law(rng):
    """8 kHz telephone recordings: the standard's table values, and every byte against
    Python's audioop (the C implementation, in Pythons that still have it)."""
    mu, alaw = np.array([0xFF, 0x7F, 0x00, 0x80, 0xEF], np.uint8), \
        np.array([0xD5, 0x55, 0x2A, 0xAA, 0xC5], np.uint8)
    got_mu = read_wav(io.BytesIO(_riff(7, 1, 8000, 8, mu)))[0] * 32768
    got_a = read_wav(io.BytesIO(_riff(6, 1, 8000, 8, alaw)))[0] * 32768
    np.testing.assert_array_equal(got_mu, [0, 0, -32124, 32124, 132])
    np.testing.assert_array_equal(got_a, [8, -8, -32256, 32256, 264])
    stereo = rng.integers(0, 256, (40, 2), dtype=np.uint8)
    both, rate = read_wav(io.BytesIO(_riff(7, 2, 8000, 8, stereo)))
    one = [read_wav(io.BytesIO(_riff(7, 1, 8000, 8, stereo[:, c].copy())))[0] for c in (0, 1)]
    assert rate == 8000 and both.shape == (40,)
    np.testing.assert_allclose(both, (one[0] + one[1]) / 2, rtol=0, atol=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    every = np.arange(256, dtype=np.uint8)
    for code, expand in ((7, audioop.ulaw2lin), (6, audioop.alaw2lin)):
        want = np.frombuffer(expand(every.tobytes(), 2), "<i2") / np.float32(32768)
        np.testing.assert_array_equal(read_wav(io.BytesIO(_riff(code, 1, 8000, 8, every)))[0],
                                      want)


def _raises_naming(label, problem, source, **kw):
    with pytest.raises(ValueError, match="^" + re.escape(label) + ": " + problem):
        read_wav(source, **kw)


def test_read_wav_errors_name_the_file(rng, tmp_path):
    cases = {"garbage.wav": (rng.integers(0, 256, 300, dtype=np.uint8).tobytes(), "not a"),
             "empty.wav": (b"", "not a"),
             "riff_only.wav": (b"RIFF\x24\x00\x00\x00WAVE", "not a"),
             "adpcm.wav": (_riff(2, 1, 8000, 4, rng.integers(0, 256, 30, dtype=np.uint8)),
                           r"unsupported WAV encoding \(format code 2, 4-bit\)"),
             "nan.wav": (_riff(3, 1, 8000, 32, np.array([0.5, np.nan], "<f4")),
                         "non-finite float samples"),
             "song.mp3": (b"ID3\x04" + bytes(60), r"not a readable WAV file \(this is MP3: "
                                                     "convert it to WAV first"),
             "no_data.wav": (_riff(1, 1, 8000, 16, np.array([], "<i2"))[:-8], "not a"),
             "silent.wav": (_wav_bytes(np.array([], np.int16), 2, 8000, 1), "no samples")}
    for fname, (data, problem) in cases.items():
        path = tmp_path / fname
        path.write_bytes(data)
        _raises_naming(str(path), problem, path)
        _raises_naming("member/" + fname, problem, io.BytesIO(data), name="member/" + fname)
        _raises_naming("<file object>", problem, io.BytesIO(data))
    with pytest.raises(FileNotFoundError):
        read_wav(tmp_path / "missing.wav")


def test_read_wav_reads_a_truncated_file_with_a_warning(rng):
    ints = rng.integers(-32768, 32767, 100).astype("<i2")
    good = _wav_bytes(ints, 2, 8000, 1)
    with pytest.warns(UserWarning, match=r"^t.wav: the file holds 101 of the 200 bytes of "
                                         r"audio its header gives \(truncated\?\)"):
        samples, _ = read_wav(io.BytesIO(good[:-99]), name="t.wav")
    np.testing.assert_array_equal(samples, ints[:50] / np.float32(32768))
    streamed = good[:40] + struct.pack("<I", 0xFFFFFFFF) + good[44:]  # size unknown, as
    with warnings.catch_warnings():                                 # a recorder streams it
        warnings.simplefilter("error")
        assert read_wav(io.BytesIO(streamed))[0].size == 100


@pytest.mark.filterwarnings("ignore:d.wav. the file holds")
def test_read_wav_damaged_files_fail_cleanly(rng):
    """Every truncation and random header corruptions of a stereo file: either samples in
    [-1, 1] or a ValueError naming the file, never another exception."""
    good = _wav_bytes(rng.integers(-32768, 32767, (40, 2)).astype("<i2"), 2, 8000, 2)
    damaged = [good[:n] for n in range(len(good))]
    for _ in range(300):
        d = bytearray(good)
        d[rng.integers(0, 44)] = rng.integers(0, 256)
        damaged.append(bytes(d))
    for data in damaged:
        try:
            samples, rate = read_wav(io.BytesIO(data), name="d.wav")
        except ValueError as e:
            assert str(e).startswith("d.wav: "), e
        else:
            assert samples.dtype == np.float32 and samples.size and rate > 0
            assert np.abs(samples).max() <= 1.0


@pytest.mark.parametrize("rate,new_rate,n", [(3, 7, 30), (7, 3, 61), (8000, 11025, 40),
                                             (16000, 8000, 101), (1, 4, 9)])
def test_resample_matches_reference(rng, rate, new_rate, n):
    x = rng.uniform(-1, 1, n)
    assert_close(resample(x, rate, new_rate), resample_reference(x, rate, new_rate))


def _peak_hz(x, rate):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * rate / len(x)


@pytest.mark.parametrize("rate,new_rate,f", [
    (8000, 16000, 440.0), (16000, 8000, 1234.5), (44100, 16000, 3000.0), (8000, 11025, 2500.0)])
def test_resample_keeps_a_sines_frequency_and_the_length_ratio(rng, rate, new_rate, f):
    n = int(0.25 * rate) + int(rng.integers(0, 50))
    x = (0.8 * np.sin(2 * np.pi * f * np.arange(n) / rate + rng.uniform(0, 6))).astype(
        np.float32)
    y = resample(x, rate, new_rate)
    assert y.dtype == np.float32 and len(y) == math.ceil(n * new_rate / rate)
    assert abs(_peak_hz(y, new_rate) - f) <= new_rate / len(y)  # within one bin
    middle = y[len(y) // 4: 3 * len(y) // 4]
    assert abs(np.abs(middle).max() - 0.8) < 0.02  # the passband keeps the amplitude


def test_resample_removes_what_the_new_rate_cannot_hold(rng):
    t = np.arange(4000) / 16000
    x = (0.8 * np.sin(2 * np.pi * 6000 * t) + 0.1 * np.sin(2 * np.pi * 500 * t)).astype(
        np.float32)
    y = resample(x, 16000, 8000)[200:-200]  # 6 kHz is above the new Nyquist (4 kHz)
    t8 = np.arange(2000)[200:-200] / 8000
    fit = np.linalg.lstsq(np.stack([np.sin(2 * np.pi * 500 * t8), np.cos(2 * np.pi * 500 * t8)],
                                   axis=1), y, rcond=None)
    assert np.sqrt(np.mean((y - fit[0] @ [np.sin(2 * np.pi * 500 * t8),
                                          np.cos(2 * np.pi * 500 * t8)]) ** 2)) < 0.01


def test_resample_identity_is_a_float32_copy(rng):
    x = rng.uniform(-1, 1, 100)
    y = resample(x, 8000, 8000)
    assert y.dtype == np.float32 and not np.shares_memory(x, y)
    np.testing.assert_array_equal(y, x.astype(np.float32))


# ------------------------------------------------------------------------- bad arguments

def _x(n=400):
    return np.random.default_rng(7).uniform(-1, 1, n).astype(np.float32)


BAD = [
    (log_mel, (_x().astype(np.int16), 8000), {}, TypeError, "samples .*divide by 32768"),
    (log_mel, (_x().reshape(20, 20), 8000), {}, ValueError, r"samples must be a 1-D .*\(20, 20\)"),
    (log_mel, (np.array([], np.float32), 8000), {}, ValueError, "samples"),
    (log_mel, (np.array([0.1, np.nan]), 8000), {}, ValueError, "samples must be finite"),
    (log_mel, (_x(), 8000.0), {}, TypeError, "rate must be an int"),
    (log_mel, (_x(), 0), {}, ValueError, "rate must be >= 1"),
    (log_mel, (_x(), 8000), {"n_mels": 0}, ValueError, "n_mels must be >= 1"),
    (log_mel, (_x(), 8000), {"fmax": 5000.0}, ValueError, r"fmax must be <= rate / 2 = 4000"),
    (log_mel, (_x(), 8000), {"fmin": 3000.0, "fmax": 2000.0}, ValueError, "fmin must be in"),
    (log_mel, (_x(), 8000), {"fmin": -1.0}, ValueError, "fmin must be in"),
    (log_mel, (_x(), 8000), {"n_fft": 128}, ValueError, r"n_fft must be >= .*\(200 samples\)"),
    (log_mel, (_x(), 8000), {"win_ms": 0.0}, ValueError, "win_ms=0.0 gives 0 samples"),
    (log_mel, (_x(), 8000), {"hop_ms": -10.0}, ValueError, "hop_ms"),
    (log_mel, (_x(), 8000), {"hop_ms": "10"}, TypeError, "hop_ms must be a real number"),
    (log_mel, (_x(), 8000), {"preemphasis": 1.5}, ValueError, "preemphasis must be in"),
    (mfcc, (_x(), 8000), {"n_mfcc": 41}, ValueError, "n_mfcc must be <= n_mels=40"),
    (mfcc, (_x(), 8000), {"deltas": -1}, ValueError, "deltas must be >= 0"),
    (mfcc, (_x(), 8000), {"hop": 10}, TypeError, "hop"),
    (add_deltas, (_x(),), {}, ValueError, r"feat must be a 2-D array \(T, F\)"),
    (add_deltas, (np.ones((3, 2), np.int32),), {}, TypeError, "feat must be a 2-D float"),
    (add_deltas, (_x().reshape(20, 20),), {"order": -1}, ValueError, "order must be >= 0"),
    (add_deltas, (_x().reshape(20, 20),), {"width": 0}, ValueError, "width must be >= 1"),
    (resample, (_x(), 8000, 0), {}, ValueError, "new_rate must be >= 1"),
    (resample, (_x(), -8000, 16000), {}, ValueError, "rate must be >= 1"),
    (frame_count, (0, 8000), {}, ValueError, "n_samples must be >= 1"),
    (frame_count, (100, 8000), {"win_ms": 1e30}, ValueError, "win_ms"),
    (mel_filterbank, (40, 256, 8000), {"fmax": 4001.0}, ValueError, "fmax"),
]


@pytest.mark.parametrize("fn,args,kw,exc,match", BAD,
                         ids=[f"{b[0].__name__}-{b[4][:24]}" for b in BAD])
def test_bad_arguments_name_the_argument(fn, args, kw, exc, match):
    with pytest.raises(exc, match=match):
        fn(*args, **kw)


def test_read_wav_takes_a_path_object(tmp_path, rng):
    path = Path(tmp_path) / "p.wav"
    path.write_bytes(_wav_bytes(rng.integers(-99, 99, 10).astype("<i2"), 2, 8000, 1))
    assert read_wav(path)[0].shape == (10,)
