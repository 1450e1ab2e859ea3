"""Data for the speech recognizer: the vendored Free Spoken Digit Dataset, connected-digit
strings built from it, and a user's own recordings listed in a CSV manifest.

Samples are always float32 (N,) mono in [-1, 1] at ``rate`` Hz (``engine.audio.read_wav``).
Bad files raise ValueError: a manifest's as ``FILE:LINE: problem`` (``engine.apps.datasets``'
style, lines counted from 1), an archive member's as ``ARCHIVE: MEMBER: problem``.

==================  =========================================================================
``load_fsdd``       the 2,500 FSDD recordings (5 speakers x 10 digits x 50), list[Recording]
``split_fsdd``      {"train", "test", "heldout"}: FSDD's own split, optionally one speaker out
``make_strings``    connected-digit strings: (samples, transcript list[int]) pairs
``read_manifest``   a user's WAV files and transcripts from ``file,transcript`` CSV
``check_fits``      a transcript's CTC minimum number of frames against what the audio gives
==================  =========================================================================

The FSDD archive is ``engine/apps/data/fsdd-recordings.tar.xz`` (source and licence, CC BY-SA
4.0, in ``engine/apps/data/PROVENANCE.md``).
"""
import io
import lzma
import re
import tarfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from engine import audio
from engine.apps.datasets import DATA_DIR, _fail, read_csv_table
from engine.checks import check_int, check_real

FSDD_PATH = DATA_DIR / "fsdd-recordings.tar.xz"
# FSDD's README: "Test: files with index 0-4 (inclusive), train: 5-49".
FSDD_TEST_INDICES = 5
_MEMBER = re.compile(r"recordings/(\d)_([^_/]+)_(\d+)\.wav")
# What a damaged or non-tar archive raises while being read as a stream (a missing file's
# OSError is left as it is).
_ARCHIVE_ERRORS = (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError)


class Recording(NamedTuple):
    """One spoken digit.

    samples: float32 (N,) mono in [-1, 1], N >= 1
    rate:    sample rate in Hz (8000 for FSDD)
    digit:   the digit spoken, 0-9
    speaker: the speaker's name (FSDD: george, jackson, nicolas, theo, yweweler)
    index:   the take, 0-49; FSDD's test split is index 0-4
    """
    samples: np.ndarray
    rate: int
    digit: int
    speaker: str
    index: int


# ------------------------------------------------------------------------------------- FSDD

def load_fsdd(path=None):
    """Every recording of an FSDD archive, sorted by (speaker, digit, index).

    path: an (optionally compressed) tar file whose regular members are all named
    ``recordings/{digit}_{speaker}_{index}.wav``; default the vendored FSDD (2,500 recordings,
    about 2 s to read).  Read in one streaming pass; nothing is cached.

    Returns list[Recording].  Raises ValueError naming the archive (and the member) for a
    damaged archive, a member named otherwise, a member given twice, an unreadable WAV
    (``read_wav``'s message) or an archive with no recordings.
    """
    path = Path(FSDD_PATH if path is None else path)
    try:
        with tarfile.open(path, "r|*") as tar:
            recordings = [_fsdd_member(path, tar, m) for m in tar if not m.isdir()]
    except _ARCHIVE_ERRORS as e:
        raise ValueError(f"{path}: not a readable tar archive ({e or type(e).__name__})") \
            from e
    if not recordings:
        raise ValueError(f"{path}: no recordings in the archive")
    recordings.sort(key=lambda r: (r.speaker, r.digit, r.index))
    _check_unique(path, recordings)
    return recordings


def _fsdd_member(path, tar, member):
    """The Recording of one archive member; its name must match _MEMBER."""
    name = f"{path}: {member.name}"
    m = _MEMBER.fullmatch(member.name)
    if m is None or not member.isfile():
        kind = "is not a regular file" if m else "is not named"
        raise ValueError(f"{name}: {kind} recordings/DIGIT_SPEAKER_INDEX.wav")
    # A streamed member cannot seek, and ``wave`` seeks past chunks it skips: read it whole.
    samples, rate = audio.read_wav(io.BytesIO(tar.extractfile(member).read()), name=name)
    return Recording(samples, rate, int(m.group(1)), m.group(2), int(m.group(3)))


def _check_unique(path, recordings):
    """Two members with the same digit, speaker and index would make the split ambiguous."""
    keys = [(r.speaker, r.digit, r.index) for r in recordings]
    for a, b in zip(keys, keys[1:]):
        if a == b:
            raise ValueError(f"{path}: recordings/{a[1]}_{a[0]}_{a[2]}.wav is in the archive "
                             "twice")


