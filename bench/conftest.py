"""pytest-benchmark settings: the runner's thread pinning, before NumPy or torch load."""
from bench.threads import available_cores, pin_threads

pin_threads(available_cores())
