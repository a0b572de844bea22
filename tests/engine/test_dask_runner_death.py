"""A runner SIGKILLed while ``run()`` holds the GIL on a Dask worker (issue 11 point 12).

The worker processes on Dask workers are not the runner's children (no parent-death signal) and
their heartbeat thread cannot run while ``run()`` holds the GIL: their watchdogs must end them
within seconds, and no watchdog may be left behind, after this or after a normal run. A real
scheduler and two workers on 127.0.0.1, as three hosts.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import assert_guarantee, file_dataset, submit_step
from dask_cluster import Cluster

from jupyter_parallelrun import DaskCompute

pytestmark = pytest.mark.dask

STUCK = """
import os

def init():
    pass

def run(mini_batch):
    for path in mini_batch:
        with open(os.environ["CALLS"], "a") as calls:
            calls.write(f"{os.getpid()} {os.path.basename(path)}\\n")
        if os.path.basename(path) == os.environ.get("FAULT_ITEM"):
            sum(range(10**15))  # one builtin call in C: no other thread of the process runs
    return [f"{os.path.basename(p)}\\t{os.getpid()}" for p in mini_batch]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = Cluster(tmp_path_factory.mktemp("dask"))
    yield started
    started.shut_down()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _watchdogs(workers: set[int]) -> set[int]:
    """The live watchdog processes of these worker pids (its command line ends with the pid)."""
    found = set()
    for entry in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[:-1]
        except OSError:  # not a process, or it ended meanwhile
            continue
        if (
            len(argv) >= 3
            and argv[-3].endswith(b"engine/watchdog.py")
            and int(argv[-1]) in workers
            and _alive(int(entry))
        ):
            found.add(int(entry))
    return found


def _wait(condition, what: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, what
        time.sleep(0.1)


def _submit(ws, write_script, files, cluster, tmp_path, **variables):
    return submit_step(
        ws,
        write_script(STUCK),
        file_dataset(files(8)),
        mini_batch_size=2,
        node_count=2,
        process_count_per_node=1,
        compute_target=DaskCompute.attach(ws, "dask", cluster.address),
        run_invocation_timeout=600,
        environment_variables={"CALLS": str(tmp_path / "calls.txt"), **variables},
    )


def _calls(tmp_path: Path) -> list[tuple[int, str]]:
    path = tmp_path / "calls.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(int(pid), name) for pid, name in (line.split() for line in lines)]


def test_dask_workers_end_with_their_runner_even_while_run_holds_the_gil(
    ws, write_script, files, cluster, tmp_path
):
    run = _submit(ws, write_script, files, cluster, tmp_path, FAULT_ITEM="item_004.txt")
    _wait(
        lambda: any(name == "item_004.txt" for _, name in _calls(tmp_path)),
        "item_004.txt never started",
        120,
    )
    (stuck,) = [pid for pid, name in _calls(tmp_path) if name == "item_004.txt"]
    # The stuck process as the store knows it: the workers table has its pid once committed.
    _wait(
        lambda: stuck in {w["pid"] for w in run.get_details()["workers"]},
        f"pid {stuck} never appeared in the workers table",
        60,
    )
    workers = {w["pid"] for w in run.get_details()["workers"] if w["pid"] and _alive(w["pid"])}
    watchdogs = _watchdogs(workers)
    os.kill(ws.store.get_run(run.id)["runner_pid"], signal.SIGKILL)
    try:
        _wait(
            lambda: not any(_alive(pid) for pid in workers),
            f"worker processes {sorted(p for p in workers if _alive(p))} outlived their runner",
            30,
        )
        _wait(lambda: not _watchdogs(workers), "a watchdog outlived its worker", 10)
    finally:
        for pid in workers | watchdogs:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert stuck in workers and not _alive(stuck)


def test_a_normal_dask_run_leaves_no_watchdog(ws, write_script, files, cluster, tmp_path):
    run = _submit(ws, write_script, files, cluster, tmp_path)
    assert run.wait_for_completion(timeout_seconds=180) == "Completed"
    assert_guarantee(run, [f"item_{i:03d}.txt" for i in range(8)])
    details = run.get_details()["workers"]
    workers = {w["pid"] for w in details if w["pid"]}
    busy = {pid for pid, _ in _calls(tmp_path)}
    assert busy <= workers
    # A process still starting when the work ran out is stopped by the runner (exit -9, as on
    # a loaded machine); every process that ran mini-batches ended by itself, not by its
    # watchdog mistaking the runner's goodbye for its death.
    assert {w["exitCode"] for w in details if w["pid"] in busy} == {0}
    _wait(lambda: not _watchdogs(workers), "a watchdog outlived its worker", 10)
