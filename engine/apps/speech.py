"""``speech``: speech recognition: a bidirectional LSTM trained with CTC transcribes recordings.

Data: the bundled Free Spoken Digit Dataset (2,500 recordings of single digits by 5 speakers,
8 kHz; CC BY-SA 4.0), split as the dataset splits it (takes 0-4 of each speaker and digit are
the test set).  Every epoch trains on --strings fresh connected-digit strings of 1-7 digits,
each made from training recordings of one speaker joined by 50-300 ms of low noise with random
gains (so the model must find the digits itself), and on every training recording alone
(or --singles of them).
--heldout-speaker NAME leaves one speaker out of training entirely.  Or a user's own speech:
--wavs DIR --manifest CSV (columns file,transcript; any alphabet), of which every tenth
recording is kept for testing.

Features: 40 log-mel bands of 25 ms windows every 10 ms (``engine.audio``), less each
recording's own mean per band (cepstral mean normalisation), standardised with the training
frames' statistics.  Model: pairs of frames stacked, a bidirectional LSTM, pairs stacked again,
a second bidirectional LSTM, a Dense layer per step (blank + the alphabet), CTC loss: one
output step per 40 ms.  Adam with the learning rate decayed over the epochs (cosine).

Reports, with greedy (best path) and prefix beam decoding: the digit (label) error rate and
string accuracy on strings made only from test recordings of the training speakers, the same
on the held-out speaker, and isolated-digit accuracy on the test recordings.  --transcribe
FILE.wav prints the transcript of a recording of any length (after training, or with --load).
The plot: a test string's spectrogram with the CTC posteriors under it, and the confusion
matrix of the isolated test digits.
"""
import math
import time

import numpy as np

import engine
from engine import audio
from engine.apps.common import (COUNT, POSITIVE, SIZE, AppError, Number, Report,
                                add_load_argument, load_saved, parse_options, print_result,
                                save_model, saved_value, user_data, write_outputs)
from engine.apps.datasets import pad_sequences
from engine.apps.speech_data import (check_fits, load_fsdd, make_strings, read_manifest,
                                     split_fsdd)
from engine.decoding import beam_decode, greedy_decode, label_error_rate, sequence_accuracy
from engine.layers import Subsample
from engine.model import PAD

EPOCHS = 20
# The options only training reads (--load names any given: they change nothing).
TRAINING = ("hidden", "lr", "batch_size", "strings", "singles")
RATE = 8000  # Hz: FSDD's rate; a user's recordings are read at it
N_MELS = 40
STACK = 2  # frames stacked before each LSTM: 10 ms -> 20 ms -> 40 ms per step
TEST_STRINGS = 300  # strings made from the test recordings (and from a held-out speaker)
DIGITS = [str(d) for d in range(10)]


def add_arguments(p):
    p.add_argument("--hidden", type=SIZE, default=96, help="LSTM units per direction")
    p.add_argument("--lr", type=POSITIVE, default=3e-3)
    p.add_argument("--batch-size", type=COUNT, default=32)
    p.add_argument("--strings", type=Number(int, low=0), default=1500,
                   help="connected-digit strings made afresh for every epoch (default 1500)")
    p.add_argument("--singles", type=Number(int, low=0), default=None,
                   help="training recordings also used alone every epoch, drawn afresh "
                        "(default: all of them)")
    p.add_argument("--heldout-speaker", metavar="NAME", default=None,
                   help="leave this FSDD speaker out of training; report on it")
    p.add_argument("--beam", type=COUNT, default=8, help="beam width of the prefix search")
    p.add_argument("--transcribe", metavar="WAV", default=None,
                   help="print the transcript of this recording (after training or --load)")
    p.add_argument("--wavs", metavar="DIR", default=None, help="a folder of your own WAV files")
    p.add_argument("--manifest", metavar="CSV", default=None,
                   help="file,transcript rows for the WAV files of --wavs")
    p.add_argument("--resample", action="store_true",
                   help=f"convert recordings at other rates to {RATE} Hz instead of refusing")
    add_load_argument(p)


