"""The benchmark harness of jupyter_parallelrun; run it with ``python -m benchmarks``."""
