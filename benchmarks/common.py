"""What every workload of the harness shares: cached data, the machine, timing and memory.

- :data:`DATA`: ``benchmarks/data/`` (git-ignored), where generated inputs are cached between
  invocations (each in a folder finished with a ``.complete`` marker);
- :func:`machine` and :func:`versions`: what RESULTS.md says about the machine;
- :class:`TreeMemory`: peak resident memory (the kernel's ``VmHWM``) of a process and of
  everything it starts, sampled from ``/proc`` by a thread of the harness;
- :func:`submit_and_watch`: ``submit()`` a pipeline and time it from the outside (completion,
  first committed output row, first mini-batch started in a worker);
- :class:`Target`: one target of the issue, measured.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
#: Thread pools of the math libraries, pinned to 1 in every hand-tuned baseline process.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


@dataclass
class Target:
    """One target of the issue and what this invocation measured against it."""

    workload: str
    text: str
    measured: str
    met: bool
    gap: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- cached inputs ------------------------------------------------------------------------------


def cached(name: str, make: Callable[[Path], None]) -> Path:
    """``DATA/name``, made by ``make(folder)`` unless an earlier invocation finished it."""
    folder = DATA / name
    marker = folder / ".complete"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    print(f"  generating {folder} (cached for later runs) ...", flush=True)
    make(folder)
    marker.write_text(f"{time.perf_counter() - started:.1f} s to make\n")
    return folder


def small_files(folder: Path, count: int, size: int = 0) -> None:
    """``count`` files named ``item_0000000.txt`` … in ``folder/files``; ``size`` bytes each."""
    folder = folder / "files"
    folder.mkdir()
    body = b"x" * max(0, size - 1) + b"\n" if size else b""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    for index in range(count):
        fd = os.open(folder / f"item_{index:07d}.txt", flags, 0o644)
        if body:
            os.write(fd, body)
        os.close(fd)


def workspace_folder(label: str) -> Path:
    """A fresh folder for this invocation's workspace of one workload (under DATA/work)."""
    folder = DATA / "work" / f"{label}-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def echo_files_job(ws: Any, files: Path, mini_batch_size: int, processes: int, name: str):
    """A step over ``files`` whose ``run()`` returns its input (``scripts/echo_files.py``):
    (experiment, pipeline) in workspace ``ws``; W2, W4 and P measure the engine with it."""
    from jupyter_parallelrun import (
        Dataset,
        Experiment,
        ParallelRunConfig,
        ParallelRunStep,
        Pipeline,
        PipelineData,
    )

    cfg = ParallelRunConfig(
        source_directory=str(HERE / "scripts"),
        entry_script="echo_files.py",
        mini_batch_size=mini_batch_size,
        process_count_per_node=processes,
        error_threshold=0,
        append_row_file_name="rows.txt",
    )
    step = ParallelRunStep(
        name=name,
        parallel_run_config=cfg,
        inputs=[Dataset.File.from_files(path=str(files)).as_named_input("files")],
        output=PipelineData(name="rows", datastore=ws.get_default_datastore()),
        allow_reuse=False,
    )
    # Experiment names take 3 characters at least, as Azure's; the workspaces are "w2", "w4".
    return Experiment(ws, f"bench-{ws.name}"), Pipeline(workspace=ws, steps=[step])