# ---------------------------------------------------------------------------- features
class Features:
    """Log-mel frames standardised with training statistics: (T, N_MELS) float32."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    @classmethod
    def fit(cls, recordings):
        frames = np.concatenate([_centred(x) for x in recordings])
        return cls(frames.mean(axis=0), np.maximum(frames.std(axis=0), 1e-3))

    def __call__(self, samples):
        return (_centred(samples) - self.mean) / self.std

    def batch(self, recordings):
        """(N, T_max, N_MELS) float32 padded features and (N,) frame counts."""
        return pad_sequences([self(x) for x in recordings], dtype=np.float32)

    def state(self):
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state(cls, state):
        mean, std = np.asarray(state["mean"], float), np.asarray(state["std"], float)
        if mean.shape != (N_MELS,) or std.shape != (N_MELS,) or not np.all(std > 0):
            raise ValueError(f"expected {N_MELS} means and positive deviations")
        return cls(mean, std)


def _centred(samples):
    """Log-mel frames less the recording's own mean of each band (cepstral mean
    normalisation): a speaker's or a microphone's fixed spectral colouring, and the gain,
    are a constant per band in the log domain, and leave with it."""
    frames = audio.log_mel(samples, RATE, n_mels=N_MELS)
    return frames - frames.mean(axis=0)


def output_steps(n_samples):
    """The model's output steps for a recording of n_samples: frames halved twice, rounding
    up (the Subsample layers)."""
    frames = audio.frame_count(n_samples, RATE)
    return -(-(-(-frames // STACK)) // STACK)


def to_labels(transcripts, alphabet):
    """Each transcript as a list of labels 1..len(alphabet): label k is alphabet[k - 1]
    (0 is the CTC blank)."""
    index = {a: k + 1 for k, a in enumerate(alphabet)}
    return [[index[a] for a in t] for t in transcripts]


def encode(transcripts, alphabet):
    """(N, S) int64 labels (``to_labels``), rows padded with -1."""
    rows = to_labels(transcripts, alphabet)
    y = np.full((len(rows), max(1, max(len(r) for r in rows))), PAD, np.int64)
    for i, r in enumerate(rows):  # one row per transcript
        y[i, :len(r)] = r
    return y


def decode_text(labels, alphabet):
    return [alphabet[k - 1] for k in labels]


# ---------------------------------------------------------------------------- model
def build_model(args, C):
    """Stack, BiLSTM, stack, BiLSTM, Dense: C + 1 scores (blank first) per 40 ms."""
    H, kw = args.hidden, dict(backend=args.backend)
    layers = [Subsample(N_MELS, STACK, **kw),
              engine.LSTM(N_MELS * STACK, H, batch_first=True, bidirectional=True,
                          seed=args.seed, **kw),
              Subsample(2 * H, STACK, **kw),
              engine.LSTM(2 * H * STACK, H, batch_first=True, bidirectional=True,
                          seed=args.seed + 1, **kw),
              engine.Dense(2 * H, C + 1, seed=args.seed + 2, **kw)]
    model = engine.Sequential(layers)
    return model.compile("ctc", engine.Adam(lr=args.lr), clip_norm=5.0)


def recognize(model, features, recordings, beam, batch_size=64):
    """Greedy and beam label sequences of every recording, and the per-step log-probabilities
    (list of (T_i, C + 1)), batch by batch (lengths sorted so padding stays small)."""
    order = np.argsort([len(x) for x in recordings])
    greedy, beamed, posteriors = [None] * len(order), [None] * len(order), [None] * len(order)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        x, lengths = features.batch([recordings[i] for i in rows])
        out = model.predict(x, lengths=lengths)
        steps = model.output_lengths(lengths)
        logp = out - np.logaddexp.reduce(out, axis=2, keepdims=True)
        tm = np.ascontiguousarray(logp.transpose(1, 0, 2))
        for i, g, b, n, p in zip(rows, greedy_decode(tm, steps), beam_decode(tm, steps, beam),
                                 steps, logp):
            greedy[i], beamed[i], posteriors[i] = g, b, p[:n]
    return greedy, beamed, posteriors


def test_on(model, features, alphabet, pairs, args):
    """Scores of the model on (samples, transcript) pairs, and its (greedy, beam)
    transcripts as strings and posteriors."""
    refs = to_labels([t for _, t in pairs], alphabet)
    greedy, beamed, posteriors = recognize(model, features, [x for x, _ in pairs], args.beam)
    result = score(refs, greedy, beamed)
    texts = [["".join(decode_text(h, alphabet)) for h in hyps] for hyps in (greedy, beamed)]
    return result, (*texts, posteriors)


def score(refs, greedy, beamed):
    """Label error rate and sequence accuracy of both decoders."""
    return {name: {"label_error_rate": label_error_rate(refs, hyps),
                   "sequence_accuracy": sequence_accuracy(refs, hyps)}
            for name, hyps in (("greedy", greedy), ("beam", beamed))}


# ---------------------------------------------------------------------------- data
def digit_data(args, rng):
    """FSDD split, the test strings (and held-out ones), isolated test recordings."""
    with user_data():
        parts = split_fsdd(load_fsdd(), args.heldout_speaker)
    sets = {"test strings": as_text(make_strings(parts["test"], TEST_STRINGS, rng)),
            "isolated test digits": [(r.samples, str(r.digit)) for r in parts["test"]]}
    if args.heldout_speaker:
        name = args.heldout_speaker
        sets[f"{name} strings"] = as_text(make_strings(parts["heldout"], TEST_STRINGS, rng))
        sets[f"{name} isolated digits"] = [(r.samples, str(r.digit)) for r in parts["heldout"]]
    return parts["train"], sets


def as_text(pairs):
    """make_strings' (samples, digit list) pairs with the digits as a string."""
    return [(x, "".join(map(str, digits))) for x, digits in pairs]


