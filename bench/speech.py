"""Speech training throughput: the engine's recognizer against the same model in PyTorch.

    python -m bench.speech [--rounds 3] [--strings 600] [--hidden 96] [--out bench/results]

Both train the recognizer of ``python -m engine speech`` (frames stacked in pairs, BiLSTM,
pairs stacked, BiLSTM, Linear, CTC; Adam, gradient clipping at 5; float32) on the same
examples in the same batches: connected-digit strings and single recordings of FSDD, in
batches of similar lengths.  PyTorch runs its idiomatic version: ``nn.LSTM`` on
``pack_padded_sequence``, ``nn.CTCLoss`` on ``log_softmax``.  Each round trains one epoch on
each, alternately (the order swapped every round), so that drift hits both; throughput is
audio seconds per wall second, the figure is the median over rounds.  One warm-up epoch each
first (Numba compiles).  Writes ``speech-<machine>.{json,md}`` naming the CPU and its ISA.
"""
import argparse
import json
import os
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

# Issue 23's target: engine / PyTorch training throughput on the same machine, same run.
SPEEDUP_TARGET = 1.3


def examples(n_strings, seed, singles_every=4):
    """Features (N, T, 40) float32, transcripts (N, S) padded, lengths, audio seconds: the
    command's epoch examples from every ``singles_every``-th training recording."""
    from engine.apps import speech
    from engine.apps.speech_data import load_fsdd, split_fsdd

    rng = np.random.default_rng(seed)
    train = split_fsdd(load_fsdd())["train"]
    args = SimpleNamespace(strings=n_strings, singles=None)
    recordings, texts = speech.epoch_examples(train[::singles_every], args, rng)
    features = speech.Features.fit(recordings)
    x, lengths = features.batch(recordings)
    y = speech.encode(texts, speech.DIGITS)
    return x, y, lengths, sum(len(r) for r in recordings) / speech.RATE


def engine_trainer(x, y, lengths, hidden, batch_size):
    from engine.apps import speech

    args = SimpleNamespace(hidden=hidden, backend="cpu", seed=0, lr=3e-3)
    model = speech.build_model(args, len(speech.DIGITS))
    rng = np.random.default_rng(0)

    def epoch():
        order = speech.length_batches(lengths, batch_size, rng)
        model.fit(x[order], y[order], lengths=lengths[order], batch_size=batch_size,
                  shuffle=False, verbose=False)
    return epoch


class TorchRecognizer:
    """The same network in PyTorch."""

    def __init__(self, hidden, classes, stack=2, features=40):
        import torch

        self.stack = stack
        self.lstm1 = torch.nn.LSTM(features * stack, hidden, batch_first=True,
                                   bidirectional=True)
        self.lstm2 = torch.nn.LSTM(2 * hidden * stack, hidden, batch_first=True,
                                   bidirectional=True)
        self.dense = torch.nn.Linear(2 * hidden, classes)
        self.params = [p for m in (self.lstm1, self.lstm2, self.dense) for p in m.parameters()]

    def _stacked(self, x, lengths):
        import torch

        N, T, F = x.shape
        x = torch.cat([x, x.new_zeros(N, -T % self.stack, F)], 1)
        return x.reshape(N, -1, F * self.stack), (lengths + self.stack - 1) // self.stack

    def _lstm(self, lstm, x, lengths):
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(lstm(packed)[0], batch_first=True)[0]

    def __call__(self, x, lengths):
        x, lengths = self._stacked(x, lengths)
        x = self._lstm(self.lstm1, x, lengths)
        x, lengths = self._stacked(x, lengths)
        x = self._lstm(self.lstm2, x, lengths)
        return self.dense(x).log_softmax(2).transpose(0, 1), lengths


def torch_loss(model, ctc, x, y, lengths):
    """The torch model's CTC loss on one batch (host arrays)."""
    import torch

    logp, steps = model(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(lengths))
    return ctc(logp, torch.from_numpy(np.where(y < 0, 1, y)), steps,
               torch.from_numpy((y >= 0).sum(1)))


def torch_trainer(x, y, lengths, hidden, batch_size):
    import torch

    torch.manual_seed(0)
    model = TorchRecognizer(hidden, 11)
    opt = torch.optim.Adam(model.params, lr=3e-3)
    ctc = torch.nn.CTCLoss(blank=0)
    rng = np.random.default_rng(0)
    from engine.apps import speech

    def epoch():
        order = speech.length_batches(lengths, batch_size, rng)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            longest = int(lengths[rows].max())
            loss = torch_loss(model, ctc, x[rows, :longest], y[rows], lengths[rows])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.params, 5.0)
            opt.step()
    return epoch


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    from bench.report import cpu_core, cpu_isa, cpu_model, cpu_slug

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--strings", type=int, default=600)
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--singles-every", type=int, default=4,
                    help="single recordings: every k-th training recording")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args(argv)
    import torch

    threads = os.cpu_count()
    torch.set_num_threads(threads)
    x, y, lengths, audio_s = examples(args.strings, 0, args.singles_every)
    trainers = {name: make(x, y, lengths, args.hidden, args.batch_size)
                for name, make in (("engine", engine_trainer), ("torch", torch_trainer))}
    for fn in trainers.values():  # warm-up: Numba compiles, torch allocates
        fn()
    seconds = {name: [] for name in trainers}
    for r in range(args.rounds):
        for name in (("engine", "torch") if r % 2 == 0 else ("torch", "engine")):
            seconds[name].append(timed(trainers[name]))
            print(f"round {r + 1} {name}: {seconds[name][-1]:.2f} s "
                  f"({audio_s / seconds[name][-1]:.0f} audio s/s)", flush=True)
    speed = {name: audio_s / statistics.median(s) for name, s in seconds.items()}
    ratio = speed["engine"] / speed["torch"]
    machine = f"{cpu_model()}, {cpu_core()}, {cpu_isa()}, {threads} threads"
    result = {"machine": machine, "torch": torch.__version__, "audio_seconds": audio_s,
              "examples": len(x), "hidden": args.hidden, "batch_size": args.batch_size,
              "seconds": seconds, "audio_seconds_per_second": speed, "speedup": ratio,
              "target": SPEEDUP_TARGET, "pass": ratio >= SPEEDUP_TARGET}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"speech-cpu-{cpu_slug()}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(
        f"# Speech training throughput, engine against PyTorch {torch.__version__}\n\n"
        f"Machine: {machine}.  Command: `python -m bench.speech --rounds {args.rounds} "
        f"--strings {args.strings} --hidden {args.hidden}`.\n\n"
        f"{len(x)} examples, {audio_s:.0f} s of audio per epoch; median of {args.rounds} "
        "alternating epochs each.\n\n| | audio s per s |\n| --- | --- |\n"
        f"| engine | {speed['engine']:.0f} |\n| torch | {speed['torch']:.0f} |\n"
        f"| engine / torch | {ratio:.2f} (target >= {SPEEDUP_TARGET}) |\n")
    print(f"engine {speed['engine']:.0f}, torch {speed['torch']:.0f} audio s/s: "
          f"{ratio:.2f}x; wrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
