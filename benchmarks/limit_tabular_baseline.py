"""W3 baseline: the hand-tuned limit for scoring a large CSV file.

N processes started directly, math threads pinned to 1; the file is cut into ranges of about
1 MB that end after a newline (as the scheduler cuts it), process i takes ranges i, i+N, ...;
each range is read with the header line put back in front, parsed by ``pandas.read_csv`` and
scored with the same numpy function as W3's entry script, which returns the same DataFrame of
ids and scores. Nothing is tracked or written.
Run alone: ``python benchmarks/limit_tabular_baseline.py CSV [PROCESSES [BYTES]]``.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import sys
import time

FEATURES = [f"f{i}" for i in range(8)]


def byte_ranges(path: str, size: int) -> list[tuple[int, int]]:
    """Ranges of about ``size`` bytes after the header line, each ending after a newline."""
    ranges = []
    with open(path, "rb") as handle:
        start = len(handle.readline())
        total = handle.seek(0, os.SEEK_END)
        while start < total:
            end = total
            if start + size < total:
                handle.seek(start + size - 1)
                end = start + size - 1 + len(handle.readline())
            ranges.append((start, end))
            start = end
    return ranges


def _work(path: str, ranges: list[tuple[int, int]], results) -> None:
    import numpy as np
    import pandas as pd

    weights = np.linspace(-1.0, 1.0, len(FEATURES))
    rows = 0
    with open(path, "rb") as handle:
        header = handle.readline()
        for start, end in ranges:
            handle.seek(start)
            frame = pd.read_csv(io.BytesIO(header + handle.read(end - start)))
            x = frame[FEATURES].to_numpy(dtype=np.float64)
            scores = 1.0 / (1.0 + np.exp(-(x @ weights)))
            rows += len(pd.DataFrame({"id": frame["id"].to_numpy(), "score": scores}))
    results.put(rows)


def run_limit_tabular(path: str, processes: int, size: int = 1024**2) -> dict:
    """Score every row; returns the wall time (process start included) and the row count."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    started = time.perf_counter()
    ranges = byte_ranges(path, size)
    workers = [
        context.Process(target=_work, args=(path, ranges[i::processes], results))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    rows = sum(results.get() for _ in workers)
    elapsed = time.perf_counter() - started  # every row is scored; teardown is not counted
    for worker in workers:
        worker.join()
    return {"seconds": elapsed, "rows": rows, "ranges": len(ranges)}


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[2:4]]
    print(json.dumps(run_limit_tabular(sys.argv[1], *args)))