def epoch_examples(train, args, rng):
    """One epoch's examples: fresh strings and the training recordings alone (all, or
    --singles drawn afresh), each at a random gain; (recordings, transcripts)."""
    pairs = as_text(make_strings(train, args.strings, rng))
    singles = train if args.singles is None or args.singles >= len(train) else \
        [train[i] for i in rng.choice(len(train), args.singles, replace=False)]
    gains = 10 ** (rng.uniform(-6, 6, size=len(singles)) / 20)
    pairs += [(np.clip(r.samples * np.float32(g), -1, 1), str(r.digit))
              for r, g in zip(singles, gains)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def manifest_data(args, known=None):
    """A user's recordings: every tenth is a test recording; transcripts as characters.
    ``known``: a saved model's alphabet, which every test transcript's letters must be in."""
    with user_data():
        samples, texts, alphabet, lines = read_manifest(args.wavs, args.manifest, RATE,
                                                        args.resample)
        for x, t, line in zip(samples, texts, lines):
            check_fits(output_steps(len(x)), t, f"{args.manifest}:{line}")
    test = np.arange(len(samples)) % 10 == 9
    if test.all() or not test.any():
        raise AppError(f"{args.manifest}: {len(samples)} recordings; at least 10 are needed "
                       "(every tenth is kept for testing)")
    for t, line in zip(np.array(texts, object)[test], np.array(lines)[test]):
        new = sorted(set(t) - set(known or t))
        if new:
            raise AppError(f"{args.manifest}:{line}: transcript {t!r} has {new[0]!r}, which "
                           f"the model's alphabet {''.join(known)!r} lacks")
    train = [(x, t) for x, t, k in zip(samples, texts, test) if not k]
    held = [(x, t) for x, t, k in zip(samples, texts, test) if k]
    return train, {"test recordings": held}, alphabet


def check_sources(args):
    if (args.wavs is None) != (args.manifest is None):
        raise AppError("give both --wavs DIR and --manifest CSV (or neither, for the digits)")
    if args.manifest and args.heldout_speaker:
        raise AppError("--heldout-speaker names an FSDD speaker: not with --manifest")


# ---------------------------------------------------------------------------- run
def run(args=None, **overrides):
    """Train for --epochs, then test; returns the metrics dict."""
    args = parse_options(add_arguments, EPOCHS, args, overrides, TRAINING)
    report = Report(args.quiet)
    if args.load:
        return apply_saved(args, report)
    check_sources(args)
    recording = read_recording(args, report)
    rng = np.random.default_rng(args.seed)
    if args.manifest:
        fixed, sets, alphabet = manifest_data(args)
        data = args.manifest
        features = Features.fit([x for x, _ in fixed])
        examples = lambda: ([x for x, _ in fixed], [t for _, t in fixed])  # noqa: E731
    else:
        train, sets = digit_data(args, rng)
        data, alphabet = "FSDD", DIGITS
        features = Features.fit([r.samples for r in train])
        examples = lambda: epoch_examples(train, args, rng)  # noqa: E731
    model = build_model(args, len(alphabet))
    report(f"speech: {data}, alphabet {''.join(alphabet)!r}, "
           + ", ".join(f"{len(v)} {k}" for k, v in sets.items()))
    history = train_epochs(model, features, examples, alphabet, args, report)
    save_model(model, args, report, command="speech", alphabet=alphabet,
               features=features.state(),
               input=f"{N_MELS} log-mel bands per 10 ms of {RATE} Hz audio (engine.audio."
                     "log_mel), standardised with `features` mean and std",
               output="per 40 ms step, scores of the CTC blank then each letter of `alphabet`")
    metrics = {"command": "speech", "data": data, "alphabet": alphabet,
               "epochs": len(history["loss"]), "hidden": args.hidden, "beam": args.beam,
               "history": history, "results": {}}
    shown = test_sets(model, features, alphabet, sets, args, report, metrics)
    if recording is not None:
        metrics["transcript"] = transcribe(model, features, alphabet, recording, args,
                                           report)[0]
    return write_outputs(args, "speech", metrics,
                         lambda plt, path: plot(plt, path, shown, alphabet, features, metrics),
                         report)


def test_sets(model, features, alphabet, sets, args, report, metrics):
    """Test the model on each of ``sets`` ({name: (samples, transcript) pairs}) into
    ``metrics["results"]``; returns what the plot shows: the first test string, its
    posteriors and its beam transcript."""
    shown = None
    for name, pairs in sets.items():
        result, (greedy, beamed, posteriors) = test_on(model, features, alphabet, pairs, args)
        metrics["results"][name] = result
        report(format_score(name, result))
        if shown is None:
            shown = (pairs[0], posteriors[0], beamed[0])
        if "isolated" in name:
            result["confusion_matrix"] = digit_confusion([t for _, t in pairs], greedy)
    return shown


def cosine_lr(lr, epoch, epochs, floor=0.05):
    """The learning rate of ``epoch`` (0-based): cosine decay from ``lr`` to ``floor * lr``
    over the run (Loshchilov & Hutter 2017, without restarts), so that the last epochs settle
    on a minimum instead of the weights the last large steps happened to leave."""
    done = epoch / max(epochs - 1, 1)
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * done)))


