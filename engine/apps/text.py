"""``text``: a character-level language model, Embedding -> LSTM -> softmax.

Data: the bundled *Devil's Dictionary* (Bierce), or ``--text FILE`` (UTF-8, else latin-1).
The last 10% of the text is held out.  The training text is cut into ``--batch-size``
contiguous streams; each epoch is one pass of truncated BPTT over them in chunks of
``--seq`` characters, with (h, c) carried from chunk to chunk (``fit(..., tbptt=K)``).
Training stops after ``--epochs`` or ``--minutes`` (default 6), whichever comes first; the
learning rate follows a cosine decay over that budget, and the weights of the epoch with the
lowest held-out loss are kept.  The held-out loss is reported in nats and bits per character.

Generation: ``--sample N --temperature T --prime TEXT`` prints N characters after training,
or, with ``--load MODEL``, from a model saved earlier by ``--save MODEL`` (its vocabulary is
saved in the checkpoint, as ``model.metadata["vocab"]``).
"""
import json
import math
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import engine
from engine.apps.common import (COUNT, POSITIVE, SIZE, AppError, Number, Report,
                                parse_options, print_result, save_model, user_data,
                                write_outputs)
from engine.apps.datasets import load_devils_dictionary, read_text
from engine import distributed
from engine.apps.windows import CharVocab

EPOCHS = 200
# The options only training reads (--load names any given: they change nothing).
TRAINING = ("text", "minutes", "hidden", "layers", "embed", "batch_size", "seq", "lr")


def add_arguments(p):
    p.add_argument("--text", metavar="FILE", help="a text file (default: the bundled "
                   "Devil's Dictionary)")
    p.add_argument("--minutes", type=POSITIVE, default=6.0, help="training time budget")
    p.add_argument("--hidden", type=SIZE, default=256, help="LSTM hidden size (default 256)")
    p.add_argument("--layers", type=Number(int, low=1, high=64), default=1,
                   help="stacked LSTM layers (default 1)")
    p.add_argument("--embed", type=SIZE, default=32, help="embedding size (default 32)")
    p.add_argument("--batch-size", type=COUNT, default=64, help="parallel streams")
    p.add_argument("--seq", type=COUNT, default=100, help="truncated-BPTT chunk length K")
    p.add_argument("--lr", type=POSITIVE, default=3e-3, help="peak Adam learning rate")
    p.add_argument("--sample", type=Number(int, low=0), default=300, metavar="N",
                   help="characters to generate (0: none)")
    p.add_argument("--temperature", type=POSITIVE, default=0.7)
    p.add_argument("--prime", default=None, help="text to start the sample from (default: a "
                   "newline, or the text's first character in sorted order if it has none)")
    p.add_argument("--load", metavar="MODEL", help="generate from a saved model; no training")


# ------------------------------------------------------------------------------- data
def load_text(args):
    """(text, name)."""
    if args.text is None:
        return load_devils_dictionary(), "The Devil's Dictionary"
    with user_data():
        return read_text(args.text), args.text


def split_ids(text, args):
    """Vocabulary of the whole text and the ids of the training (first 90%) and held-out
    (last 10%) parts, int32."""
    n_val = len(text) // 10
    need = 2 * args.seq + 2
    if len(text) - n_val < need or n_val < 2:
        where = args.text or "text"
        raise AppError(f"{where}:1: text too short: {len(text)} characters; at least "
                       f"{max(need + need // 9, 20)} needed for --seq {args.seq}")
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    return vocab, ids[: len(ids) - n_val], ids[len(ids) - n_val:]


