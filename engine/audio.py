"""Speech features in NumPy: read a WAV file, resample it, log-mel filterbank energies, MFCCs.

API (shapes use the letters below):

- ``read_wav(source, name=None) -> (samples, rate)``: samples (N,) float32 mono in [-1, 1],
  rate int Hz.
- ``resample(samples, rate, new_rate) -> (ceil(N * new_rate / rate),) float32``.
- ``frame_count(n_samples, rate, hop_ms=10.0, win_ms=25.0) -> T``, as ``log_mel`` gives it.
- ``mel_filterbank(n_mels, n_fft, rate, fmin=0.0, fmax=None) -> (K, M) float64`` weights.
- ``log_mel(samples, rate, n_mels=40, win_ms=25.0, hop_ms=10.0, n_fft=None, fmin=0.0,
  fmax=None, preemphasis=0.97) -> (T, M) float32``.
- ``mfcc(samples, rate, n_mfcc=13, deltas=2, n_mels=40, **log_mel_kwargs)
  -> (T, C * (1 + deltas)) float32``.
- ``add_deltas(feat, order=2, width=2) -> (T, F * (1 + order))`` in feat's dtype.
- ``hz_to_mel(f)``, ``mel_to_hz(m)``: the HTK mel scale and its inverse.

Letters: N samples, T frames, K = n_fft // 2 + 1 spectrum bins, M = n_mels bands,
C = n_mfcc cepstra, F features per frame.

Parameters and defaults (those of HTK and Kaldi speech front ends):

- ``samples``: (N,) floating array, N >= 1, finite, nominally in [-1, 1] (``read_wav``'s
  scale).  Integer PCM is refused: divide by 32768 first.  Mono only: average the channels.
- ``rate``: sample rate in Hz, a positive int.
- ``win_ms=25.0``: window length; ``win = round(rate * win_ms / 1000)`` samples (200 at 8 kHz;
  Python's round, halves to even).
- ``hop_ms=10.0``: frame step; ``hop = round(rate * hop_ms / 1000)`` samples (80 at 8 kHz).
  Frame t covers samples [t * hop, t * hop + win); frames start at 0, hop, 2 hop, ... until one
  reaches the last sample, and the last, partial, frame is zero-padded.  So
  ``T = 1 + ceil(max(N - win, 0) / hop)``: a signal shorter than one window gives one frame.
- ``n_fft=None``: FFT length, >= win; None picks the next power of two >= win (256 at 8 kHz,
  512 at 16 kHz).  The windowed frame is zero-padded to it.
- ``n_mels=40``: number of triangular mel bands.
- ``fmin=0.0``, ``fmax=None``: the bands' range in Hz, 0 <= fmin < fmax <= rate / 2; None is
  rate / 2.
- ``preemphasis=0.97``: y[0] = x[0], y[n] = x[n] - preemphasis * x[n - 1], over the whole
  signal before framing (0 turns it off; allowed range [0, 1]).
- ``n_mfcc=13``: cepstra kept, 1 <= n_mfcc <= n_mels; c0 (the log-energy-like term) included.
- ``deltas=2``: 0 (cepstra only), 1 (+ deltas) or 2 (+ delta-deltas): 13 * 3 = 39 features.
- ``order``, ``width`` (``add_deltas``): how many times the delta is taken, and the regression
  half-width N_w (2 in HTK and Kaldi; ``mfcc`` uses 2).

``log_mel`` pipeline: pre-emphasis; frames (strided view, no copy); Hamming window
0.54 - 0.46 cos(2 pi n / (win - 1)); one rfft of all frames; power |X_k|^2; one product with the
filterbank; ``log(energy + LOG_FLOOR)``.  The spectrum is not normalised by n_fft.

Filterbank: M + 2 edge frequencies equally spaced on the HTK mel scale
mel(f) = 2595 log10(1 + f / 700) between fmin and fmax; band m rises linearly (in Hz) from edge
m to 1 at edge m + 1 and falls to 0 at edge m + 2, evaluated at the bin frequencies
k * rate / n_fft; no area normalisation.  A band too narrow to hold a bin (many mels, small
n_fft) is all zeros and its log energy is log(LOG_FLOOR) = -23.03.

``mfcc``: orthonormal DCT-II of each log-mel frame, c_k = s_k sum_m e_m cos(pi k (2m + 1) / 2M)
with s_0 = sqrt(1 / M), s_k = sqrt(2 / M), first n_mfcc kept, then ``add_deltas`` with width 2.
Columns: [c_0..c_{C-1}, their deltas, their delta-deltas].

Everything is computed in float64 and rounded to float32 once at the end: NumPy's float32
rfft is no faster here (measured 46 us against 38 us for 40 frames of 256), and float64 keeps
quiet bands exact.
Frames go through the FFT in blocks of ``BLOCK_FRAMES`` so that an hour of audio needs tens of
MB, not gigabytes.  Filterbanks, windows and DCT matrices are cached per parameter set.
"""
import functools
import math
import os
import struct
import warnings

