"""Benchmarks of lstm-engine against ``torch.nn.LSTM``.

- ``bench.cases``: configurations, FLOP counts, the check against PyTorch, interleaved timing.
- ``bench.run``: the runner behind ``make bench`` (table, JSON and PNG under bench/results/).
- ``bench.memory``: peak memory of a training step and time to first result, each measured in
  its own subprocess.
- ``bench.kernels`` (with its sections in ``bench.kernel_cases``): kernel variants side by side,
  each checked against ``kernels/reference.py`` before it is timed.
- ``bench.asm``: the GEMM micro-kernels' inner loops as compiled for the AVX-512 and AVX2
  targets (compiled, not run): their FMAs, loads and register spills on any x86 machine.
- ``bench.test_bench``: the same cases as pytest-benchmark benchmarks.

Nothing here imports NumPy at package import time, so ``bench.threads.pin_threads`` can still
set the thread counts before any BLAS is loaded.
"""
