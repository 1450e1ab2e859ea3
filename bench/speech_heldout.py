"""The speech recognizer on speakers it never heard: each FSDD speaker held out in turn.

    python -m bench.speech_heldout [--speakers george,jackson] [--out bench/results]

For each speaker, ``python -m engine speech --heldout-speaker NAME`` with its defaults (the
command's own code, seed 0) trains on the other four and reports greedy and beam digit error
rate and string accuracy on strings of the held-out speaker, isolated-digit accuracy on all
500 of their recordings, and the same on the test recordings of the four it trained on.
Writes ``speech-heldout.{json,md}`` with the mean and the worst speaker.  About 6 minutes per
speaker on a 2-core AMD EPYC Zen 3.
"""
import argparse
import json
import time
from pathlib import Path

SPEAKERS = ("george", "jackson", "nicolas", "theo", "yweweler")


def row(name, r):
    return (f"| {name} | {r['strings']['beam']['label_error_rate']:.2%} | "
            f"{r['strings']['beam']['sequence_accuracy']:.1%} | "
            f"{r['isolated']['greedy']['sequence_accuracy']:.1%} | "
            f"{r['seen strings']['beam']['label_error_rate']:.2%} | "
            f"{r['seen isolated']['greedy']['sequence_accuracy']:.1%} |")


def main(argv=None):
    from bench.report import machine_label
    from engine.apps import speech

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speakers", default=",".join(SPEAKERS))
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args(argv)
    results = {}
    for name in args.speakers.split(","):
        start = time.perf_counter()
        m = speech.run(heldout_speaker=name, quiet=True)
        r = m["results"]
        results[name] = {"strings": r[f"{name} strings"], "isolated": r[f"{name} isolated digits"],
                         "seen strings": r["test strings"],
                         "seen isolated": r["isolated test digits"],
                         "seconds": time.perf_counter() - start}
        print(row(name, results[name]), flush=True)
    ders = {k: v["strings"]["beam"]["label_error_rate"] for k, v in results.items()}
    worst = max(ders, key=ders.get)
    summary = {"mean_beam_der": sum(ders.values()) / len(ders), "worst": worst,
               "worst_beam_der": ders[worst]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speech-heldout.json").write_text(json.dumps(
        {"machine": machine_label(), "results": results, **summary}, indent=2) + "\n")
    lines = ["# The speech recognizer on a speaker held out of training", "",
             f"`python -m bench.speech_heldout` on {machine_label()}: `python -m engine speech "
             "--heldout-speaker NAME`, defaults, seed 0.  Beam width 8.", "",
             "| held out | their strings: digit errors (beam) | exact strings | their isolated "
             "digits (greedy) | seen speakers' test strings: digit errors | seen isolated |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [row(k, v) for k, v in results.items()]
    lines += ["", f"Mean digit error rate on the held-out speaker: {summary['mean_beam_der']:.2%}; "
                  f"worst: {worst}, {summary['worst_beam_der']:.2%}."]
    (out / "speech-heldout.md").write_text("\n".join(lines) + "\n")
    print(lines[-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
