#!/usr/bin/env bash
# What only a lent GPU machine can show, in calls that fit its lease (at most 10 minutes a
# call, and little device time in all: each step below has its own time limit).  From the
# repository root, on the GPU machine:
#
#   bash bench/device.sh tests    # the whole test suite, the GPU tests on the device
#   bash bench/device.sh gpu      # python -m bench.run --backend gpu, both grids, against cuDNN
#   bash bench/device.sh paths    # the GPU grid once per GPU path (persistent, graph, fused,
#                                 # gemm), side by side against cuDNN (issue 24)
#   bash bench/device.sh cpu      # the CPU bench at M and M2 on all of the host's cores
#   bash bench/device.sh kernels  # python -m bench.kernels gpu: the forward variants side by side
#   bash bench/device.sh lease    # one call for a 15-minute lease: the GPU grid per path
#                                 # (per-step and graph, then persistent, each in its own
#                                 # process), then every GPU test on the device (about 4 min)
#
# Make the calls back to back: the machine keeps Numba's cache only while it stays warm.  The
# machine has no network, so this runs the project from the working tree (PYTHONPATH; engine
# then loads engine.kernels from kernels/ itself) on the machine's own python3, which has
# numba-cuda, CuPy, PyTorch and pytest.  Each step has its own time limit; logs and results
# go to $OUT (./out elsewhere) and the last lines printed say how each step ended.  "cpu"
# matters because the row split gives a thread as few as 4 rows (engine/backends/threads.py,
# MIN_ROWS_PER_THREAD), measured on 2 cores only.
set -u
case "${1:-}" in
    tests|gpu|cpu|kernels|paths|lease) ;;
    *) echo "usage: bash bench/device.sh tests|gpu|cpu|kernels|paths|lease" >&2; exit 2 ;;
esac
OUT=${OUT:-out}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset NUMBA_ENABLE_CUDASIM  # on the device, not in the simulator

step() {  # step NAME SECONDS COMMAND...: run it, log to $OUT/NAME.log, note how it ended
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    tail -n 25 "$OUT/$name.log"
    echo "$name: exit $rc after $((SECONDS - start)) s (limit $limit s)" | tee -a "$OUT/summary.txt"
}

machine() {
    { nvidia-smi || echo "no nvidia-smi"; nproc; $PY -c "
import importlib
for name in ('numpy', 'numba', 'numba_cuda', 'cupy', 'torch', 'pytest'):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as e:
        print(name, 'missing:', e)"; } > "$OUT/machine.txt" 2>&1
}

machine
case "${1:-}" in
    tests) step tests 540 $PY -m pytest -q -p no:cacheprovider ;;
    gpu) step bench-gpu-issue 270 $PY -m bench.run --backend gpu --out "$OUT"
         step bench-gpu-grid 270 $PY -m bench.run --backend gpu --grid gpu --out "$OUT" ;;
    # 8 configs x 2 modes x 4 paths = 64 rows: a short budget a row (at least 3 rounds).
    paths) step bench-gpu-paths 540 $PY -m bench.run --backend gpu --grid gpu \
               --paths persistent,graph,fused,gemm --repeats 7 --budget 1 --out "$OUT" \
               --no-plot ;;
    # The persistent kernel in a process of its own: a grid that fails to synchronise would
    # hang, and its time limit must not take the other paths' rows with it.
    # Then, here: python -m bench.paths_report OUT/paths/*.json OUT/persistent/*.json --out
    # bench/results/gpu-<device>-paths.  numba-cuda 0.30.4 fails with NumPy 2.5 (np.row_stack):
    # where the machine has it, carry a NumPy 2.4 wheel (pyproject.toml's gpu extras pin it).
    lease) step paths 210 $PY -m bench.run --backend gpu --grid gpu --paths gemm,fused,graph \
               --repeats 7 --budget 0.5 --out "$OUT/paths" --no-plot
           step persistent 120 $PY -m bench.run --backend gpu --grid gpu --paths persistent \
               --repeats 7 --budget 0.5 --out "$OUT/persistent" --no-plot
           step gpu-tests 180 $PY -m pytest -q -p no:cacheprovider -p no:benchmark -n 14 \
               --timeout 60 -rfE \
               -k "gpu and not without_a_gpu" tests/backends tests/test_ctc.py \
               tests/test_ctc_model.py tests/test_model.py tests/apps ;;
    kernels) step bench-kernels 270 $PY -m bench.kernels gpu ;;
    cpu) step bench-cpu-all-cores 540 $PY -m bench.run --configs M,M2 --threads "$(nproc)" \
             --out "$OUT" --no-plot ;;
esac