def length_batches(lengths, batch_size, rng):
    """An order of the examples whose consecutive batches hold similar lengths (sorted, cut
    into batches, the batches shuffled): each batch is cut to its longest example, so little
    padding is computed for nothing.  Every rank of a distributed run draws the same."""
    order = np.argsort(lengths, kind="stable")
    full = len(order) // batch_size * batch_size  # a short last batch stays last, so that
    batches = order[:full].reshape(-1, batch_size)  # fit's consecutive cuts meet these ones
    return np.concatenate([batches[rng.permutation(len(batches))].reshape(-1), order[full:]])


def train_epochs(model, features, examples, alphabet, args, report):
    """--epochs epochs, each on ``examples()`` (fresh strings for the digits) in batches of
    similar lengths; returns the losses, and the training throughput in audio seconds per
    wall second."""
    rng = np.random.default_rng([args.seed, 1])
    history = {"loss": [], "audio_seconds": 0.0, "train_seconds": 0.0, "data_seconds": 0.0}
    for epoch in range(args.epochs):
        model.optimizer.lr = cosine_lr(args.lr, epoch, args.epochs)
        start = time.perf_counter()
        recordings, texts = examples()
        x, lengths = features.batch(recordings)
        history["data_seconds"] += time.perf_counter() - start
        order = length_batches(lengths, args.batch_size, rng)
        x, y, lengths = x[order], encode(texts, alphabet)[order], lengths[order]
        start = time.perf_counter()
        h = model.fit(x, y, lengths=lengths, epochs=1, batch_size=args.batch_size,
                      shuffle=False, verbose=not args.quiet, distributed=args.distributed)
        history["train_seconds"] += time.perf_counter() - start
        history["audio_seconds"] += sum(len(r) for r in recordings) / RATE
        history["loss"].append(h["loss"][0])
    speed = history["audio_seconds"] / history["train_seconds"]
    history["audio_seconds_per_second"] = speed
    report(f"trained {args.epochs} epochs on {history['audio_seconds'] / 3600:.2f} h of audio "
           f"in {history['train_seconds']:.0f} s: {speed:.0f} audio seconds per second "
           f"(making the examples and their features: {history['data_seconds']:.0f} s more)")
    return history


def format_score(name, result):
    return f"{name:>28}: " + "; ".join(
        f"{how} {r['label_error_rate']:.2%} label errors, {r['sequence_accuracy']:.1%} "
        "exact" for how, r in result.items() if how in ("greedy", "beam"))


def digit_confusion(refs, hyps):
    """(10, 11) counts: true digit by recognised single digit; the last column counts
    transcripts that are not exactly one digit."""
    cm = np.zeros((len(DIGITS), len(DIGITS) + 1), dtype=np.int64)
    for r, h in zip(refs, hyps):
        cm[int(r[0]), int(h[0]) if len(h) == 1 else len(DIGITS)] += 1
    return cm.tolist()


