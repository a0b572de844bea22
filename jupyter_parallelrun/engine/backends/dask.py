"""Worker processes on a Dask ``distributed`` cluster: one node per Dask worker.

Each worker process is hosted by a long-running Dask task pinned to its node's Dask worker
(``workers=[address]``, no other worker allowed, no Dask retries: the scheduler, not Dask,
decides what runs again). The task starts ``python -c _CHILD`` as a subprocess, which connects
back to the runner like any other worker, and waits for it. The subprocess dies with the Dask
worker that started it (Linux ``PR_SET_PDEATHSIG``), so a Dask worker that is killed takes its
worker processes along and the runner sees their connections drop; a watchdog kills one whose
runner died (engine/watchdog.py). A node whose Dask worker left moves with its next process.

The cluster must share the workspace folder with this machine (snapshot, models, logs) and
reach the runner over TCP; :func:`check_cluster` verifies both, and the environment, on every
Dask worker before a step starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
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


def _probe_worker(
    env_spec: dict | None, folder: str | None, runner_address: list | None
) -> dict[str, list[str]]:
    """What this Dask worker lacks to run a step, by kind, and the environment's warnings."""
    from ...environment import EnvironmentCheckError, check_environment

    found: dict[str, list[str]] = defaultdict(list)
    try:
        found["warnings"] = check_environment(env_spec)
    except EnvironmentCheckError as error:
        found["environment"].append(str(error))
    if folder and not os.path.isdir(folder):
        found["folder"].append(f"cannot see the workspace folder {folder}")
    if runner_address:
        try:
            socket.create_connection(tuple(runner_address), timeout=5).close()
        except OSError as error:
            host, port = runner_address
            found["network"].append(f"cannot connect to this machine at {host}:{port}: {error}")
    return dict(found)


# -- in the notebook and the runner ------------------------------------------------------------


def connect(compute_spec: dict[str, Any]) -> Any:
    """A ``distributed.Client`` of the target's scheduler (ConnectionError: it does not answer)."""
    try:
        from distributed import Client
    except ImportError as error:
        raise ImportError(
            "a DaskCompute needs the 'distributed' package: pip install 'jupyter_parallelrun[dask]'"
        ) from error

    address, timeout = compute_spec["address"], compute_spec.get("timeout", 10)
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as error:
        hint = (
            "it was started by ComputeTarget.create() and is gone (stopped, or this machine "
            "restarted): create it again"
            if compute_spec.get("cluster")
            else "check that the scheduler runs and that this machine can reach it"
        )
        raise ConnectionError(
            f"compute target {compute_spec['name']!r}: the Dask scheduler at {address!r} does "
            f"not answer within {timeout:g}s ({error}); {hint}"
        ) from None


def runner_host(compute_spec: dict[str, Any]) -> str:
    """The address of this machine that the cluster's workers connect back to."""
    if compute_spec.get("runner_host"):
        return compute_spec["runner_host"]
    from distributed.comm import get_address_host

    host = get_address_host(compute_spec["address"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))  # sends nothing: only picks the interface that routes there
        return probe.getsockname()[0]


def spread(workers: dict[str, dict]) -> list[str]:
    """Worker addresses in the order nodes take them: one per host first, then the rest."""
    by_host: dict[str, list[str]] = defaultdict(list)
    for address in sorted(workers):
        by_host[workers[address].get("host", address)].append(address)
    rounds = zip_longest(*(by_host[host] for host in sorted(by_host)))
    return [address for row in rounds for address in row if address is not None]


def check_node_count(compute_spec: dict[str, Any], node_count: int, workers: dict) -> None:
    """Raise when a step asks for more nodes than the cluster has Dask workers."""
    if node_count > len(workers):
        raise ValueError(
            f"node_count={node_count} exceeds the {len(workers)} Dask worker(s) of compute "
            f"target {compute_spec['name']!r} (scheduler {compute_spec['address']}); start "
            "more workers or lower node_count"
        )


def check_cluster(
    client: Any,
    compute_spec: dict[str, Any],
    env_spec: dict | None,
    *,
    node_count: int | None = None,
    folder: str | None = None,
    reach_runner: bool = False,
) -> list[str]:
    """Check on every Dask worker what a step needs; returns the environment's warnings.

    Raises
    ------
    ValueError
        ``node_count`` exceeds the number of Dask workers.
    EnvironmentCheckError
        A worker's Python lacks a pip package of ``env_spec`` (each worker and package named).
    FileNotFoundError
        A worker cannot see ``folder`` (the workspace): the filesystem is not shared.
    ConnectionError
        A worker cannot open a connection to this machine (with ``reach_runner``).
    """
    from ...environment import EnvironmentCheckError

    workers = client.scheduler_info()["workers"]
    if node_count is not None:
        check_node_count(compute_spec, node_count, workers)
    with contextlib.ExitStack() as stack:
        address = None
        if reach_runner:
            probe = stack.enter_context(socket.create_server((runner_host(compute_spec), 0)))
            address = list(probe.getsockname()[:2])
        results = client.run(_probe_worker, env_spec, folder, address, on_error="return")
    problems: dict[str, list[str]] = defaultdict(list)
    warnings: list[str] = []
    for worker, found in sorted(results.items()):
        if isinstance(found, BaseException):  # e.g. this package cannot be imported there
            cause = f"{type(found).__name__}: {found}"
            found = {"environment": [f"the check failed ({cause}); is jupyter_parallelrun there?"]}
        for kind, messages in found.items():
            if kind == "warnings":
                warnings.extend(m for m in messages if m not in warnings)
            else:
                problems[kind].extend(f"Dask worker {worker}: {m}" for m in messages)
    where = f"compute target {compute_spec['name']!r}"
    if problems["environment"]:
        raise EnvironmentCheckError(f"{where}: " + "; ".join(problems["environment"]))
    if problems["folder"]:
        raise FileNotFoundError(
            f"{where}: " + "; ".join(problems["folder"]) + ". The workers read the entry "
            "script's snapshot and the models and write logs there: the cluster must share "
            "the workspace's filesystem with this machine"
        )
    if problems["network"]:
        raise ConnectionError(
            f"{where}: " + "; ".join(problems["network"]) + ". Worker processes connect "
            "back to the runner on this machine: set runner_host in DaskCompute.attach() to an "
            "address of this machine the workers can reach"
        )
    return warnings


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

    def check_environment(self, env_spec: dict | None) -> list[str]:
        return check_cluster(self.client, self.compute_spec, env_spec)

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