import numpy as np

from engine.checks import MAX_SIZE, check_int, check_real

# Added to every band energy before the log, so that silence (digital zeros) gives -23.03
# instead of -inf; about 100 times below the median band energy of 16-bit rounding noise
# (measured ~1e-8 in 25 ms frames at 8 kHz), so it only touches digital silence.
LOG_FLOOR = 1e-10
# Frames per rfft call: 8192 x 257 bins of complex128 is 34 MB.
BLOCK_FRAMES = 8192
# Regression half-width of the deltas that ``mfcc`` appends (HTK's and Kaldi's default).
DELTA_WIDTH = 2
# Caps far above any front end (20-128 bands, deltas of order <= 3 and half-width <= 3), so
# that a typo fails at once instead of allocating or looping for minutes.
MAX_MELS = 4096
MAX_ORDER = 8
MAX_DELTA_WIDTH = 100
# resample's filter, as scipy.signal.resample_poly's default: half-length in taps of the
# higher of the two rates, Kaiser window beta (5: about 54 dB stop-band attenuation).
RESAMPLE_HALF_TAPS = 10
KAISER_BETA = 5.0
# Elements of one (outputs, taps) gather in resample: 8 MB of float64.
RESAMPLE_BLOCK = 1 << 20
# WAV sample encodings: (format code, bytes per sample) -> (dtype, offset, scale), value =
# (raw - offset) / scale.  Code 1 is integer PCM (8-bit unsigned, the rest signed; 24-bit is
# read into the top three bytes of an int32), code 3 IEEE float.
_ENCODINGS = {(1, 1): ("u1", 128.0, 128.0), (1, 2): ("<i2", 0.0, 32768.0),
              (1, 3): ("<i4", 0.0, 2.0 ** 31), (1, 4): ("<i4", 0.0, 2.0 ** 31),
              (3, 4): ("<f4", 0.0, 1.0), (3, 8): ("<f8", 0.0, 1.0)}


