"""P, where a mini-batch's time goes: cProfile on a W2-like run (mini_batch_size 1).

The runner runs in this process (the same ``run_pipeline`` the runner process runs, started by
hand instead of by ``submit()``), its main thread profiled; each worker runs under a profiler
of its own (a backend that starts ``worker_main`` inside ``cProfile``, saved before the worker
says goodbye). Both profiles count the CPU time of the profiled thread only
(``time.thread_time``), so time spent waiting for the other side is not counted, and the
counting thread's work is not charged to the scheduler. Figures are per mini-batch, in µs;
cProfile's own cost per call inflates them, so the unprofiled CPU per mini-batch of the same
run without profilers is given too.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import time
from pathlib import Path
from typing import Any

from common import DATA, Target, TreeMemory, echo_files_job, submit_and_watch, workspace_folder
from w2_overhead import files_input

TARGET_WORKER_US = 200

#: (label, file name ending, function name) of the functions reported for the scheduler.
RUNNER_PARTS = (
    ("dispatch: next mini-batch from the listing", "scheduler.py", "_next_mini_batch"),
    ("dispatch: pickle and send the mini-batch", "connection.py", "send_bytes"),
    ("receive: read and unpickle the worker's answer", "connection.py", "recv"),
    ("bookkeeping of the answer (`_handle`)", "scheduler.py", "_handle"),
    ("commit: append and fsync the rows", "output.py", "append"),
    ("commit: mini-batch rows into the store", "store.py", "upsert_mini_batches"),
    ("commit: mini-batch records into the log", "logs.py", "mini_batches"),
    ("commit: counters and worker state", "commit.py", "write_state"),
    ("watching workers (`_watch`, `_check_stop`)", "scheduler.py", "_watch"),
    ("", "scheduler.py", "_check_stop"),
    ("waiting for answers (`connection.wait`)", "connection.py", "wait"),
)
WORKER_PARTS = (
    ("receive the mini-batch (read, unpickle)", "worker.py", "recv"),
    ("load the mini-batch (`load_mini_batch`)", "partition.py", "load_mini_batch"),
    ("the entry script's `run()`", "echo_files.py", "run"),
    ("output hand-off: rows formatted (`format_rows`)", "rows.py", "format_rows"),
    ("state report: `done` pickled and sent", "worker.py", "send"),
)


def _profiled_worker(address, authkey, name, node_id, spec, folder: str) -> None:
    """``worker_main`` under cProfile; the profile is written before the worker's last message
    (the runner kills a worker soon after that message)."""
    from jupyter_parallelrun.engine import worker

    profile = cProfile.Profile(time.thread_time)
    send = worker._Channel.send

    def send_then_save(channel, message):
        if message[0] == "bye":
            profile.disable()
            profile.dump_stats(os.path.join(folder, f"{name}.prof"))
        send(channel, message)

    worker._Channel.send = send_then_save
    profile.enable()
    worker.worker_main(address, authkey, name, node_id, spec)


def _profiled_backend(folder: Path):
    from jupyter_parallelrun.engine.backends import LocalBackend, WorkerHandle

    class ProfiledBackend(LocalBackend):
        def start_worker(self, name, node_id, address, authkey, spec) -> WorkerHandle:
            process = self._context.Process(
                target=_profiled_worker,
                args=(address, authkey, name, node_id, spec, str(folder)),
                name=name,
                daemon=True,
                env=self.env,
            )
            process.start()
            return WorkerHandle(name=name, node_id=node_id, pid=process.pid, native=process)

    return ProfiledBackend


def _step(ws, files: Path):
    return echo_files_job(ws, files, 1, 2, "echo-files")


def _profiled_run(files: Path, folder: Path) -> tuple[pstats.Stats, list[pstats.Stats], dict]:
    from jupyter_parallelrun import Workspace
    from jupyter_parallelrun.engine import backends, runner

    ws = Workspace.create("profile", path=workspace_folder("profile"))
    experiment, pipeline = _step(ws, files)
    started_runner, local = runner.start_runner, backends.BACKENDS["local"]
    tokens: list[str] = []  # the claim submit() makes for the runner, taken below
    runner.start_runner = lambda ws, run_id, token: tokens.append(token) or os.getpid()
    backends.register_backend("local", _profiled_backend(folder))
    try:
        run = experiment.submit(pipeline)
        profile = cProfile.Profile(time.thread_time)
        began = time.perf_counter()
        profile.enable()
        lease = runner.RunnerLease(ws.store, run.id, tokens[0])
        lease.take()
        try:
            runner.run_pipeline(ws, run.id, lease)
        finally:
            lease.stop()
        profile.disable()
        wall = time.perf_counter() - began
    finally:
        runner.start_runner = started_runner
        backends.register_backend("local", local)
    step = ws.store.list_runs(parent_id=run.id)[0]
    if step["status"] != "Completed":
        raise RuntimeError(f"profiled run ended {step['status']}: {step['error']}")
    workers = [pstats.Stats(str(path)) for path in sorted(folder.glob("process*.prof"))]
    return pstats.Stats(profile), workers, {"step": step, "wall": wall}


def _cumulative(stats: pstats.Stats, ending: str, function: str) -> tuple[float, int]:
    """Cumulative seconds and calls of the functions called ``function`` in files ending so
    (recursive entries counted once)."""
    seconds = calls = 0
    for (path, _, name), (_, ncalls, _, cumtime, _) in stats.stats.items():
        if name == function and path.endswith(ending):
            seconds += cumtime
            calls += ncalls
    return seconds, calls


def _total(stats: pstats.Stats, ending: str, function: str) -> float:
    return _cumulative(stats, ending, function)[0]


def _unprofiled(files: Path, count: int) -> dict[str, float]:
    """CPU seconds per mini-batch of the runner and the workers in the same run, unprofiled."""
    from jupyter_parallelrun import Workspace

    ws = Workspace.create("profile", path=workspace_folder("unprofiled"))
    experiment, pipeline = _step(ws, files)
    with TreeMemory(interval=0.02) as memory:
        watched = submit_and_watch(experiment, pipeline, memory=memory)
    if watched.status != "Completed":
        raise RuntimeError(f"unprofiled run ended {watched.status}")
    cpu = watched.cpu_seconds
    workers = [seconds for name, seconds in cpu.items() if name != "runner"]
    return {
        "wall": watched.wall,
        "runner_us": cpu.get("runner", 0) / count * 1e6,
        "workers_us": sum(workers) / count * 1e6,
    }


def run(quick: bool, processes: int = 2) -> dict[str, Any]:
    count = 10_000 if quick else 100_000
    files = files_input(count)
    folder = DATA / "work" / f"profiles-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"P: profiling a run of {count:,} mini-batches of 1 file", flush=True)
    runner_stats, worker_stats, info = _profiled_run(files, folder)
    n = info["step"]["mb_done"]
    per_mb = lambda seconds: seconds / n * 1e6  # noqa: E731
    scheduler_total = _total(runner_stats, "scheduler.py", "run")
    lines = [
        f"cProfile on a W2-like run: {n:,} mini-batches of 1 file, `run()` returns its input, "
        f"{processes} workers, append_row. Each profile counts the CPU time of its own thread "
        "(`time.thread_time`); µs per mini-batch. cProfile adds its own cost to every call, "
        "so these figures are upper bounds: the unprofiled CPU per mini-batch follows.",
        "",
        "Runner (the scheduler's thread):",
        "",
        "| part | µs per mini-batch |",
        "|---|---:|",
        f"| the whole scheduler loop (`Scheduler.run`) | {per_mb(scheduler_total):.1f} |",
    ]
    for label, ending, function in RUNNER_PARTS:
        seconds = _total(runner_stats, ending, function)
        if label:
            lines.append(f"| {label} | {per_mb(seconds):.1f} |")
        else:  # folded into the row above
            previous = lines.pop()
            name, value = previous.rsplit("|", 2)[0], float(previous.rsplit("|", 2)[1])
            lines.append(f"{name}| {value + per_mb(seconds):.1f} |")
    worker_rows = []
    overheads = []
    for stats in worker_stats:
        parts = {label: _total(stats, e, f) for label, e, f in WORKER_PARTS}
        calls = _cumulative(stats, "partition.py", "load_mini_batch")[1] or 1
        worker_rows.append((calls, parts))
        # The overhead: all the worker does for a mini-batch besides run() itself.
        overhead = sum(parts.values()) - parts["the entry script's `run()`"]
        overheads.append(overhead / calls * 1e6)
    lines += [
        "",
        "Each worker (its main thread; the heartbeat thread is not profiled):",
        "",
        "| part | " + " | ".join(f"process{i:03d}" for i in range(len(worker_rows))) + " |",
        "|---|" + "---:|" * len(worker_rows),
    ]
    for label, _, _ in WORKER_PARTS:
        lines.append(
            f"| {label} | "
            + " | ".join(f"{parts[label] / calls * 1e6:.1f}" for calls, parts in worker_rows)
            + " |"
        )
    lines.append(
        "| **overhead: all but `run()`** | "
        + " | ".join(f"**{us:.1f}**" for us in overheads)
        + " |"
    )
    lines.append(
        "| mini-batches run | " + " | ".join(f"{calls:,}" for calls, _ in worker_rows) + " |"
    )
    unprofiled = _unprofiled(files, count)
    worst = max(overheads) if overheads else float("inf")
    lines += [
        "",
        f"Unprofiled, the same run took {unprofiled['wall']:.2f} s from `submit()` and "
        f"{unprofiled['runner_us']:.1f} µs of the runner's CPU and "
        f"{unprofiled['workers_us']:.1f} µs of the workers' CPU (both together, `run()` "
        "and the processes' start-up included) per mini-batch, from /proc: the runner's one "
        f"scheduling thread bounds a run at about {1e6 / max(unprofiled['runner_us'], 1e-9):,.0f} "
        "mini-batches/s, and the workers wait for it.",
    ]
    target = Target(
        "P",
        f"per-mini-batch overhead in the worker < {TARGET_WORKER_US / 1000:g} ms (profiled)",
        f"{worst:.0f} µs (worst worker, cProfile included)",
        worst < TARGET_WORKER_US,
        "" if worst < TARGET_WORKER_US else f"{worst - TARGET_WORKER_US:.0f} µs over",
    )
    return {
        "title": "P profile of the per-mini-batch overhead",
        "lines": lines,
        "targets": [target.as_dict()],
        "data": {
            "worker_overhead_us": overheads,
            "unprofiled": unprofiled,
            "scheduler_us": per_mb(scheduler_total),
        },
    }
