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
import importlib
import inspect
import os
import pstats
import threading
import time
from pathlib import Path
from typing import Any

from common import DATA, Target, TreeMemory, echo_files_job, submit_and_watch, workspace_folder
from w2_overhead import files_input

TARGET_WORKER_US = 200
PACKAGE = "jupyter_parallelrun"
ENGINE = f"{PACKAGE}.engine"

#: (label, function) of the parts reported for the scheduler's thread. A function is named by
#: where it is defined, ``module:qualified.name``, and found by its code object, so that a move
#: or a rename makes :func:`profiled_functions` fail rather than a row read 0.
RUNNER_PARTS = (
    ("dispatch: next mini-batch from the listing", f"{ENGINE}.step_input:signal_first"),
    ("dispatch: send the round's mini-batches (one write a worker)", f"{ENGINE}.frames:write"),
    (
        "receive: read (all waiting at once) and unpickle the answers",
        f"{ENGINE}.worker_processes:WorkerProcesses.messages",
    ),
    (
        "bookkeeping of the answer (the state's `_received`)",
        f"{ENGINE}.scheduler_state:SchedulerState._received",
    ),
    ("commit: append and fsync the rows", f"{ENGINE}.output:AppendRowWriter.append"),
    ("commit: mini-batch rows into the store", f"{PACKAGE}.store:RunStore.upsert_mini_batches"),
    ("commit: mini-batch records into the log", f"{ENGINE}.logs:StepLogs.mini_batches"),
    ("commit: counters and worker state", f"{ENGINE}.commit:StepCommitter.write_state"),
    ("watching workers (the state's `_tick`)", f"{ENGINE}.scheduler_state:SchedulerState._tick"),
    (
        "waiting for answers (`poll`)",
        f"{ENGINE}.worker_processes:WorkerProcesses.readable",
    ),
)
#: The whole scheduler loop, which the parts above are shares of.
SCHEDULER_LOOP = f"{ENGINE}.scheduler:Scheduler.run"
#: The entry script's ``run()``, loaded from the step's snapshot: (file name, function name).
ENTRY_RUN = ("echo_files.py", "run")
RUN_LABEL = "the entry script's `run()`"
#: (label, function) of the parts reported for each worker (its main thread, and for blob
#: input the inbox's thread, which takes the messages out of the pipe); ENTRY_RUN stands for
#: the entry script.
WORKER_PARTS = (
    ("receive the mini-batch (read, unpickle)", f"{ENGINE}.worker:_Channel.recv"),
    ("load the mini-batch (`load_mini_batch`)", f"{ENGINE}.mini_batch:load_mini_batch"),
    (RUN_LABEL, ENTRY_RUN),
    ("output hand-off: rows formatted (`format_rows`)", f"{ENGINE}.rows:format_rows"),
    ("state report: `done` pickled and sent", f"{ENGINE}.worker:_Channel.send"),
)


def profiled_functions(parts) -> dict[str, tuple[str, int, str]]:
    """Each part's function as cProfile names it, ``(file, first line, name)``, found from
    where it is defined; raises LookupError naming the parts whose function is gone."""
    found, stale = {}, []
    for _, function in parts:
        if isinstance(function, tuple):
            continue
        module_name, _, qualified = function.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for attribute in qualified.split("."):
                target = getattr(target, attribute)
            code = inspect.unwrap(target).__code__
        except (ImportError, AttributeError):
            stale.append(function)
            continue
        found[function] = (code.co_filename, code.co_firstlineno, code.co_name)
    if stale:
        raise LookupError(
            f"benchmark P names functions that no longer exist: {stale}; name where they moved "
            "in benchmarks/profile_overhead.py"
        )
    return found


def _profiled_worker(address, authkey, name, node_id, spec, folder: str) -> None:
    """``worker_main`` under cProfile, and the inbox's thread (if it has one) under a profiler of
    its own; both are written as one profile before the worker's last message (the runner kills a
    worker soon after that message)."""
    from jupyter_parallelrun.engine import fetch, worker
    from jupyter_parallelrun.engine.messages import Bye

    profile = cProfile.Profile(time.thread_time)
    inbox_profile = cProfile.Profile(time.thread_time)
    inbox_started, inbox_done = threading.Event(), threading.Event()
    read, send = fetch.Inbox._read, worker._Channel.send

    def profiled_read(inbox):
        inbox_started.set()
        inbox_profile.enable()
        try:
            read(inbox)
        finally:  # the inbox's thread ends once it has read "stop", before "bye" is sent
            inbox_profile.disable()
            inbox_done.set()

    def send_then_save(channel, message):
        if isinstance(message, Bye):
            profile.disable()
            stats = pstats.Stats(profile)
            # Only a step that downloads has a reader thread (fetch.Inbox's read_ahead).
            if inbox_started.is_set():
                inbox_done.wait(30)
                stats.add(inbox_profile)
            stats.dump_stats(os.path.join(folder, f"{name}.prof"))
        send(channel, message)

    fetch.Inbox._read = profiled_read
    worker._Channel.send = send_then_save
    profile.enable()
    worker.worker_main(address, authkey, name, node_id, spec)


