"""V, the cost of one RunDetails poll on a big run: 10,000 errors and 100,000 mini-batches.

The store of a real workspace is filled with the rows such a run leaves (a step run, its
mini-batch records on 8 worker processes, its errors of 50 kinds with long tracebacks), and the
widget's poll (``widget_state``: the watcher's numbers, the grouped errors, the binned
timeline and throughput, the output preview and the log list) is timed on it, with the size of
the JSON it sends.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from common import Target, workspace_folder

TARGET_BYTES = 200_000
TARGET_SECONDS = 0.1


def synthetic_run(ws: Any, errors: int, mini_batches: int, workers: int = 8) -> str:
    """A Running step run in ``ws``'s store with as many rows as a big run leaves; its
    pipeline run's id. This process holds its lease for an hour, so it reads as alive."""
    import os

    from jupyter_parallelrun.store_lease import claim

    t0 = time.time() - 3600
    run_id, step_id = "big_run", "big_step"
    store = ws.store
    store.create_run(
        id=run_id,
        experiment="big",
        kind="pipeline",
        status="Running",
        started=t0,
        runner_pid=os.getpid(),
    )
    with store.transaction() as db:
        claim(db, run_id, 3600)
    store.create_run(
        id=step_id,
        parent_id=run_id,
        experiment="big",
        name="score",
        kind="step",
        status="Running",
        started=t0,
        mb_total=mini_batches * 2,
        spec={"config": {"entry_script": "score.py"}, "warnings": []},
    )
    mb = [
        {
            "run_id": step_id,
            "mb_id": i,
            "spec": {"kind": "files", "paths": [f"/data/{i}.txt"]},
            "n_items": 10,
            "status": "failed" if i % 10 == 0 else "done",
            "tries": 1,
            "worker": f"process{i % workers:03d}",
            "started": t0 + i * 0.03,
            "ended": t0 + i * 0.03 + 0.02,
            "succeeded": 10,
            "failed": 0,
            "error": None,
            "output_end": i,
        }
        for i in range(mini_batches)
    ]
    failed = [
        {
            "run_id": step_id,
            "mb_id": i * 10,
            "try": 1,
            "item": f"1 file: {i}.txt",
            "worker": "process000",
            "exception": f"ValueError: bad value {i % 50} " + "x" * 200,
            "traceback": "Traceback (most recent call last):\n" + "  frame\n" * 2000,
            "time": t0 + i * 0.3,
            "pid": 1,
            "exit_code": None,
        }
        for i in range(errors)
    ]
    processes = [
        {
            "run_id": step_id,
            "name": f"process{w:03d}",
            "node_id": 0,
            "pid": None,
            "state": "busy",
            "current_mb": None,
            "done": 0,
            "failed": 0,
            "retries": 0,
            "restarts": 0,
            "heartbeat": time.time(),
            "rss": 1 << 28,
            "cpu": 12.5,
            "started": t0,
            "ended": None,
            "exit_code": None,
            "error": None,
            "host": None,
        }
        for w in range(workers)
    ]
    with store.transaction() as db:
        store.upsert_mini_batches(db, mb, [json.dumps(r["spec"]) for r in mb])
        store.add_errors(db, failed)
        store.upsert_workers(db, processes)
    return run_id


def _more(ws: Any, mini_batches: int, first: int, error: bool) -> None:
    """What a live run adds between two polls: ``mini_batches`` records, maybe an error."""
    now = time.time()
    with ws.store.transaction() as db:
        records = [
            {
                "run_id": "big_step",
                "mb_id": first + i,
                "spec": {"kind": "files", "paths": [f"/data/{first + i}.txt"]},
                "n_items": 10,
                "status": "done",
                "tries": 1,
                "worker": f"process{i % 8:03d}",
                "started": now - 0.02,
                "ended": now,
                "succeeded": 10,
                "failed": 0,
                "error": None,
                "output_end": first + i,
            }
            for i in range(mini_batches)
        ]
        ws.store.upsert_mini_batches(db, records, [json.dumps(r["spec"]) for r in records])
        if error:
            ws.store.add_errors(
                db,
                [
                    {
                        "run_id": "big_step",
                        "mb_id": first,
                        "try": 1,
                        "item": "1 file",
                        "worker": "process000",
                        "exception": "ValueError: bad value 7 " + "x" * 200,
                        "traceback": "Traceback (most recent call last):\n" + "  frame\n" * 2000,
                        "time": now,
                        "pid": 1,
                        "exit_code": None,
                    }
                ],
            )