def split_fsdd(recordings, heldout_speaker=None):
    """FSDD's own split, optionally with one speaker held out entirely.

    Returns {"train": index >= 5, "test": index 0-4, "heldout": every recording of
    ``heldout_speaker``}: lists of Recording in the given order; train and test hold no
    recording of the held-out speaker; "heldout" is [] when it is None.  An unknown speaker
    raises ValueError listing the speakers.
    """
    speakers = sorted({r.speaker for r in recordings})
    if heldout_speaker is not None and heldout_speaker not in speakers:
        raise ValueError(f"unknown speaker {heldout_speaker!r}; speakers: {speakers}")
    kept = [r for r in recordings if r.speaker != heldout_speaker]
    return {"train": [r for r in kept if r.index >= FSDD_TEST_INDICES],
            "test": [r for r in kept if r.index < FSDD_TEST_INDICES],
            "heldout": [r for r in recordings if r.speaker == heldout_speaker]}


# ---------------------------------------------------------------------- connected digits

def make_strings(recordings, n, rng, min_digits=1, max_digits=7, gap_ms=(50, 300),
                 noise_db=(-60, -40), gain_db=(-6, 6)):
    """``n`` connected-digit strings spliced from single-digit recordings.

    Each string: one speaker (uniform among those in ``recordings``), L digits (L uniform in
    [min_digits, max_digits]; each digit uniform among those the speaker has recordings of),
    for each digit a random recording of that speaker and digit, scaled by a gain uniform in
    ``gain_db`` dB.  A gap of uniform length in ``gap_ms`` (rounded to whole samples) comes
    before each recording and after the last, so the string is sum(recording lengths) + sum(L + 1
    gaps) samples long.  Gaussian background noise, RMS uniform in ``noise_db`` dB relative to
    full scale (1.0), covers the whole string: it is all the gaps hold.  The sum is clipped to
    [-1, 1], as a recorder would (FSDD peaks at full scale, so +6 dB can clip).

    recordings: Recording-like (samples, rate, digit, speaker, ...), all at one rate.
    rng: np.random.Generator; the strings depend only on it and the arguments.
    Returns list of n (samples float32 (N,), transcript list[int] of L digits).
    """
    n = check_int("n", n, 0)
    lengths = (check_int("min_digits", min_digits, 1), check_int("max_digits", max_digits, 1))
    if lengths[0] > lengths[1]:
        raise ValueError(f"min_digits={min_digits} must be <= max_digits={max_digits}")
    rate, speakers = _speaker_pools(recordings)
    gaps = tuple(round(rate * ms / 1000) for ms in _check_range("gap_ms", gap_ms, 0.0))
    levels = (_check_range("noise_db", noise_db), _check_range("gain_db", gain_db))
    return [_make_string(speakers[rng.integers(len(speakers))], rng, lengths, gaps, *levels)
            for _ in range(n)]


def _check_range(name, value, minimum=None):
    """(lo, hi) floats with lo <= hi (and lo >= minimum when given)."""
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (low, high), got {value!r}") from None
    lo, hi = check_real(name, lo), check_real(name, hi)
    if not lo <= hi or (minimum is not None and lo < minimum):
        at_least = "" if minimum is None else f" and low >= {minimum:g}"
        raise ValueError(f"{name} must be (low, high) with low <= high{at_least}, got {value!r}")
    return lo, hi


def _speaker_pools(recordings):
    """(rate, pools): pools[s] = (digits int64 (D,), counts int64 (D,), takes) for speaker s
    in name order, takes[d] the list of that speaker's sample arrays of digits[d]."""
    by_speaker = {}
    for r in recordings:
        by_speaker.setdefault(r.speaker, {}).setdefault(int(r.digit), []).append(r.samples)
    if not by_speaker:
        raise ValueError("make_strings: no recordings given")
    rates = sorted({int(r.rate) for r in recordings})
    if len(rates) > 1:
        raise ValueError(f"make_strings: the recordings have different sample rates {rates} Hz; "
                         "resample them to one rate first")
    pools = []
    for speaker in sorted(by_speaker):
        digits = sorted(by_speaker[speaker])
        takes = [by_speaker[speaker][d] for d in digits]
        pools.append((np.array(digits), np.array([len(t) for t in takes]), takes))
    return rates[0], pools


