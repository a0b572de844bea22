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
from collections.abc import Iterator
from contextlib import contextmanager

FEATURES = [f"f{i}" for i in range(8)]
#: One math thread per process: N processes on N cores, as a hand-tuned job would pin them.
PINNED_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


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
    # What the process ran with, so that the result shows the pin reached it.
    results.put((rows, {name: os.environ.get(name) for name in PINNED_THREADS}))


@contextmanager
def _pinned_threads() -> Iterator[None]:
    """``PINNED_THREADS`` set while the baseline's processes start, then put back as they were.

    A spawned process takes the environment as it is at ``start()``; the harness process that
    calls :func:`run_limit_tabular` runs other workloads after it, which must not inherit the
    pin."""
    before = {name: os.environ.get(name) for name in PINNED_THREADS}
    os.environ.update(PINNED_THREADS)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_limit_tabular(path: str, processes: int, size: int = 1024**2) -> dict:
    """Score every row; returns the wall time (process start included) and the row count."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    started = time.perf_counter()
    ranges = byte_ranges(path, size)
    workers = [
        context.Process(target=_work, args=(path, ranges[i::processes], results))
        for i in range(processes)
    ]
    with _pinned_threads():
        for worker in workers:
            worker.start()
    done = [results.get() for _ in workers]
    elapsed = time.perf_counter() - started  # every row is scored; teardown is not counted
    for worker in workers:
        worker.join()
    threads = [pinned for _, pinned in done]
    return {
        "seconds": elapsed,
        "rows": sum(rows for rows, _ in done),
        "ranges": len(ranges),
        "pinned": all(pinned == PINNED_THREADS for pinned in threads),
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[2:4]]
    print(json.dumps(run_limit_tabular(sys.argv[1], *args)))
