"""Worker processes on a Dask ``distributed`` cluster: one node per Dask worker.

Each worker process is hosted by a long-running Dask task pinned to its node's Dask worker
(``workers=[address]``, no other worker allowed, no Dask retries: the scheduler, not Dask,
decides what runs again). The task starts ``python -c _CHILD`` as a subprocess, which connects
back to the runner like any other worker, and waits for it. The subprocess dies with the Dask
worker that started it (Linux ``PR_SET_PDEATHSIG``), so a Dask worker that is killed takes its
worker processes along and the runner sees their connections drop; a watchdog kills one whose
runner died (engine/watchdog.py). A node whose Dask worker left moves with its next process.

The cluster must share the workspace folder with this machine (snapshot, models, logs) and
reach the runner over TCP; ``dask_checks.check_cluster`` verifies both, and the environment, on
every Dask worker when the step is submitted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

from ...dask_client import check_node_count, connect, runner_host
from .. import PACKAGE_PARENT
from .base import Backend, WorkerHandle, WorkerSettings, worker_environment

#: Seconds a cached list of the cluster's workers stays good enough for liveness checks.
LIVE_WORKERS_MAX_AGE = 1.0

# The worker process's first lines (run as ``python -c``): die with the Dask worker that started
# it, and quit at once when that worker died before the request took effect. Its arguments,
# the runner's key among them, arrive on stdin (see worker.main): a command line can
# be read by every user of the host in /proc.
_CHILD = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except (AttributeError, OSError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
from jupyter_parallelrun.engine.worker import main
main()
"""

# -- on the Dask workers ----------------------------------------------------------------------

_LOCK = threading.Lock()
_PROCESSES: dict[str, subprocess.Popen] = {}
_KILLED: set[str] = set()


def _host_worker_process(
    token: str,
    arguments: dict,
    interpreter: str | None,
    variables: dict[str, str],
    processes_on_host: int,
) -> int:
    """A Dask task: start one worker process, wait for it, return its exit code."""
    from distributed import secede

    secede()  # it waits for hours: it must not hold one of the Dask worker's threads
    # The Dask worker's own thread settings are not the user's (a nanny pins its task threads
    # to one): the share of this host's cores replaces them.
    env = {
        **os.environ,
        **worker_environment(variables, processes_on_host),
        "PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")])),
    }
    command = [interpreter or sys.executable, "-c", _CHILD, str(os.getpid())]
    log_file = Path(arguments["spec"]["log_file"])
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # The arguments came here inside the task, over Dask's own connection; the process reads
    # them from a file without a name (O_TMPFILE, 0600), so no other user can see the key.
    with open(log_file, "ab") as log, tempfile.TemporaryFile() as stdin:
        stdin.write(json.dumps(arguments).encode())
        stdin.seek(0)
        try:
            process = subprocess.Popen(
                command, env=env, stdin=stdin, stdout=log, stderr=subprocess.STDOUT
            )
        except OSError as error:
            log.write(f"cannot start {command[0]} on this Dask worker: {error}\n".encode())
            return 1
    with _LOCK:
        _PROCESSES[token] = process
        if token in _KILLED:
            process.kill()
    try:
        return process.wait()
    finally:
        with _LOCK:
            _PROCESSES.pop(token, None)
            _KILLED.discard(token)


def _kill_worker_process(token: str) -> None:
    with _LOCK:
        process = _PROCESSES.get(token)
        if process is None:  # not started yet: it is killed as soon as it is
            _KILLED.add(token)
            return
    process.kill()


# -- in the notebook and the runner ------------------------------------------------------------


def spread(workers: dict[str, dict]) -> list[str]:
    """Worker addresses in the order nodes take them: one per host first, then the rest."""
    by_host: dict[str, list[str]] = defaultdict(list)
    for address in sorted(workers):
        by_host[workers[address].get("host", address)].append(address)
    rounds = zip_longest(*(by_host[host] for host in sorted(by_host)))
    return [address for row in rounds for address in row if address is not None]


@dataclass
class _Launch:
    """One worker process as the Dask backend knows it: its task and where it runs."""

    token: str
    worker: str
    future: Any
    exit_code: int | None = None