def _make_string(pool, rng, lengths, gaps, noise_db, gain_db):
    """One string from one speaker's ``pool`` (see ``make_strings``)."""
    digits, counts, takes = pool
    L = int(rng.integers(lengths[0], lengths[1] + 1))
    which = rng.integers(len(digits), size=L)
    picks = rng.integers(0, counts[which])              # one take per digit, vectorised
    pieces = [takes[w][p] for w, p in zip(which, picks)]
    gains = 10.0 ** (rng.uniform(*gain_db, size=L) / 20.0)
    gap = rng.integers(gaps[0], gaps[1] + 1, size=L + 1)
    rms = 10.0 ** (rng.uniform(*noise_db) / 20.0)
    total = int(gap.sum()) + sum(len(p) for p in pieces)
    x = rng.standard_normal(total, dtype=np.float32)
    x *= np.float32(rms)
    start = int(gap[0])
    for piece, g, after in zip(pieces, gains, gap[1:]):
        x[start:start + len(piece)] += np.float32(g) * piece
        start += len(piece) + int(after)
    np.clip(x, -1.0, 1.0, out=x)
    return x, digits[which].tolist()


# ---------------------------------------------------------------------- a user's speech

def read_manifest(wav_dir, manifest_csv, rate=8000, resample=False):
    """A user's recordings and their transcripts, listed in a CSV manifest.

    manifest_csv: a CSV file with a header row naming (at least) the columns ``file`` and
    ``transcript``; ``file`` is a WAV path relative to ``wav_dir`` (or absolute), transcript
    any non-empty text (quote it when it holds commas; surrounding spaces are dropped).
    rate: the sample rate wanted, Hz.  A WAV file at another rate raises, or is converted with
    ``engine.audio.resample`` when ``resample`` is True.

    Returns (samples, transcripts, alphabet, lines): samples a list of float32 (N_i,) arrays
    at ``rate``, transcripts the list of str in file order, alphabet the sorted list of the
    distinct characters of all transcripts, lines each row's line in the manifest (for later
    ``FILE:LINE`` messages).  Raises ValueError ``FILE:LINE: problem`` (FILE the
    manifest) for a missing header or column, a missing or unreadable WAV file, a wrong sample
    rate, an empty transcript, or no rows.
    """
    rate = check_int("rate", rate, 1)
    table = read_csv_table(manifest_csv)
    if "file" not in table.header or "transcript" not in table.header:
        _fail(table.path, table.header_line, "expected a header row with the columns "
                                             f"file,transcript; found {table.header}")
    f, t = table.column("file"), table.column("transcript")
    if not table.rows:
        _fail(table.path, table.header_line, "no recordings listed after the header")
    samples, transcripts = [], []
    for row, line in zip(table.rows, table.lines):
        if not row[t]:
            _fail(table.path, line, f"empty transcript for {row[f]!r}")
        samples.append(_manifest_wav(table.path, line, Path(wav_dir), row[f], rate, resample))
        transcripts.append(row[t])
    return samples, transcripts, sorted(set("".join(transcripts))), list(table.lines)


def _manifest_wav(manifest, line, wav_dir, name, rate, resample):
    """The samples of one manifest row's WAV file at ``rate``; errors name the manifest line."""
    if not name:
        _fail(manifest, line, "empty file name")
    path = wav_dir / name
    if not path.is_file():
        what = "is a folder, not a WAV file" if path.is_dir() else "not found"
        _fail(manifest, line, f"WAV file {path} {what}")
    try:
        x, found = audio.read_wav(path)
    except (ValueError, OSError) as e:
        _fail(manifest, line, str(e))
    if found == rate:
        return x
    if not resample:
        _fail(manifest, line, f"{path}: sample rate {found} Hz, expected {rate} Hz; "
                              "resample=True (--resample) converts it")
    return audio.resample(x, found, rate)


def ctc_min_frames(transcript):
    """The fewest frames CTC can align ``transcript`` (a sequence of labels) to: one per label,
    plus a blank between each pair of equal adjacent labels ("aa" needs 3)."""
    return len(transcript) + sum(a == b for a, b in zip(transcript, transcript[1:]))


def check_fits(n_frames, transcript, where):
    """Raise ValueError ``where: ...`` when ``n_frames`` are fewer than ``ctc_min_frames``."""
    needed = ctc_min_frames(transcript)
    if n_frames < needed:
        raise ValueError(f"{where}: transcript of {len(transcript)} labels needs at least "
                         f"{needed} frames, the audio gives {n_frames}")
