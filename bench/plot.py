"""PNG of a benchmark result: speedup (torch time / engine time) per config and mode."""
import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter  # noqa: E402

MODE_COLORS = {"inference": "#4c72b0", "training": "#dd8452"}


def plot_speedups(res, path):
    """Grouped bars per config (one per mode) on a log axis, a line at 1.0; returns path."""
    rows = res["rows"]
    configs = list(dict.fromkeys(r["config"] for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    width = 0.8 / max(len(modes), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(configs) + 2), 4.5))
    for k, mode in enumerate(modes):
        for i, cfg in enumerate(configs):
            r = next((r for r in rows if r["config"] == cfg and r["mode"] == mode), None)
            if r is None:
                continue
            x = i + (k - (len(modes) - 1) / 2) * width
            if r["status"] != "ok":
                ax.text(x, 1.0, r["status"], rotation=90, ha="center", va="bottom",
                        color="red", fontsize=8)
                continue
            ax.bar(x, r["speedup"], width, color=MODE_COLORS.get(mode),
                   label=mode if i == 0 else None)
            ax.text(x, r["speedup"], f"{r['speedup']:.2f}", ha="center", va="bottom",
                    fontsize=8)
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
    ax.set_yscale("log")
    speedups = [r["speedup"] for r in rows if r["status"] == "ok"] or [1.0]
    ax.set_ylim(min(0.5, 0.7 * min(speedups)), max(2.0, 1.4 * max(speedups)))
    ax.yaxis.set_major_locator(FixedLocator(
        [m * 10.0 ** e for e in range(-3, 3) for m in (1, 2, 5)]))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(range(len(configs)), configs)
    ax.set_ylabel("speedup = torch time / engine time")
    info = res["info"]
    ax.set_title(f"lstm-engine vs torch.nn.LSTM ({info['backend']}: "
                 f"{info.get('gpu') or info['cpu_model']} {info.get('cpu_core', '')} "
                 f"{info.get('cpu_isa', '')}, {info['threads']['numba']} threads, "
                 f"{info['date'][:10]})\nSGEMM roofline {res['sgemm_gflops']:.0f} GFLOP/s"
                 + ("" if res.get("reliable", True) else
                    f"; UNRELIABLE: other processes used {res['other_load']:.0%} of the CPUs"),
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
