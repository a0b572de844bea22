"""W4, scale of the input: 1,000,000 empty files in one folder against 10,000.

For each: the runner's peak resident memory (the kernel's VmHWM, sampled from ``/proc``), the
time from ``submit()`` until the first mini-batch started in a worker (listing, dispatch,
worker start and ``init()`` included: the store records when), and the whole run.
W2's entry script (``run()`` returns its input), mini_batch_size 100.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common import (
    Target,
    TreeMemory,
    cached,
    echo_files_job,
    fmt,
    small_files,
    submit_and_watch,
    workspace_folder,
)

BATCH = 100
TARGET_RSS_RATIO = 2.5
TARGET_FIRST_DISPATCH = 2.0


def empty_files(count: int) -> Path:
    return cached(f"empty-{count}", lambda folder: small_files(folder, count)) / "files"


def run_ours(files: Path, count: int, processes: int) -> dict[str, Any]:
    from jupyter_parallelrun import Workspace

    ws = Workspace.create("w4", path=workspace_folder(f"w4-{count}"))
    job = echo_files_job(ws, files, BATCH, processes, "list-files")
    with TreeMemory() as memory:
        watched = submit_and_watch(*job, memory=memory, poll=0.05)
    if watched.status != "Completed" or watched.step["items_done"] != count:
        raise RuntimeError(f"W4 run ended {watched.status}: {watched.step['items_done']} items")
    return {
        "files": count,
        "runner_peak_mb": watched.peaks_mb.get("runner"),
        "runner_cpu": watched.cpu_seconds.get("runner"),
        "first_started": watched.first_started,
        "wall": watched.wall,
        "peaks_mb": watched.peaks_mb,
    }


def run(quick: bool, processes: int = 2) -> dict[str, Any]:
    sizes = (10_000, 100_000 if quick else 1_000_000)
    found = {}
    for count in sizes:
        files = empty_files(count)
        print(f"W4: {count:,} empty files in one folder", flush=True)
        found[count] = run_ours(files, count, processes)
        row = found[count]
        print(
            f"  runner peak {fmt(row['runner_peak_mb'], 0)} MB, first mini-batch started "
            f"{fmt(row['first_started'])} s, "
            f"run {row['wall']:.2f} s",
            flush=True,
        )
    small, large = (found[count] for count in sizes)
    lines = [
        f"Empty files in one folder, mini_batch_size {BATCH}, {processes} processes, `run()` "
        "returns its input (append_row). Seconds after `submit()`.",
        "",
        "| files | runner peak RSS | runner CPU s | first mini-batch started in a worker | "
        "run completed |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in (small, large):
        lines.append(
            f"| {row['files']:,} | {fmt(row['runner_peak_mb'], 0)} MB | "
            f"{fmt(row['runner_cpu'], 1)} | {fmt(row['first_started'])} | {row['wall']:.2f} |"
        )
    rss_ratio = (large["runner_peak_mb"] or 0) / (small["runner_peak_mb"] or float("inf"))
    slowest = max((r["first_started"] or float("inf")) for r in (small, large))
    targets = [
        Target(
            "W4",
            f"runner peak RSS with {sizes[1]:,} files < {TARGET_RSS_RATIO} × with {sizes[0]:,}",
            f"{rss_ratio:.2f} × ({fmt(large['runner_peak_mb'], 0)} vs "
            f"{fmt(small['runner_peak_mb'], 0)} MB)",
            rss_ratio < TARGET_RSS_RATIO,
            "" if rss_ratio < TARGET_RSS_RATIO else f"{rss_ratio - TARGET_RSS_RATIO:.2f} × over",
        ),
        Target(
            "W4",
            f"first mini-batch dispatched within {TARGET_FIRST_DISPATCH:g} s of submit, either way",
            f"started in a worker after {small['first_started']:.2f} s and "
            f"{large['first_started']:.2f} s",
            slowest <= TARGET_FIRST_DISPATCH,
            ""
            if slowest <= TARGET_FIRST_DISPATCH
            else f"{slowest - TARGET_FIRST_DISPATCH:.2f} s late",
        ),
    ]
    return {
        "title": "W4 scale of the input",
        "lines": lines,
        "targets": [t.as_dict() for t in targets],
        "data": {str(k): v for k, v in found.items()},
    }
