"""bench.paths_report: the runs of the GPU paths merged into one table."""
import json

from bench import paths_report
from engine.backends import gpu


def _row(path, B, H, mode, engine_ms, torch_ms, status="ok"):
    return dict(config=f"H{H}-B{B}/{path}", mode=mode, B=B, H=H, path=path, status=status,
                engine_ms=engine_ms, torch_ms=torch_ms, speedup=torch_ms / engine_ms)


def test_runs_are_merged_with_the_fastest_path_and_the_rule(tmp_path):
    info = {"gpu": "Test GPU", "cudnn": 1, "date": "today"}
    step = [_row("gemm", 1, 128, "inference", 9.0, 0.5), _row("fused", 1, 128, "inference", 6.0,
                                                              0.4),
            _row("gemm", 256, 512, "inference", 2.0, 1.0),
            _row("fused", 256, 512, "inference", 3.0, 1.0, status="ERROR")]
    persistent = [_row("persistent", 1, 128, "inference", 2.0, 0.5),
                  _row("persistent", 256, 512, "inference", 4.0, 1.0)]
    runs = []
    for i, rows in enumerate((step, persistent)):
        runs.append(tmp_path / f"run{i}.json")
        runs[-1].write_text(json.dumps({"info": info, "rows": rows}))
    out = tmp_path / "merged"
    assert paths_report.main([str(r) for r in runs] + ["--out", str(out), "--note", "N."]) == 0
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert len(merged["rows"]) == 6 and merged["info"] == info
    lines = (tmp_path / "merged.md").read_text().splitlines()
    small = next(line for line in lines if line.startswith("| H128-B1 "))
    big = next(line for line in lines if line.startswith("| H512-B256 "))
    # cuDNN's best time; per path its time and cuDNN's time over it; the fastest; auto's path.
    assert small.split(" | ")[2:] == ["0.400", "2.00 (0.25)", "6.00 (0.07)", "9.00 (0.06)",
                                      "persistent", "persistent |"]
    assert big.split(" | ")[3:] == ["4.00 (0.25)", "ERROR", "2.00 (0.50)", "gemm", "gemm |"]
    assert lines[-1] == "N."


def test_the_rule_in_the_table_is_the_backends():
    cells = gpu.PERSISTENT_MAX_CELLS
    assert paths_report.auto_choice(1, cells) == "persistent"
    assert paths_report.auto_choice(2, cells) == ("fused" if 2 * cells <= gpu.FUSED_MAX_CELLS
                                                  else "gemm")
