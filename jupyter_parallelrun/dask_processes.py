"""The processes of a Dask cluster that ``DaskCompute`` started on this machine: whether a
recorded pid is still one of them (pids get reused), and ending them."""

from __future__ import annotations

import contextlib
import os
import signal
import time

#: Seconds ``delete()`` lets the cluster's processes end on SIGTERM before killing them.
STOP_TIMEOUT = 10


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still exists on this machine; a zombie does not.

    Only existence is checked: ``/proc/<pid>/cmdline`` reads back empty now and then for a
    live process that is busy forking, so it cannot tell one process from another.
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: ask the kernel whether the pid exists at all
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def is_ours(pid: int) -> bool:
    """Whether ``pid`` is still a Dask process that DaskCompute started (pids get reused)."""
    for _ in range(5):
        if not process_alive(pid):
            return False
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                text = cmdline.read()
        except FileNotFoundError:
            return False
        except OSError:  # no /proc here: the process exists, trust the record
            return True
        if text:
            return b"distributed.cli.dask_" in text
        time.sleep(0.01)  # read back empty while the process forks: ask again
    return True


def stop_processes(pids: list[int]) -> None:
    """End the process groups of a cluster's processes: SIGTERM, then SIGKILL.

    Each was started in a session of its own, so its group also holds what it started (a
    nanny's worker); whatever of a group outlives its leader is killed at the end.
    """
    groups = [pid for pid in pids if is_ours(pid)]
    alive = groups
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
        deadline = time.time() + STOP_TIMEOUT
        while alive and time.time() < deadline:
            time.sleep(0.1)
            alive = [pid for pid in alive if process_alive(pid)]
        if not alive:
            break
    for pid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