class DaskBackend(Backend):
    """``node_count`` Dask workers of a cluster, ``process_count_per_node`` processes on each.

    Parameters
    ----------
    compute_spec : dict
        ``DaskCompute.to_spec()``: the scheduler's address and the target's name.
    settings : WorkerSettings
        The step's worker settings. ``interpreter_path`` is the Python that runs the workers
        on every Dask worker host (default: the Dask worker's); each process's thread
        variables are set to its share of its host's cores.
    """

    address_family = "AF_INET"

    def __init__(self, compute_spec: dict[str, Any], settings: WorkerSettings) -> None:
        self.compute_spec = compute_spec
        self.processes_per_node = settings.processes_per_node
        self.interpreter_path = settings.interpreter_path
        self.variables = dict(settings.variables)
        self.client = connect(compute_spec)
        self.listen_address = (runner_host(compute_spec), 0)
        self._workers: dict[str, dict] = {}
        self._workers_at = -LIVE_WORKERS_MAX_AGE
        try:
            live = self._live(max_age=0)
            check_node_count(compute_spec, settings.node_count, live)
        except BaseException:
            self.client.close()
            raise
        self._nodes = dict(enumerate(spread(live)[: settings.node_count]))
        self._launches: list[_Launch] = []

    def _live(self, max_age: float = LIVE_WORKERS_MAX_AGE) -> dict[str, dict]:
        now = time.monotonic()
        if now - self._workers_at > max_age:
            self._workers = self.client.scheduler_info()["workers"]
            self._workers_at = now
        return self._workers

    def _worker_for(self, node_id: int) -> str:
        """The node's Dask worker; a node whose worker left the cluster moves to a live one."""
        live = self._live(max_age=0)
        current = self._nodes[node_id]
        if current in live:
            return current
        if not live:
            raise RuntimeError(
                f"compute target {self.compute_spec['name']!r}: no Dask worker is left in the "
                f"cluster at {self.compute_spec['address']}"
            )
        used = Counter(self._nodes.values())
        self._nodes[node_id] = min(spread(live), key=lambda address: used[address])
        return self._nodes[node_id]

    def start_worker(
        self, name: str, node_id: int, address: Any, authkey: bytes, spec: dict
    ) -> WorkerHandle:
        worker = self._worker_for(node_id)
        live = self._live()
        host = live[worker].get("host")
        on_host = sum(1 for w in self._nodes.values() if live.get(w, {}).get("host") == host)
        token = f"jupyter-parallelrun-{name}-{uuid.uuid4().hex}"
        arguments = {
            "address": list(address),
            "authkey": authkey.hex(),
            "name": name,
            "node_id": node_id,
            "spec": spec,
        }
        future = self.client.submit(
            _host_worker_process,
            token,
            arguments,
            self.interpreter_path,
            self.variables,
            on_host * self.processes_per_node,
            key=token,
            workers=[worker],
            allow_other_workers=False,
            pure=False,
            retries=0,
        )
        launch = _Launch(token=token, worker=worker, future=future)
        self._launches.append(launch)
        return WorkerHandle(name=name, node_id=node_id, native=launch, host=worker)

    def exit_code(self, handle: WorkerHandle) -> int | None:
        return self._exit_code(handle.native, LIVE_WORKERS_MAX_AGE)

    def _exit_code(self, launch: _Launch, max_age: float) -> int | None:
        if launch.exit_code is not None:
            return launch.exit_code
        if launch.future.done():
            finished = launch.future.status == "finished"
            launch.exit_code = launch.future.result() if finished else 1
        elif launch.worker not in self._live(max_age):
            # Its Dask worker left the cluster, and the process died with it (SIGKILL). The
            # task is dropped, so that Dask never starts it again on a worker of that address.
            launch.exit_code = -signal.SIGKILL
            launch.future.cancel()
        return launch.exit_code

    def host_lost(self, handle: WorkerHandle) -> bool:
        return handle.native.worker not in self._live(max_age=0)

    def kill(self, handle: WorkerHandle) -> None:
        launch = handle.native
        if self._exit_code(launch, 0) is None:
            # A Dask worker that has just died cannot be reached: its processes died with it.
            with contextlib.suppress(OSError):
                self.client.run(
                    _kill_worker_process, launch.token, workers=[launch.worker], on_error="ignore"
                )
        self.join(handle, timeout=5)
        if launch.exit_code is None:  # its task never started: make sure it never does
            launch.future.cancel()
            launch.exit_code = -signal.SIGKILL

    def join(self, handle: WorkerHandle, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._exit_code(handle.native, 0.2) is None and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        pending = [launch.future for launch in self._launches if not launch.future.done()]
        with contextlib.suppress(OSError, TimeoutError):  # the scheduler may be gone
            if pending:
                self.client.cancel(pending, force=True)
            self.client.close()