def streams(ids, B, offset=0):
    """Cut ids[offset:] into B contiguous streams: x (B, L) and the next characters y (B, L)."""
    B = max(1, min(B, (len(ids) - offset - 1) // 2))
    L = (len(ids) - offset - 1) // B
    x = ids[offset: offset + B * L].reshape(B, L)
    y = ids[offset + 1: offset + 1 + B * L].reshape(B, L)
    return x, y.astype(np.int64)


# ------------------------------------------------------------------------------- model
def build_model(args, V):
    """Embedding(V, E) -> LSTM(E, H, layers) -> Dense(H, V), many-to-many, Adam, clip 5."""
    layers = [engine.Embedding(V, args.embed, backend=args.backend, seed=args.seed),
              engine.LSTM(args.embed, args.hidden, num_layers=args.layers, batch_first=True,
                          backend=args.backend, seed=args.seed + 1),
              engine.Dense(args.hidden, V, backend=args.backend, seed=args.seed + 2)]
    model = engine.Sequential(layers, output="many_to_many")
    return model.compile("cross_entropy", engine.Adam(lr=args.lr), clip_norm=5.0)


def step_logits(model, ids, states):
    """Logits (B, T, V) as float64 for ids (B, T), starting from ``states`` (one (h, c) per
    LSTM, or None); returns (logits, new states), so that the state carries over from call
    to call."""
    logits, states = model.predict(ids, batch_size=len(ids), states=states,
                                   return_states=True)
    return logits.astype(np.float64), states


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def heldout_nats(model, ids, streams_n=16, chunk=250):
    """Mean cross-entropy (nats/char) of predicting ids[1:] from ids[:-1], with the state
    carried through ``streams_n`` contiguous streams (each starts from a zero state)."""
    x, y = streams(ids, streams_n)
    total, states = 0.0, None
    for t0 in range(0, x.shape[1], chunk):
        logits, states = step_logits(model, x[:, t0:t0 + chunk], states)
        lp = log_softmax(logits)
        yb = y[:, t0:t0 + chunk]
        total -= np.take_along_axis(lp, yb[..., None], axis=-1).sum()
    return total / y.size


# ------------------------------------------------------------------------------- training
def cosine_lr(lr0, frac):
    """Cosine decay from lr0 to lr0/20 as ``frac`` (elapsed share of the budget) goes 0 -> 1."""
    frac = min(max(frac, 0.0), 1.0)
    return lr0 / 20 + 0.5 * (lr0 - lr0 / 20) * (1 + math.cos(math.pi * frac))


def train(model, train_ids, val_ids, args, report):
    """Epochs of carried-state truncated BPTT until --epochs or --minutes; keeps the best
    held-out epoch.  The budget is checked after every update (one chunk of --seq steps), so
    a long epoch stops on time, and the bar shows the budget used, the epoch, the running
    loss, characters/s and the time left.  Returns the history (per epoch: minutes, loss,
    val_loss)."""
    rng = np.random.default_rng(args.seed)
    budget = args.minutes * 60.0
    hist = {"minutes": [], "loss": [], "val_loss": [], "chars": 0}
    best, best_state, start = np.inf, None, time.perf_counter()
    ranks = distributed.ranks() if args.distributed else None

    def clock():
        """Seconds since the start, by rank 0's clock when distributed: every rank must take
        the same learning rate and stop after the same epoch."""
        seconds = time.perf_counter() - start
        return seconds if ranks is None else ranks.broadcast(seconds)
    bar = tqdm(total=round(budget), unit="s", disable=args.quiet, desc="text",
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s{postfix}")
    with bar:
        for epoch in range(args.epochs):
            model.optimizer.lr = cosine_lr(args.lr, clock() / budget)
            x, y = streams(train_ids, args.batch_size, int(rng.integers(args.seq)))
            done = {"chars": 0}

            def on_batch(loss, x=x, done=done, epoch=epoch):
                done["chars"] += x.shape[0] * args.seq
                elapsed = time.perf_counter() - start
                bar.update(min(elapsed, budget) - bar.n)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}",
                                chars_s=f"{(hist['chars'] + done['chars']) / elapsed:,.0f}",
                                left=f"{max(budget - elapsed, 0):.0f} s")
                return elapsed >= budget
            h = model.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, tbptt=args.seq,
                          verbose=False, on_batch=on_batch, distributed=args.distributed)
            val = heldout_nats(model, val_ids)
            elapsed = clock()
            hist["chars"] += min(done["chars"], x.size)
            for key, v in (("minutes", elapsed / 60), ("loss", h["loss"][0]), ("val_loss", val)):
                hist[key].append(v)
            if val < best:
                best, best_state, hist["best_epoch"] = val, model.state_dict(), epoch + 1
            if elapsed >= budget:
                break
    model.load_state_dict(best_state)
    hist["seconds"] = time.perf_counter() - start
    return hist


# ------------------------------------------------------------------------------- sampling
def default_prime(vocab):
    """A newline when the text has one (a sample then starts as a line does), else the
    vocabulary's first character: a text on one line must still sample without --prime."""
    return "\n" if "\n" in vocab.chars else vocab.chars[0]


def prime_ids(vocab, prime):
    """The ids of ``prime``; AppError when it is empty or has a character the text lacks.
    ``run`` calls it before training, so a bad prime never costs a training run."""
    if not prime:
        raise AppError("--prime must not be empty")
    try:
        return vocab.encode(prime)
    except ValueError as e:
        raise AppError(f"--prime: {e}; give a --prime made of characters of the text "
                       f"(for example --prime {vocab.chars[0]!r})") from e


def sample(model, vocab, n, temperature=1.0, prime=None, seed=0):
    """``prime`` (default ``default_prime``) followed by n generated characters (softmax of
    logits / temperature)."""
    if not temperature > 0:
        raise AppError(f"--temperature must be > 0, got {temperature}")
    prime = default_prime(vocab) if prime is None else prime
    ids = prime_ids(vocab, prime)
    rng = np.random.default_rng(seed)
    logits, states = step_logits(model, ids[None, :].astype(np.int64), None)
    out = []
    for _ in range(n):
        z = logits[0, -1] / temperature
        p = np.exp(z - z.max())
        nxt = int(rng.choice(len(p), p=p / p.sum()))
        out.append(nxt)
        logits, states = step_logits(model, np.array([[nxt]]), states)
    return prime + vocab.decode(np.array(out, dtype=np.int64))


