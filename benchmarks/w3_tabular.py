"""W3, tabular: a generated CSV file scored with numpy, mini_batch_size "1MB".

MB/s from ``submit()`` to completion, against the hand-tuned limit script (N processes reading
1 MB ranges directly); the peak resident memory of the runner and of every worker, sampled
from ``/proc`` while the run goes (and of the limit script's processes, for comparison).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common import Target, TreeMemory, cached, run_script, submit_and_watch, workspace_folder

SCRIPTS = Path(__file__).resolve().parent / "scripts"
TARGET_RATIO = 0.85
TARGET_RSS_MB = 300


def make_table(folder: Path, megabytes: int) -> None:
    """``table.csv``: an ``id`` and 8 float features, about ``megabytes`` MB in all."""
    import numpy as np
    import pandas as pd

    block_rows = 1 << 18
    rng = np.random.default_rng(0)
    features = pd.DataFrame(rng.normal(size=(block_rows, 8)).round(6))
    body = features.to_csv(header=False, index=False).splitlines()
    target = megabytes * 1024**2
    with open(folder / "table.csv", "w") as out:
        out.write("id," + ",".join(f"f{i}" for i in range(8)) + "\n")
        first = 0
        while out.tell() < target:
            out.write("\n".join(f"{first + i},{line}" for i, line in enumerate(body)) + "\n")
            first += block_rows


def table_input(megabytes: int) -> Path:
    return cached(f"table-{megabytes}MB", lambda f: make_table(f, megabytes)) / "table.csv"


def run_ours(table: Path, processes: int, memory: TreeMemory):
    from jupyter_parallelrun import (
        Dataset,
        Experiment,
        ParallelRunConfig,
        ParallelRunStep,
        Pipeline,
        PipelineData,
        Workspace,
    )

    ws = Workspace.create("w3", path=workspace_folder("w3"))
    cfg = ParallelRunConfig(
        source_directory=str(SCRIPTS),
        entry_script="score_table.py",
        mini_batch_size="1MB",
        process_count_per_node=processes,
        error_threshold=0,
        output_action="summary_only",
        resource_monitor_interval=1,
    )
    step = ParallelRunStep(
        name="score-table",
        parallel_run_config=cfg,
        inputs=[Dataset.Tabular.from_delimited_files(path=str(table)).as_named_input("table")],
        output=PipelineData(name="scores", datastore=ws.get_default_datastore()),
        allow_reuse=False,
    )
    return submit_and_watch(
        Experiment(ws, "w3-tabular"), Pipeline(workspace=ws, steps=[step]), memory=memory
    )


def run(quick: bool, processes: int = 2) -> dict[str, Any]:
    megabytes = 256 if quick else 2048
    table = table_input(megabytes)
    size_mb = table.stat().st_size / 1024**2
    print(f"W3: {size_mb:,.0f} MB CSV, mini_batch_size 1MB, {processes} processes", flush=True)
    with TreeMemory() as memory:
        limit = run_script("limit_tabular_baseline.py", table, processes, memory=memory)
    limit_cpu = sum(memory.cpu.values())
    limit_peaks = sorted(
        (
            memory.peak_mb(pid)
            for pid in memory.peak_kib
            if "resource_tracker" not in memory.commands[pid]
        ),
        reverse=True,
    )
    limit_rate = size_mb / limit["seconds"]
    print(f"  limit: {limit['seconds']:.2f} s, {limit_rate:,.0f} MB/s", flush=True)
    with TreeMemory() as memory:
        watched = run_ours(table, processes, memory)
    step = watched.step
    if watched.status != "Completed" or step["items_done"] != limit["rows"]:
        raise RuntimeError(
            f"W3 run ended {watched.status} with {step['items_done']} of {limit['rows']} rows"
        )
    ours_rate = size_mb / watched.wall
    peaks = watched.peaks_mb
    print(
        f"  ours: {watched.wall:.2f} s, {ours_rate:,.0f} MB/s; peak RSS "
        + ", ".join(f"{k} {v:.0f} MB" for k, v in peaks.items()),
        flush=True,
    )
    lines = [
        f"A {size_mb:,.0f} MB CSV file ({limit['rows']:,} rows: an id and 8 float features), "
        f'mini_batch_size "1MB" ({step["mb_done"]:,} mini-batches), {processes} processes, '
        "`run()` scores each row with numpy and returns the scores (`summary_only`). Wall time "
        "from `submit()` (for the limit script: from its start) to the last row.",
        "",
        "| | seconds | MB/s | ratio to the limit's MB/s |",
        "|---|---:|---:|---:|",
        f"| jupyter_parallelrun | {watched.wall:.2f} | {ours_rate:,.0f} | "
        f"{ours_rate / limit_rate:.2f} |",
        f"| hand-tuned limit: {processes} processes reading 1 MB ranges | {limit['seconds']:.2f} "
        f"| {limit_rate:,.0f} | 1.00 |",
        "",
        "Peak resident memory (the kernel's VmHWM, sampled every 50 ms): "
        + ", ".join(f"{name} {mb:.0f} MB" for name, mb in peaks.items())
        + "; the limit script's processes: "
        + ", ".join(f"{mb:.0f} MB" for mb in limit_peaks)
        + ". CPU seconds used: "
        + ", ".join(f"{name} {s:.1f}" for name, s in watched.cpu_seconds.items())
        + f" ({sum(watched.cpu_seconds.values()):.1f} in all; the limit script's processes "
        f"{limit_cpu:.1f} in all).",
    ]
    ratio = ours_rate / limit_rate
    worst = max(peaks.values()) if peaks else float("inf")
    workers_seen = sum(1 for name in peaks if name != "runner")
    targets = [
        Target(
            "W3",
            f"≥ {TARGET_RATIO} × the limit script's MB/s",
            f"{ratio:.2f} × ({ours_rate:,.0f} vs {limit_rate:,.0f} MB/s)",
            ratio >= TARGET_RATIO,
            "" if ratio >= TARGET_RATIO else f"{TARGET_RATIO - ratio:.2f} short",
        ),
        Target(
            "W3",
            f"every process's peak RSS < {TARGET_RSS_MB} MB",
            f"largest {worst:.0f} MB (runner and {workers_seen} workers)",
            worst < TARGET_RSS_MB and "runner" in peaks and workers_seen >= processes,
            "" if worst < TARGET_RSS_MB else f"{worst - TARGET_RSS_MB:.0f} MB over",
        ),
    ]
    return {
        "title": "W3 tabular",
        "lines": lines,
        "targets": [t.as_dict() for t in targets],
        "data": {
            "size_mb": size_mb,
            "ours_seconds": watched.wall,
            "limit": limit,
            "peaks_mb": peaks,
            "limit_peaks_mb": limit_peaks,
        },
    }