def _profiled_backend(folder: Path):
    from jupyter_parallelrun.engine.backends import WorkerHandle
    from jupyter_parallelrun.engine.backends.local import LocalBackend

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
    from jupyter_parallelrun import Workspace, submission
    from jupyter_parallelrun.engine import backends, runner
    from jupyter_parallelrun.engine.backends.local import LocalBackend

    ws = Workspace.create("profile", path=workspace_folder("profile"))
    experiment, pipeline = _step(ws, files)
    started_runner = submission.start_runner
    tokens: list[str] = []  # the claim submit() makes for the runner, taken below
    submission.start_runner = lambda store, folder, run_id, token: (
        tokens.append(token) or os.getpid()
    )
    backends.register_backend("local", _profiled_backend(folder))
    try:
        run = experiment.submit(pipeline)
        profile = cProfile.Profile(time.thread_time)
        began = time.perf_counter()
        profile.enable()
        lease = runner.RunnerLease(ws.store, run.id, tokens[0])
        lease.take()
        try:
            runner.run_pipeline(runner.RunnerHome(ws.store, ws.path), run.id, lease)
        finally:
            lease.stop()
        profile.disable()
        wall = time.perf_counter() - began
    finally:
        submission.start_runner = started_runner
        backends.register_backend("local", LocalBackend)
    step = ws.store.list_runs(parent_id=run.id)[0]
    if step["status"] != "Completed":
        raise RuntimeError(f"profiled run ended {step['status']}: {step['error']}")
    workers = [pstats.Stats(str(path)) for path in sorted(folder.glob("process*.prof"))]
    return pstats.Stats(profile), workers, {"step": step, "wall": wall}


def _cumulative(stats: pstats.Stats, function: tuple[str, int, str] | tuple[str, str]):
    """Cumulative seconds and calls of ``function``: cProfile's ``(file, first line, name)``,
    or ``(file name, name)`` for the entry script, whose snapshot path varies."""
    if len(function) == 3:
        entry = stats.stats.get(function)
        return (entry[3], entry[1]) if entry else (0.0, 0)
    seconds = calls = 0
    for (path, _, name), (_, ncalls, _, cumtime, _) in stats.stats.items():
        if name == function[1] and os.path.basename(path) == function[0]:
            seconds += cumtime
            calls += ncalls
    return seconds, calls


def _parts(stats: pstats.Stats, parts, where: str) -> dict[str, float]:
    """Each part's cumulative seconds in ``stats`` (labels of "" fold into the part above);
    raises RuntimeError for a part never called, which a moved call would leave at 0."""
    functions = profiled_functions(parts)
    found: dict[str, float] = {}
    label_above = ""
    for label, function in parts:
        seconds, calls = _cumulative(stats, functions.get(function, function))
        if not calls:
            raise RuntimeError(
                f"benchmark P: {function} never ran in the {where}; the code that calls it "
                "moved, so name what is called now in benchmarks/profile_overhead.py"
            )
        label_above = label or label_above
        found[label_above] = found.get(label_above, 0.0) + seconds
    return found


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
    scheduler_total = _parts(runner_stats, [("loop", SCHEDULER_LOOP)], "runner")["loop"]
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
    for label, seconds in _parts(runner_stats, RUNNER_PARTS, "runner").items():
        lines.append(f"| {label} | {per_mb(seconds):.1f} |")
    worker_rows = []
    overheads = []
    for stats in worker_stats:
        parts = _parts(stats, WORKER_PARTS, "worker")
        # run() is called once for every mini-batch the worker ran, whichever way it loaded it.
        calls = _cumulative(stats, ENTRY_RUN)[1]
        worker_rows.append((calls, parts))
        # The overhead: all the worker does for a mini-batch besides run() itself.
        overhead = sum(parts.values()) - parts[RUN_LABEL]
        overheads.append(overhead / calls * 1e6)
    lines += [
        "",
        "Each worker (its main thread, and the inbox's thread that reads the runner's messages; "
        "the heartbeat thread is not profiled):",
        "",
        "| part | " + " | ".join(f"process{i:03d}" for i in range(len(worker_rows))) + " |",
        "|---|" + "---:|" * len(worker_rows),
    ]
    for label, _ in WORKER_PARTS:
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