def vocab_path(model_path):
    """Where models saved before the vocabulary moved into the checkpoint kept it."""
    return Path(model_path).with_suffix(".vocab.json")


def load_model(args):
    """(model, vocab) from --load: the vocabulary is in the checkpoint's metadata (or, for
    older saves, in a .vocab.json beside it)."""
    with user_data():
        model = engine.load(args.load, backend=args.backend)
        command = model.metadata.get("command", "text")
        if command != "text":
            raise AppError(f"{args.load}: a model saved by the {command!r} command, not by "
                           f"'text'")
        chars = model.metadata.get("vocab")
        if chars is None:
            chars = json.loads(vocab_path(args.load).read_text(encoding="utf-8"))["chars"]
        if not isinstance(chars, str):
            raise ValueError(f"{args.load}: metadata 'vocab' must be a string of characters")
        vocab = CharVocab(chars)
    sizes = {getattr(model.layers[0], "num_embeddings", None),
             getattr(model.layers[-1], "out_features", None)}
    if sizes != {len(vocab)}:
        raise AppError(f"{args.load}: a vocabulary of {len(vocab)} characters for a model of "
                       f"{sorted(sizes, key=str)} tokens")
    return model, vocab


# ------------------------------------------------------------------------------- command
def run(args=None, **overrides):
    """Train (or --load) a character model; returns the metrics dict."""
    args = parse_options(add_arguments, EPOCHS, args, overrides, TRAINING)
    report = Report(args.quiet)
    if args.load:
        return generate_only(args, report)

    text, name = load_text(args)
    vocab, train_ids, val_ids = split_ids(text, args)
    if args.sample and args.prime is not None:  # a bad prime stops before training
        prime_ids(vocab, args.prime)
    report(f"text: {name}, {len(text):,} characters, vocabulary {len(vocab)}, "
           f"held out {len(val_ids):,}; budget {args.minutes:g} min")
    model = build_model(args, len(vocab))
    hist = train(model, train_ids, val_ids, args, report)
    nats = heldout_nats(model, val_ids)
    save_model(model, args, report, command="text", vocab=vocab.chars,
               input="character ids: position in `vocab`", output="next-character logits")
    metrics = {
        "command": "text", "data": name, "n_chars": len(text), "vocab_size": len(vocab),
        "heldout_chars": int(len(val_ids)), "heldout_nats_per_char": float(nats),
        "heldout_bits_per_char": float(nats / math.log(2)), "epochs_run": len(hist["loss"]),
        "best_epoch": hist["best_epoch"], "train_seconds": hist["seconds"],
        "train_chars": hist["chars"], "train_chars_per_second": hist["chars"] / hist["seconds"],
        "history": {k: hist[k] for k in ("minutes", "loss", "val_loss")},
    }
    report(f"held-out loss {nats:.3f} nats/char = {nats / math.log(2):.3f} bits/char "
           f"(best epoch {hist['best_epoch']} of {len(hist['loss'])}, "
           f"{metrics['train_chars_per_second']:,.0f} chars/s)")
    if args.sample:
        metrics["sample"] = sample(model, vocab, args.sample, args.temperature, args.prime,
                                   args.seed)
        report(f"sample (temperature {args.temperature}):")
        print_result(args, metrics["sample"])
    return write_outputs(args, "text", metrics, lambda plt, path: plot(plt, path, metrics),
                         report)


def generate_only(args, report):
    """--load: print --sample characters from the saved model; metrics hold the sample (and
    --out writes them: no training, so no plot)."""
    model, vocab = load_model(args)
    text = sample(model, vocab, args.sample, args.temperature, args.prime, args.seed)
    print_result(args, text)
    metrics = {"command": "text", "model": args.load, "sample": text,
               "temperature": args.temperature}
    return write_outputs(args, "text", metrics, None, report)


def plot(plt, path, m):
    """Training and held-out loss (nats/char) against training minutes."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    h = m["history"]
    ax.plot(h["minutes"], h["loss"], "o-", ms=3, label="training (mean over the epoch)")
    ax.plot(h["minutes"], h["val_loss"], "o-", ms=3, label="held-out last 10%")
    ax.axhline(m["heldout_nats_per_char"], color="k", ls=":", lw=0.8,
               label=f"kept: {m['heldout_nats_per_char']:.3f} nats/char")
    ax.set(title=f"{m['data']}: character model", xlabel="minutes of training",
           ylabel="cross-entropy (nats/char)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