# -- the machine ----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    memory = None
    try:
        with open("/proc/meminfo") as info:
            kib = next(int(line.split()[1]) for line in info if line.startswith("MemTotal"))
        memory = f"{kib / 1024**2:.1f} GiB"
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "system": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Versions of Python and the packages the workloads use (read without importing them)."""
    found = {"python": platform.python_version()}
    for name in (
        "jupyter_parallelrun",
        "tensorflow-cpu",
        "tensorflow",
        "keras",
        "joblib",
        "numpy",
        "pandas",
        "pyarrow",
    ):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    found.update(extra or {})
    return found


# -- memory of a process tree -----------------------------------------------------------------


def _status_kib(pid: int, field_name: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


_TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, float]]:
    """Every process: its parent and the CPU seconds it used so far (user + system)."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            found[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS)
        except (OSError, ValueError, IndexError):
            continue
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class TreeMemory:
    """Peak resident memory and CPU time of a root process and its descendants, sampled every
    ``interval``.

    The kernel keeps each process's own high-water mark (``VmHWM`` in ``/proc/PID/status``), so
    sampling only has to see a process before it ends, not at the moment of its peak. A process
    that lives less than ``interval`` may be missed.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.roots: set[int] = set()
        self.peak_kib: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self.commands: dict[int, str] = {}
        self.parent: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def watch(self, pid: int) -> None:
        self.roots.add(pid)
        self._sample()

    def _sample(self) -> None:
        if not self.roots:
            return
        processes = _processes()
        tree = {pid for pid in self.roots if pid in processes}
        grew = True
        while grew:
            children = {pid for pid, (ppid, _) in processes.items() if ppid in tree} - tree
            tree |= children
            grew = bool(children)
        for pid in tree:
            kib = _status_kib(pid, "VmHWM")
            if kib is None:
                continue
            if pid not in self.commands:
                self.commands[pid] = _cmdline(pid)
                self.parent[pid] = processes[pid][0]
            self.peak_kib[pid] = max(self.peak_kib.get(pid, 0), kib)
            self.cpu[pid] = processes[pid][1]

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def peak_mb(self, pid: int) -> float | None:
        kib = self.peak_kib.get(pid)
        return None if kib is None else kib / 1024


# -- our side: submit and watch ----------------------------------------------------------------


@dataclass
class Watched:
    """What :func:`submit_and_watch` saw of one pipeline run (seconds from ``submit()``)."""

    status: str
    started_wall: float
    wall: float
    first_row: float | None
    first_started: float | None
    last_ended: float | None
    step: dict[str, Any]
    workers: list[dict[str, Any]]
    runner_pid: int | None
    peaks_mb: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    timeline: dict[str, float] = field(default_factory=dict)


def submit_and_watch(
    experiment: Any,
    pipeline: Any,
    *,
    memory: TreeMemory | None = None,
    poll: float = 0.02,
    timeout: float = 1800,
) -> Watched:
    """Submit ``pipeline`` and poll the run store until the run ends.

    Wall time runs from the call of ``submit()`` to the moment the pipeline run's status is
    final in the store. The first output row is the first poll that finds ``output_bytes`` of
    the step run above zero (rows are committed, fsynced, then counted, in one step).
    """
    import sqlite3

    store = experiment.workspace.store
    started_wall, started = time.time(), time.perf_counter()
    run = experiment.submit(pipeline)
    submitted = time.perf_counter() - started
    record = store.get_run(run.id)
    if memory is not None and record["runner_pid"]:
        memory.watch(record["runner_pid"])
    step_id = store.list_runs(parent_id=run.id)[0]["id"]
    # Polling reads two numbers on a connection of its own: as little CPU as possible is
    # taken from the run, which may have every core busy.
    db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, timeout=30)
    query = "SELECT status, output_bytes FROM runs WHERE id=?"
    first_row = None
    last_check = 0.0
    while True:
        now = time.perf_counter()
        if first_row is None and db.execute(query, (step_id,)).fetchone()[1]:
            first_row = now - started
        status = db.execute(query, (run.id,)).fetchone()[0]
        if status in ("Completed", "Failed", "Canceled"):
            break
        if now - last_check > 1.0:  # a dead runner is only noticed by asking the run
            last_check = now
            status = run.get_status()
            if status in ("Completed", "Failed", "Canceled"):
                break
        if now - started > timeout:
            run.cancel()
            raise TimeoutError(f"run {run.id} did not end within {timeout:.0f} s")
        time.sleep(poll)
    db.close()
    wall = time.perf_counter() - started
    step = store.get_run(step_id)
    if first_row is None and step["output_bytes"]:
        first_row = wall
    bounds = (
        store._connect()
        .execute(
            "SELECT MIN(started), MAX(ended) FROM mini_batches WHERE run_id=? AND "
            "started IS NOT NULL",
            (step_id,),
        )
        .fetchone()
    )
    workers = store.workers(step_id)
    watched = Watched(
        status=status,
        started_wall=started_wall,
        wall=wall,
        first_row=first_row,
        first_started=None if bounds[0] is None else bounds[0] - started_wall,
        last_ended=None if bounds[1] is None else bounds[1] - started_wall,
        step=step,
        workers=workers,
        runner_pid=record["runner_pid"],
    )
    watched.timeline = {
        "submit() returned": submitted,
        "runner started the step": (step["started"] or started_wall) - started_wall,
    }
    for worker in workers:
        if worker["started"]:
            watched.timeline[f"{worker['name']} started"] = worker["started"] - started_wall
    if memory is not None:
        memory._sample()
        names = {w["pid"]: w["name"] for w in workers if w["pid"]}
        names[watched.runner_pid] = "runner"
        for pid in memory.peak_kib:
            if pid in names:
                watched.peaks_mb[names[pid]] = memory.peak_mb(pid)
                watched.cpu_seconds[names[pid]] = memory.cpu[pid]
    return watched


def ratio(ours: float, theirs: float | None) -> float | None:
    return None if not theirs else ours / theirs


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


# -- baselines: each a script of its own, run in a fresh interpreter ---------------------------


def run_script(
    script: str, *args: object, python: str | None = None, memory: TreeMemory | None = None
) -> dict[str, Any]:
    """Run ``benchmarks/<script>`` with ``args``; returns the JSON its last line prints.

    A script that reports ``ended_at`` (when its last row was scored) and ``loaded_at`` (when
    its first model was loaded), as ``time.time()``, gets ``seconds`` and ``model_loaded``
    counted from its launch: its clock starts when the user would start it, as ours starts at
    ``submit()``. With ``memory``, the script's process and its children are watched (``pid``
    is added to the result).
    """
    import json
    import subprocess
    import sys

    launched = time.time()
    process = subprocess.Popen(
        [python or sys.executable, str(HERE / script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if memory is not None:
        memory.watch(process.pid)
    out, err = process.communicate()
    lines = out.strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"{script} failed ({process.returncode}):\n{err[-3000:]}")
    result = {**json.loads(lines[-1]), "pid": process.pid}
    if "ended_at" in result:
        result["seconds"] = result["ended_at"] - launched
    if "loaded_at" in result:
        result["model_loaded"] = result["loaded_at"] - launched
    return result


def warm_up_tensorflow() -> None:
    """Import Keras once, untimed, so that no measured process reads TensorFlow from disk."""
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-c", "import keras"],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        check=True,
    )