def _g711_tables():
    """{format code: (256,) float64 sample per byte} of G.711 (ITU-T, 1972), the 8-bit
    telephone encodings: code 7 mu-law (North America, Japan), code 6 A-law (Europe); 16-bit
    values (mu-law up to 32124, A-law 32256) over 32768."""
    byte = np.arange(256)
    u = ~byte & 0xFF
    exponent, mantissa = (u >> 4) & 7, u & 0x0F
    mu = (((mantissa << 3) + 0x84) << exponent) - 0x84
    mu = np.where(u & 0x80, -mu, mu)
    a = byte ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 0x0F
    alaw = np.where(exponent == 0, (mantissa << 4) + 8,
                    ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    alaw = np.where(a & 0x80, alaw, -alaw)
    return {7: mu / 32768.0, 6: alaw / 32768.0}


_G711 = _g711_tables()
# The openings of audio files that are not WAV, to say what a file is when it is one of them.
_OTHER_AUDIO = ((b"ID3", "MP3"), (b"\xff\xfb", "MP3"), (b"\xff\xf3", "MP3"),
                (b"fLaC", "FLAC"), (b"OggS", "Ogg (Vorbis or Opus)"),
                (b"FORM", "AIFF"), (b"RF64", "RF64 (a WAV over 4 GB)"))
WAVE_FORMAT_EXTENSIBLE = 0xFFFE  # the real code is the first two bytes of its SubFormat GUID


# ------------------------------------------------------------------------------- reading

def read_wav(source, name=None):
    """Read a WAV file as mono float samples.

    source: a path (str or os.PathLike) or a binary file object (e.g. ``tarfile.extractfile``).
    name: the file's name in error messages; default the path, or the file object's ``name``.

    Returns ``(samples, rate)``: samples (N,) float32 in [-1, 1] (8-bit unsigned (x - 128) / 128,
    16-bit x / 32768, 24-bit x / 2**23, 32-bit x / 2**31; 32- and 64-bit float as stored,
    clipped to [-1, 1] as playback would; 8-bit G.711 mu-law and A-law, as telephone
    recordings are, expanded to 16-bit values / 32768; several channels averaged), rate the
    sample rate in Hz (int).  Plain and WAVE_FORMAT_EXTENSIBLE headers are read; chunks other
    than ``fmt `` and ``data`` (LIST, fact, ...) are skipped.  A data chunk cut short is read
    up to its last whole frame, with a warning.

    Raises ValueError, its message starting with the name, for a file that is not a readable
    WAV, an encoding other than those above (compressed, 12-bit, ...), non-finite float samples
    or no samples.  A missing or unreadable path raises the OSError of ``open``.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return _read_wav_bytes(f.read(), os.fspath(source) if name is None else name)
    if name is None:
        name = getattr(source, "name", None)
        name = name if isinstance(name, str) else "<file object>"
    return _read_wav_bytes(source.read(), name)


def _read_wav_bytes(data, name):
    """(samples, rate) from the bytes of a WAV file; errors start with ``name``."""
    fmt, body = _riff_chunks(data, name)
    code, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if code == WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 26:
        code = struct.unpack_from("<H", fmt, 24)[0]
    width = bits // 8 if bits % 8 == 0 else 0
    if (code, width) not in _ENCODINGS and not (code in _G711 and width == 1):
        raise ValueError(f"{name}: unsupported WAV encoding (format code {code}, {bits}-bit); "
                         "read_wav takes 8-, 16-, 24- and 32-bit integer PCM, 32- and 64-bit "
                         "float and 8-bit mu-law and A-law: convert it first, e.g. ffmpeg -i "
                         "FILE -c:a pcm_s16le out.wav")
    if channels == 0 or rate == 0:
        raise ValueError(f"{name}: not a readable WAV file ({channels} channels at {rate} Hz "
                         "in the header)")
    samples = _decode_samples(body, code, width, channels)
    if samples.size == 0:
        raise ValueError(f"{name}: no samples (the WAV file's data chunk is empty)")
    if not np.isfinite(samples).all():
        raise ValueError(f"{name}: non-finite float samples (NaN or infinity)")
    return np.clip(samples, -1.0, 1.0).astype(np.float32), int(rate)


def _riff_chunks(data, name):
    """The ``fmt `` chunk (at least 16 bytes) and the ``data`` chunk (as much of it as the file
    holds) of a RIFF/WAVE file's bytes."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        kind = next((k for magic, k in _OTHER_AUDIO if data.startswith(magic)), None)
        raise ValueError(f"{name}: not a readable WAV file (" + (
            f"this is {kind}: convert it to WAV first, e.g. ffmpeg -i FILE out.wav"
            if kind else "it does not start with a RIFF/WAVE header") + ")")
    fmt = body = None
    pos = 12
    while pos + 8 <= len(data) and (fmt is None or body is None):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        chunk = data[pos + 8:pos + 8 + size]
        if cid == b"fmt " and fmt is None:
            fmt = chunk
        elif cid == b"data" and body is None:
            body, declared = chunk, size
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    if fmt is None or len(fmt) < 16:
        raise ValueError(f"{name}: not a readable WAV file (no complete fmt chunk)")
    if body is None:
        raise ValueError(f"{name}: not a readable WAV file (no data chunk)")
    if len(body) < declared and declared != 0xFFFFFFFF:  # streamed files leave it at -1
        warnings.warn(f"{name}: the file holds {len(body)} of the {declared} bytes of audio "
                      "its header gives (truncated?): what is there is read", stacklevel=4)
    return fmt, body


def _decode_samples(raw, code, width, channels):
    """Interleaved little-endian samples -> (N,) float64 mono (not yet clipped)."""
    frame = width * channels
    raw = raw[:len(raw) // frame * frame]  # a truncated data chunk can end mid-frame
    if code in _G711:  # a table of the 256 bytes' values
        x = _G711[code][np.frombuffer(raw, np.uint8)]
    else:
        x = _linear_samples(raw, *_ENCODINGS[(code, width)], width)
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return x


def _linear_samples(raw, dtype, offset, scale, width):
    """PCM or float samples (N,) float64: (raw - offset) / scale."""
    if width == 3:  # 24-bit: each sample into the top three bytes of an int32
        wide = np.zeros((len(raw) // 3, 4), np.uint8)
        wide[:, 1:] = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        raw = wide.tobytes()
    with np.errstate(invalid="ignore", over="ignore"):
        return (np.frombuffer(raw, dtype).astype(np.float64) - offset) / scale


# ----------------------------------------------------------------------------- resampling

def resample(samples, rate, new_rate):
    """Band-limited resampling from ``rate`` to ``new_rate`` Hz: the polyphase FIR filter of
    ``scipy.signal.resample_poly`` (up = new_rate / g, down = rate / g, g = gcd; a Kaiser
    (beta 5) windowed sinc with cut-off at the lower Nyquist and 10 * max(up, down) taps each
    side of the centre), written in NumPy because importing scipy.signal costs about 1 s.

    samples: (N,) floating.  Returns (ceil(N * new_rate / rate),) float32, a new array (a copy
    when the rates are equal); output j is the filtered signal at time j / new_rate.
    Downsampling removes what lies above new_rate / 2; the filter's ringing can take values
    slightly outside [-1, 1], and the first and last ~10 output periods of the lower rate
    fade in and out (zeros are assumed beyond the ends).
    """
    x = _check_samples(samples)
    rate = _check_rate("rate", rate)
    new_rate = _check_rate("new_rate", new_rate)
    if rate == new_rate:
        return x.astype(np.float32)
    g = math.gcd(rate, new_rate)
    up, down = new_rate // g, rate // g
    taps = _polyphase(up, down)                                    # (up, n_taps)
    n_taps, half = taps.shape[1], RESAMPLE_HALF_TAPS * max(up, down)
    # Zeros beyond both ends, so that every output's taps index inside the array.
    xp = np.concatenate([np.zeros(n_taps), x.astype(np.float64), np.zeros(half // up + 2)])
    n_out = -(-len(x) * up // down)
    out = np.empty(n_out, dtype=np.float32)
    block = max(1, RESAMPLE_BLOCK // n_taps)  # bounds the (block, n_taps) gathers
    for s in range(0, n_out, block):
        centre = np.arange(s, min(s + block, n_out)) * down + half  # in upsampled samples
        last = centre // up + n_taps                                # index in xp
        gathered = xp[last[:, None] - np.arange(n_taps)]          # (B, n_taps)
        out[s:s + block] = np.einsum("bt,bt->b", gathered, taps[centre % up])
    return out


@functools.lru_cache(maxsize=8)
def _polyphase(up, down):
    """The anti-aliasing filter h of length 2 * half + 1 (half = RESAMPLE_HALF_TAPS * max(up,
    down)), split into phases: (up, half * 2 // up + 1) float64, read-only, row r tap t =
    h[r + t * up] (0 past the end).  Output j = sum_t x[c // up - t] * row (c % up) tap t,
    c = j * down + half: the convolution of the zero-stuffed signal with h, centred."""
    half = RESAMPLE_HALF_TAPS * max(up, down)
    cutoff = 1.0 / max(up, down)  # of the upsampled Nyquist: the lower of the two Nyquists
    k = np.arange(2 * half + 1) - half
    h = cutoff * np.sinc(cutoff * k) * np.kaiser(2 * half + 1, KAISER_BETA)
    h *= up / h.sum()  # unit gain at DC after zero-stuffing by up
    n_taps = 2 * half // up + 1
    h = np.concatenate([h, np.zeros(n_taps * up - len(h))])
    taps = h.reshape(n_taps, up).T.copy()
    taps.flags.writeable = False
    return taps


# ---------------------------------------------------------------------------- arguments

def _check_samples(samples, name="samples"):
    """``samples`` as a 1-D finite floating NumPy array with at least one element."""
    try:
        x = np.asarray(samples)
    except (TypeError, ValueError) as e:  # ragged lists
        raise TypeError(f"{name} must be a 1-D float array, got {type(samples).__name__}") from e
    if not np.issubdtype(x.dtype, np.floating):
        hint = " (integer PCM: divide by 32768 first)" if np.issubdtype(x.dtype, np.integer) else ""
        raise TypeError(f"{name} must be a 1-D float array (N,) with values in [-1, 1], "
                        f"got dtype {x.dtype}{hint}")
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a 1-D array (N,) with N >= 1 (mono: average the "
                         f"channels first), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite, got NaN or inf")
    return x


def _check_rate(name, rate):
    return check_int(name, rate, 1, MAX_SIZE)


def _frame_sizes(rate, win_ms, hop_ms):
    """(win, hop) in samples from milliseconds; each must be 1 .. MAX_SIZE samples."""
    sizes = []
    for arg, ms in (("win_ms", win_ms), ("hop_ms", hop_ms)):
        n = round(rate * check_real(arg, ms) / 1000)
        if not 1 <= n <= MAX_SIZE:
            raise ValueError(f"{arg}={ms} gives {n} samples at {rate} Hz; it must give "
                             f"1 to {MAX_SIZE}")
        sizes.append(int(n))
    return tuple(sizes)


def _check_band(rate, fmin, fmax):
    """(fmin, fmax) as floats with 0 <= fmin < fmax <= rate / 2; fmax None is rate / 2."""
    fmin = check_real("fmin", fmin)
    fmax = rate / 2 if fmax is None else check_real("fmax", fmax)
    if fmax > rate / 2:
        raise ValueError(f"fmax must be <= rate / 2 = {rate / 2} Hz (Nyquist), got {fmax}")
    if not 0.0 <= fmin < fmax:
        raise ValueError(f"fmin must be in [0, fmax={fmax}) Hz, got {fmin}")
    return fmin, float(fmax)


def _check_n_fft(n_fft, win):
    if n_fft is None:
        return 1 << (win - 1).bit_length()  # next power of two >= win
    n_fft = check_int("n_fft", n_fft, 1, MAX_SIZE)
    if n_fft < win:
        raise ValueError(f"n_fft must be >= the window length ({win} samples), got {n_fft}")
    return n_fft


def _log_mel_params(samples, rate, n_mels=40, win_ms=25.0, hop_ms=10.0, n_fft=None, fmin=0.0,
                    fmax=None, preemphasis=0.97):
    """Check every ``log_mel`` argument, before any work; returns the arguments of
    ``_log_mel64`` (samples (N,) floating, rate, n_mels, win, hop, n_fft, fmin, fmax,
    preemphasis)."""
    x = _check_samples(samples)
    rate = _check_rate("rate", rate)
    n_mels = check_int("n_mels", n_mels, 1, MAX_MELS)
    win, hop = _frame_sizes(rate, win_ms, hop_ms)
    n_fft = _check_n_fft(n_fft, win)
    fmin, fmax = _check_band(rate, fmin, fmax)
    preemphasis = check_real("preemphasis", preemphasis)
    if not 0.0 <= preemphasis <= 1.0:
        raise ValueError(f"preemphasis must be in [0, 1], got {preemphasis}")
    return x, rate, n_mels, win, hop, n_fft, fmin, fmax, preemphasis


# ------------------------------------------------------------------------------- framing

def frame_count(n_samples, rate, hop_ms=10.0, win_ms=25.0):
    """T, the number of frames ``log_mel`` (and ``mfcc``) give for ``n_samples`` >= 1 samples
    at ``rate`` Hz: 1 + ceil(max(n_samples - win, 0) / hop), win and hop in samples."""
    n_samples = check_int("n_samples", n_samples, 1)
    rate = _check_rate("rate", rate)
    win, hop = _frame_sizes(rate, win_ms, hop_ms)
    return _count(n_samples, win, hop)


def _count(n, win, hop):
    return 1 + -(-max(n - win, 0) // hop)


def _frames(x, win, hop, preemphasis):
    """Pre-emphasised, zero-padded frames of ``x`` (N,): a (T, win) float64 read-only strided
    view (frame t is row t, overlapping its neighbours in memory)."""
    n = len(x)
    padded = np.zeros((_count(n, win, hop) - 1) * hop + win)
    padded[:n] = x
    padded[1:n] -= preemphasis * x[:-1]  # x is still the raw signal: y[n] = x[n] - a x[n-1]
    # as_strided, not sliding_window_view: the same view, 5 us instead of 40 us per call
    # (an FSDD file has ~40 frames, so per-call overhead is what costs).
    step = padded.strides[0]
    return np.lib.stride_tricks.as_strided(padded, (_count(n, win, hop), win),
                                           (hop * step, step), writeable=False)


@functools.lru_cache(maxsize=16)
def _hamming(win):
    """(win,) float64 symmetric Hamming window, read-only (cached)."""
    w = np.hamming(win)
    w.flags.writeable = False
    return w


# ---------------------------------------------------------------------------- filterbank

def hz_to_mel(f):
    """HTK mel scale: 2595 log10(1 + f / 700); f in Hz, scalar or array."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of ``hz_to_mel``."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels, n_fft, rate, fmin=0.0, fmax=None):
    """Triangular HTK-mel filters: (n_fft // 2 + 1, n_mels) float64, column m the weights of
    band m over the rfft bins (bin k at k * rate / n_fft Hz); a new, writable array.
    ``power (T, K) @ mel_filterbank(...)`` gives the (T, M) band energies."""
    n_mels = check_int("n_mels", n_mels, 1, MAX_MELS)
    n_fft = check_int("n_fft", n_fft, 1, MAX_SIZE)
    rate = _check_rate("rate", rate)
    return _filterbank(n_mels, n_fft, rate, *_check_band(rate, fmin, fmax)).copy()


@functools.lru_cache(maxsize=32)
def _filterbank(n_mels, n_fft, rate, fmin, fmax):
    """``mel_filterbank`` for checked arguments, read-only (cached)."""
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))  # (M + 2,)
    freqs = np.arange(n_fft // 2 + 1)[:, None] * (rate / n_fft)                    # (K, 1)
    lo, centre, hi = edges[:-2], edges[1:-1], edges[2:]
    fb = np.maximum(0.0, np.minimum((freqs - lo) / (centre - lo), (hi - freqs) / (hi - centre)))
    fb.flags.writeable = False
    return fb


# ------------------------------------------------------------------------------ features

def log_mel(samples, rate, n_mels=40, win_ms=25.0, hop_ms=10.0, n_fft=None, fmin=0.0,
            fmax=None, preemphasis=0.97):
    """Log mel filterbank energies: (T, n_mels) float32, row t = log(energy + LOG_FLOOR) of
    frame t in each band, T = ``frame_count(len(samples), rate, hop_ms, win_ms)``.

    samples: (N,) floating, N >= 1.  The parameters are described in the module docstring.
    """
    return _log_mel64(*_log_mel_params(samples, rate, n_mels, win_ms, hop_ms, n_fft, fmin,
                                       fmax, preemphasis)).astype(np.float32)


def _log_mel64(x, rate, n_mels, win, hop, n_fft, fmin, fmax, preemphasis):
    """``log_mel`` for checked arguments: (T, n_mels) float64."""
    frames = _frames(x, win, hop, preemphasis)                     # (T, win) view
    window, fb = _hamming(win), _filterbank(n_mels, n_fft, rate, fmin, fmax)
    out = np.empty((len(frames), n_mels))
    for s in range(0, len(frames), BLOCK_FRAMES):
        spec = np.fft.rfft(frames[s:s + BLOCK_FRAMES] * window, n=n_fft)  # (B, K) complex
        power = spec.real ** 2 + spec.imag ** 2
        out[s:s + BLOCK_FRAMES] = np.log(power @ fb + LOG_FLOOR)
    return out


def mfcc(samples, rate, n_mfcc=13, deltas=2, n_mels=40, **log_mel_kwargs):
    """Mel-frequency cepstral coefficients with deltas: (T, n_mfcc * (1 + deltas)) float32,
    columns [c_0..c_{n_mfcc-1}, deltas, delta-deltas]; T as in ``log_mel``.

    samples: (N,) floating, N >= 1.  log_mel_kwargs: ``log_mel``'s win_ms, hop_ms, n_fft, fmin,
    fmax, preemphasis.  Defaults give 13 * 3 = 39 features per 10 ms frame.
    """
    params = _log_mel_params(samples, rate, n_mels, **log_mel_kwargs)
    n_mels = params[2]
    n_mfcc = check_int("n_mfcc", n_mfcc, 1)
    if n_mfcc > n_mels:
        raise ValueError(f"n_mfcc must be <= n_mels={n_mels}, got {n_mfcc}")
    deltas = check_int("deltas", deltas, 0, MAX_ORDER)
    cepstra = _log_mel64(*params) @ _dct_matrix(n_mels, n_mfcc)   # (T, C)
    return _with_deltas(cepstra, deltas, DELTA_WIDTH).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _dct_matrix(n_in, n_out):
    """(n_in, n_out) float64 orthonormal DCT-II, first n_out columns: x @ D = DCT-II of x."""
    m = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None, :]
    d = np.cos(np.pi * k * (2 * m + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    d[:, 0] = np.sqrt(1.0 / n_in)
    d.flags.writeable = False
    return d


def add_deltas(feat, order=2, width=2):
    """Append regression deltas: (T, F) -> (T, F * (1 + order)), columns [feat, delta,
    delta of delta, ...], in feat's dtype (computed in float64).

    d_t = sum_{n=1..width} n (c_{t+n} - c_{t-n}) / (2 sum_{n=1..width} n^2), frames beyond the
    ends replaced by the first / last frame.  feat: (T, F) floating, T >= 1, F >= 1.
    """
    try:
        a = np.asarray(feat)
    except (TypeError, ValueError) as e:
        raise TypeError(f"feat must be a 2-D float array (T, F), got {type(feat).__name__}") \
            from e
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"feat must be a 2-D float array (T, F), got dtype {a.dtype}")
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"feat must be a 2-D array (T, F) with T, F >= 1, got shape {a.shape}")
    order = check_int("order", order, 0, MAX_ORDER)
    width = check_int("width", width, 1, MAX_DELTA_WIDTH)
    return _with_deltas(a.astype(np.float64), order, width).astype(a.dtype)


def _with_deltas(c, order, width):
    """(T, F) float64 -> (T, F * (1 + order)) float64: c and its ``order`` successive deltas."""
    blocks = [c]
    for _ in range(order):
        blocks.append(_deltas(blocks[-1], width))
    return np.concatenate(blocks, axis=1)


def _deltas(c, width):
    """(T, F) float64 regression deltas of half-width ``width``, edges replicated."""
    T = len(c)
    # Edge rows repeated by index (np.pad costs 30 us a call); (T + 2 width, F)
    padded = c[np.clip(np.arange(-width, T + width), 0, T - 1)]
    d = np.zeros_like(c)
    for n in range(1, width + 1):  # width is small (2); each step is vectorised over (T, F)
        d += n * (padded[width + n:width + n + T] - padded[width - n:width - n + T])
    return d / (2 * sum(n * n for n in range(1, width + 1)))