def read_recording(args, report):
    """--transcribe's WAV at RATE (resampled when needed), or None; read before any training
    so that a bad file stops the command at once."""
    if args.transcribe is None:
        return None
    with user_data():
        x, rate = audio.read_wav(args.transcribe)
    if rate != RATE:
        report(f"{args.transcribe}: {rate} Hz, resampled to {RATE} Hz")
        x = audio.resample(x, rate, RATE)
    if audio.frame_count(len(x), RATE) < 2:  # one frame minus its own mean is all zeros
        raise AppError(f"{args.transcribe}: {1000 * len(x) / RATE:.1f} ms of audio, no longer "
                       "than one 25 ms analysis frame: nothing to transcribe (a spoken digit "
                       "takes a few tenths of a second)")
    return x


def transcribe(model, features, alphabet, x, args, report):
    """(the beam transcript of --transcribe's recording ``x``, what the plot shows of it)."""
    _, beamed, posteriors = recognize(model, features, [x], args.beam)
    text = "".join(decode_text(beamed[0], alphabet))
    if args.quiet:  # bare, for scripts; the report line below says it otherwise
        print_result(args, text)
    report(f"transcript of {args.transcribe} ({len(x) / RATE:.2f} s): {text!r}")
    return text, ((x, None), posteriors[0], text)


def _alphabet(value):
    if not isinstance(value, list) or not value or not all(
            isinstance(a, str) and len(a) == 1 for a in value) or len(set(value)) != len(value):
        raise ValueError(f"expected a list of distinct characters, got {str(value)[:80]}")
    return value


def apply_saved(args, report):
    """--load: test the saved model on the digits' test sets (or a manifest's every tenth
    recording) and transcribe --transcribe."""
    model = load_saved(args, "speech")
    alphabet = saved_value(args, model, "alphabet", _alphabet)
    features = saved_value(args, model, "features", Features.from_state)
    if model.layers[-1].out_features != len(alphabet) + 1:
        raise AppError(f"{args.load}: {len(alphabet)} letters for "
                       f"{model.layers[-1].out_features} outputs (blank + letters expected)")
    metrics = {"command": "speech", "model": args.load, "alphabet": alphabet, "results": {}}
    if args.transcribe:
        recording = read_recording(args, report)
        metrics["transcript"], shown = transcribe(model, features, alphabet, recording, args,
                                                  report)
    else:
        check_sources(args)
        if args.manifest:
            _, sets, _ = manifest_data(args, alphabet)
        else:
            _, sets = digit_data(args, np.random.default_rng(args.seed))
        shown = test_sets(model, features, alphabet, sets, args, report, metrics)
    return write_outputs(args, "speech", metrics,
                         lambda plt, path: plot(plt, path, shown, alphabet, features, metrics),
                         report)


# ---------------------------------------------------------------------------- plot
def plot(plt, path, shown, alphabet, features, m):
    """A test string's log-mel spectrogram with the CTC posteriors under it, and the
    confusion matrix of the isolated test digits (when there are any)."""
    (samples, truth), logp, hyp = shown
    cms = [(k, r["confusion_matrix"]) for k, r in m["results"].items()
           if "confusion_matrix" in r]
    fig = plt.figure(figsize=(12, 6))
    grid = fig.add_gridspec(2, 2 if cms else 1, width_ratios=[2.2, 1] if cms else None)
    spec = fig.add_subplot(grid[0, 0])
    frames = audio.log_mel(samples, RATE, n_mels=N_MELS)
    seconds = len(samples) / RATE
    spec.imshow(frames.T, origin="lower", aspect="auto", cmap="magma",
                extent=(0, seconds, 0, N_MELS))
    said = f"beam {''.join(hyp)!r}"
    spec.set(ylabel="mel band", title=said if truth is None else f"truth {''.join(truth)!r}, "
                                                                 + said)
    post = fig.add_subplot(grid[1, 0], sharex=spec)
    t = (np.arange(len(logp)) + 0.5) * seconds / len(logp)
    post.plot(t, np.exp(logp[:, 0]), color="0.7", linestyle="--", label="blank")
    for k, a in enumerate(alphabet, start=1):
        p = np.exp(logp[:, k])
        if p.max() > 0.5:
            post.plot(t, p, label=a)
    post.set(xlabel="seconds", ylabel="CTC posterior", ylim=(0, 1.05))
    post.legend(loc="upper right", fontsize=7, ncol=6)
    if cms:
        name, cm = cms[0]
        cm = np.array(cm)
        ax = fig.add_subplot(grid[:, 1])
        ax.imshow(cm, cmap="Blues")
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set_xticks(range(cm.shape[1]), DIGITS + ["other"], fontsize=7)
        ax.set_yticks(range(cm.shape[0]), DIGITS, fontsize=7)
        ax.set(xlabel="recognised (greedy)", ylabel="spoken", title=name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
