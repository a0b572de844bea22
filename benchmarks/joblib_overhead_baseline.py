"""W2 baseline: plain ``joblib.Parallel`` with ``batch_size=1``, one task per file.

Each task is what W2's entry script does: return its input (a one-path list). No tracking,
no retries, no output file. Run alone: ``python benchmarks/joblib_overhead_baseline.py FOLDER``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from joblib import Parallel, delayed


def _echo(mini_batch: list[str]) -> list[str]:
    return mini_batch


def run_joblib_overhead(paths: list[str], processes: int) -> float:
    """Run one task per path on ``processes`` loky workers; returns the wall time in seconds."""
    started = time.perf_counter()
    results = Parallel(n_jobs=processes, batch_size=1)(delayed(_echo)([p]) for p in paths)
    elapsed = time.perf_counter() - started
    assert sum(len(r) for r in results) == len(paths), len(results)
    return elapsed


if __name__ == "__main__":
    folder = sys.argv[1]
    files = sorted(os.path.join(folder, name) for name in os.listdir(folder))
    seconds = run_joblib_overhead(files, int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    print(json.dumps({"items": len(files), "seconds": seconds}))
