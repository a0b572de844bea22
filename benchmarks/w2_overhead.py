"""W2, scheduler overhead: many small files, a ``run()`` that returns its input.

Mini-batches of 1 and of 100 files; mini-batches per second and items per second, from
``submit()`` to completion (start-up included) and in steady state (first mini-batch started
in a worker to the last one ended). Every mini-batch is still tracked: its row in the store,
its record in ``logs/mini_batches.jsonl``, its tries; the counts are checked after each run.
Baseline: plain ``joblib.Parallel(batch_size=1)``, one task per file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from common import (
    Target,
    cached,
    echo_files_job,
    fmt,
    small_files,
    submit_and_watch,
    workspace_folder,
)
from joblib_overhead_baseline import run_joblib_overhead

TARGET_MB_PER_S = 10_000


def files_input(count: int) -> Path:
    return cached(f"files-{count}", lambda folder: small_files(folder, count, size=16)) / "files"


def run_ours(files: Path, mini_batch_size: int, processes: int, label: str) -> dict[str, Any]:
    from jupyter_parallelrun import Workspace

    ws = Workspace.create("w2", path=workspace_folder(label))
    job = echo_files_job(ws, files, mini_batch_size, processes, "echo-files")
    watched = submit_and_watch(*job)
    step_run, n_files = watched.step, len(os.listdir(files))
    n_mb = -(-n_files // mini_batch_size)
    rows = (
        ws.store._connect()
        .execute(
            "SELECT COUNT(*), SUM(n_items) FROM mini_batches WHERE run_id=? AND status='done'",
            (step_run["id"],),
        )
        .fetchone()
    )
    log = ws.path / "runs" / step_run["id"] / "logs" / "mini_batches.jsonl"
    with open(log) as records:
        logged = sum(1 for _ in records)
    checks = {
        "status": watched.status,
        "mini-batch rows in the store": rows[0],
        "mini-batch records in the log": logged,
        "mb_done": step_run["mb_done"],
        "items_done": step_run["items_done"],
    }
    if not (
        watched.status == "Completed"
        and rows[0] == logged == step_run["mb_done"] == n_mb
        and rows[1] == step_run["items_done"] == n_files
    ):
        raise RuntimeError(f"W2 run is not complete and tracked: {checks}, expected {n_mb}")
    steady = watched.last_ended - watched.first_started
    return {
        "mini_batch_size": mini_batch_size,
        "mini_batches": n_mb,
        "items": n_files,
        "wall": watched.wall,
        "first_started": watched.first_started,
        "steady_seconds": steady,
        "mb_per_s": n_mb / watched.wall,
        "items_per_s": n_files / watched.wall,
        "steady_mb_per_s": n_mb / steady if steady > 0 else None,
        "workspace": str(ws.path),
        "step_run": step_run["id"],
    }


def run(quick: bool, processes: int = 2) -> dict[str, Any]:
    count = 10_000 if quick else 100_000
    files = files_input(count)
    paths = sorted(str(files / name) for name in os.listdir(files))
    print(f"W2: {count:,} files, {processes} processes", flush=True)
    plain = run_joblib_overhead(paths, processes)
    print(f"  joblib batch_size=1: {plain:.2f} s ({count / plain:,.0f} tasks/s)", flush=True)
    ours = {}
    for size in (1, 100):
        ours[size] = run_ours(files, size, processes, f"w2-{size}")
        print(
            f"  ours, mini_batch_size {size}: {ours[size]['wall']:.2f} s, "
            f"{ours[size]['mb_per_s']:,.0f} mini-batches/s "
            f"({fmt(ours[size]['steady_mb_per_s'], 0)}/s steady), "
            f"{ours[size]['items_per_s']:,.0f} items/s",
            flush=True,
        )
    one = ours[1]
    lines = [
        f"{count:,} files of 16 bytes, `run()` returns its input, {processes} processes, "
        "append_row output. Wall time from `submit()` to completion; steady state from the "
        "first mini-batch started in a worker to the last one ended.",
        "",
        "| | mini-batches | seconds | mini-batches/s | items/s | steady mini-batches/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for size, row in ours.items():
        lines.append(
            f"| jupyter_parallelrun, mini_batch_size {size} | {row['mini_batches']:,} | "
            f"{row['wall']:.2f} | {row['mb_per_s']:,.0f} | {row['items_per_s']:,.0f} | "
            f"{fmt(row['steady_mb_per_s'], 0)} |"
        )
    lines.append(
        f"| plain `joblib.Parallel(batch_size=1)` | {count:,} tasks | {plain:.2f} | "
        f"{count / plain:,.0f} | {count / plain:,.0f} | |"
    )
    lines += [
        "",
        "Every mini-batch was checked after the run: one row in the store's `mini_batches` "
        "table, one record in `logs/mini_batches.jsonl`, and the step's counters, each equal "
        "to the number of mini-batches.",
    ]
    met = one["mb_per_s"] >= TARGET_MB_PER_S
    targets = [
        Target(
            "W2",
            f"≥ {TARGET_MB_PER_S:,} mini-batches/s at mini_batch_size 1, each tracked",
            f"{one['mb_per_s']:,.0f}/s from submit ({fmt(one['steady_mb_per_s'], 0)}/s steady); "
            f"joblib batch_size=1: {count / plain:,.0f}/s",
            met,
            "" if met else f"{TARGET_MB_PER_S / one['mb_per_s']:.2f}× short; see the profile",
        )
    ]
    return {
        "title": "W2 scheduler overhead",
        "lines": lines,
        "targets": [t.as_dict() for t in targets],
        "data": {"ours": {str(k): v for k, v in ours.items()}, "joblib_seconds": plain},
    }


if __name__ == "__main__":
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1, default=str))
