"""The GPU paths side by side: one table from ``bench.run --paths`` results.

    python -m bench.paths_report RUN.json [RUN.json ...] --out bench/results/gpu-<device>-paths

``bash bench/device.sh lease`` runs the per-step and graph paths and the persistent kernel in
separate processes; this merges their rows into ``OUT.json`` and writes ``OUT.md``: per config
and mode, cuDNN's time, each path's time and speed relative to cuDNN (higher is better), the
fastest path, and the path ``engine.backends.gpu``'s "auto" rule picks for that shape.
"""
import argparse
import json
import sys
from pathlib import Path


def load_rows(paths):
    """(info of the first run, every row of every run)."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    return runs[0]["info"], [r for run in runs for r in run["rows"]]


def auto_choice(B, H):
    """The path "auto" takes for a single-layer float32 LSTM without a projection on a GPU,
    where the persistent plan fits (as it did for every shape of the grid)."""
    from engine.backends import gpu

    return "persistent" if gpu.auto_wants_persistent(B, H) else gpu.auto_variant(B, H)


def table(info, rows):
    """The Markdown table and its heading lines."""
    paths = sorted({r["path"] for r in rows}, key=("persistent", "graph", "fused", "gemm").index)
    head = ["config", "mode", "cuDNN ms"] + [f"{p} ms (x cuDNN)" for p in paths] + \
        ["fastest", "auto"]
    lines = [f"{info.get('gpu', '?')}, cuDNN {info.get('cudnn', '?')}, CuPy "
             f"{info.get('cupy', '?')}, torch {info.get('torch')}, numba {info.get('numba')}; "
             f"host {info.get('cpu_model')} ({info.get('cpu_core')}), {info.get('date')}.",
             "Median ms per call (T = 100, float32, one layer); x cuDNN = cuDNN's time over the "
             "path's (>1: faster than cuDNN), each timed against cuDNN in the same run.", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    shapes = {}
    for r in rows:
        shapes.setdefault((r["B"], r["H"], r["mode"]), {})[r["path"]] = r
    for (B, H, mode), by_path in sorted(shapes.items(), key=lambda kv: (kv[0][1], kv[0][0],
                                                                       kv[0][2])):
        ok = {p: r for p, r in by_path.items() if r["status"] == "ok"}
        torch_ms = min((r["torch_ms"] for r in ok.values()), default=float("nan"))
        cells = [f"H{H}-B{B}", mode, f"{torch_ms:.3f}"]
        for p in paths:
            r = by_path.get(p)
            cells.append(f"{r['engine_ms']:.2f} ({r['speedup']:.2f})" if r and p in ok else
                         (r["status"] if r else "-"))
        fastest = min(ok, key=lambda p: ok[p]["engine_ms"]) if ok else "-"
        cells += [fastest, auto_choice(B, H)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="JSON files written by bench.run --paths")
    p.add_argument("--out", required=True, help="output stem: writes OUT.json and OUT.md")
    p.add_argument("--note", default="", help="a paragraph written under the table")
    args = p.parse_args(argv)
    info, rows = load_rows(args.runs)
    with open(args.out + ".json", "w") as f:
        json.dump({"info": info, "rows": rows}, f, indent=1)
        f.write("\n")
    text = table(info, rows)
    with open(args.out + ".md", "w") as f:
        f.write("# GPU paths against cuDNN\n\n" + text + (f"\n{args.note}\n" if args.note else ""))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