def measure(ws: Any, run_id: str, first_new: int, polls: int) -> dict[str, Any]:
    """Seconds per poll as the widget's thread makes them (the same watcher every time), the
    first one on the whole run, each later one after 100 more mini-batches and one more
    error, and the most bytes of JSON one poll sends."""
    from jupyter_parallelrun import Run
    from jupyter_parallelrun.progress import RunWatcher
    from jupyter_parallelrun.widget import ChangedRows, error_groups, widget_state

    run = Run.get(ws, run_id)
    watcher, errors = RunWatcher(ws.store, run_id), ChangedRows(ws.store, "errors", error_groups)
    seconds, sizes = [], []
    for poll in range(polls):
        if poll:
            _more(ws, 100, first_new + 100 * poll, error=True)
        begun = time.perf_counter()
        state, groups = widget_state(run, "", watcher, errors)
        size = len(json.dumps(state)) + len(json.dumps(groups))
        seconds.append(time.perf_counter() - begun)
        sizes.append(size)
    return {"first": seconds[0], "seconds": seconds[1:], "bytes": max(sizes)}


def run(quick: bool, processes: int = 2) -> dict[str, Any]:
    from jupyter_parallelrun import Workspace

    errors, mini_batches = (1_000, 10_000) if quick else (10_000, 100_000)
    ws = Workspace.create("v", path=workspace_folder("V") / "ws")
    run_id = synthetic_run(ws, errors, mini_batches)
    found = measure(ws, run_id, mini_batches, 21)
    median, worst = statistics.median(found["seconds"]), max(found["seconds"])
    first, size = found["first"], found["bytes"]
    print(
        f"V: first poll {first * 1e3:.0f} ms, then {median * 1e3:.1f} ms a poll "
        f"(worst {worst * 1e3:.1f} ms); at most {size:,} B sent"
    )
    lines = [
        f"A Running step run with {mini_batches:,} mini-batches on 8 processes and {errors:,} "
        "errors of 50 kinds (tracebacks of 16 KB) in a real workspace store, polled as "
        "RunDetails polls it (`widget_state` with the same watcher each time, then the JSON "
        f"it sends). The first poll reads the whole run: {first * 1e3:.0f} ms. Then 20 polls, "
        "each after 100 more mini-batches and one more error (so the error groups are read "
        f"again every time): median {median * 1e3:.1f} ms, worst {worst * 1e3:.1f} ms. At most "
        f"{size:,} bytes of JSON a poll (the latest 20 error kinds with 10 tries each and a "
        "traceback cut to 4,000 characters; the timeline binned to 150 blocks a lane; the "
        "throughput to 60 bins).",
    ]
    targets = [
        Target(
            "V",
            f"the state sent per poll is < {TARGET_BYTES // 1000} KB",
            f"{size / 1000:.0f} KB",
            size < TARGET_BYTES,
        ),
        Target(
            "V",
            f"a poll costs < {TARGET_SECONDS * 1e3:.0f} ms (the widget polls once a second)",
            f"{median * 1e3:.1f} ms",
            median < TARGET_SECONDS,
            "" if median < TARGET_SECONDS else f"{(median - TARGET_SECONDS) * 1e3:.0f} ms over",
        ),
    ]
    return {
        "title": "V RunDetails poll on a big run",
        "lines": lines,
        "targets": [t.as_dict() for t in targets],
        "data": {"first": first, "seconds": found["seconds"], "bytes": size},
    }
