"""DaskCompute: a compute target that is a Dask ``distributed`` cluster.

``DaskCompute.attach(ws, name, address)`` registers a running cluster by its scheduler's
address. ``ComputeTarget.create(ws, name, DaskCompute.provisioning_configuration(n_workers=2))``
starts one on this machine as detached ``dask scheduler`` and ``dask worker`` processes, which
outlive the notebook (as a run's runner does) until ``compute.delete()`` stops them. A step
whose ``compute_target`` is a DaskCompute runs its worker processes on the cluster's Dask
workers, one node per Dask worker: its spec names the backend ``"dask"``, which the runner finds
by that name. What a step needs of the cluster is checked at submit (``dask_checks.py``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .compute import ComputeTarget, check_name
from .dask_checks import check_cluster
from .dask_client import connect
from .dask_processes import stop_processes
from .settings import check_int

if TYPE_CHECKING:
    from .workspace import Workspace

#: Seconds to wait for a cluster started by ComputeTarget.create() to come up.
START_TIMEOUT = 120


def _scheduler_address(address: Any) -> str:
    if not isinstance(address, str):
        raise TypeError(f"address must be a string 'tcp://host:port'; got {address!r}")
    text = address.strip()
    protocol, _, rest = text.rpartition("://") if "://" in text else ("tcp", "", text)
    if protocol != "tcp":
        raise ValueError(
            f"address must be a Dask scheduler's 'tcp://host:port' (or 'host:port'); got "
            f"{address!r}: {protocol}:// is not supported (it needs security settings that a "
            "DaskCompute does not take)"
        )
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(
            f"address must be a Dask scheduler's 'tcp://host:port' (or 'host:port'); "
            f"got {address!r}"
        )
    return f"tcp://{rest}"


class DaskComputeProvisioningConfiguration:
    """A Dask cluster to start on this machine (:meth:`DaskCompute.provisioning_configuration`)."""

    compute_type = "DaskCompute"

    def __init__(
        self, n_workers: int = 2, threads_per_worker: int = 1, host: str = "127.0.0.1"
    ) -> None:
        check_int("n_workers", n_workers, 1)
        check_int("threads_per_worker", threads_per_worker, 1)
        if not isinstance(host, str) or not host:
            raise TypeError(f"host must be an address of this machine, as a string; got {host!r}")
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.host = host

    def to_spec(self) -> dict[str, Any]:
        """The settings as a JSON-able dict."""
        return {
            "provisioning": {
                "n_workers": self.n_workers,
                "threads_per_worker": self.threads_per_worker,
                "host": self.host,
            }
        }


class DaskComputeStatus:
    """The state of a Dask cluster, as ``get_status()`` returns it.

    Attributes
    ----------
    provisioning_state : str
        ``"Succeeded"`` when the scheduler answers, else ``"Failed"`` (``errors`` says why).
    current_node_count : int
        Dask workers in the cluster now.
    workers : dict
        Each Dask worker's address and its host.
    """

    def __init__(self, workers: dict[str, str], error: str | None = None) -> None:
        self.workers = workers
        self.current_node_count = len(workers)
        self.provisioning_state = "Failed" if error else "Succeeded"
        self.errors = [error] if error else None

    def serialize(self) -> dict[str, Any]:
        """The status as a JSON-able dict."""
        return {
            "currentNodeCount": self.current_node_count,
            "provisioningState": self.provisioning_state,
            "workers": dict(self.workers),
            "errors": self.errors,
        }


class DaskCompute(ComputeTarget):
    """A Dask ``distributed`` cluster: a step's nodes are its Dask workers.

    ``node_count`` Dask workers are used (on as many different hosts as the cluster has), each
    running ``process_count_per_node`` worker processes. The cluster's workers must see the
    workspace folder at the same path (a shared filesystem), have this package and the
    environment's pip packages installed, and reach this machine over TCP; ``submit()``
    checks all of it on every Dask worker.

    Examples
    --------
    An existing cluster:

    >>> compute = DaskCompute.attach(ws, "dask-cluster", "tcp://10.0.0.5:8786")  # doctest: +SKIP

    A cluster on this machine, to try it:

    >>> config = DaskCompute.provisioning_configuration(n_workers=2)           # doctest: +SKIP
    >>> compute = ComputeTarget.create(ws, "local-dask", config)                # doctest: +SKIP
    >>> compute.delete()                                                        # doctest: +SKIP
    """

    compute_type = "DaskCompute"
    backend = "dask"

    @staticmethod
    def attach(
        workspace: Workspace,
        name: str,
        address: str,
        *,
        runner_host: str | None = None,
        timeout: float = 10,
    ) -> DaskCompute:
        """Register a running Dask cluster as a compute target (one of that name is replaced).

        Parameters
        ----------
        workspace : Workspace
            The workspace to hold it.
        name : str
            2 to 24 letters, digits and ``-``, starting with a letter.
        address : str
            The scheduler's ``"tcp://host:port"`` (or ``"host:port"``).
        runner_host : str, optional
            The address of this machine that the Dask workers connect back to; by default the
            address of the interface that routes to the scheduler.
        timeout : float
            Seconds to wait for the scheduler to answer when a step starts.
        """
        check_name(name)
        if runner_host is not None and (not isinstance(runner_host, str) or not runner_host):
            raise TypeError(f"runner_host must be a host name or address; got {runner_host!r}")
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds; got {timeout!r}")
        spec = {
            "type": DaskCompute.compute_type,
            "backend": DaskCompute.backend,
            "name": name,
            "address": _scheduler_address(address),
            "runner_host": runner_host,
            "timeout": timeout,
            "created": time.time(),
        }
        if workspace.store.lookup("compute", name) is not None:
            ComputeTarget(workspace, name)._release()
        workspace.store.register("compute", name, spec, new_version=False)
        return ComputeTarget(workspace, name)

    @staticmethod
    def provisioning_configuration(
        n_workers: int = 2, threads_per_worker: int = 1, host: str = "127.0.0.1"
    ) -> DaskComputeProvisioningConfiguration:
        """A Dask cluster for ``ComputeTarget.create`` to start on this machine.

        Parameters
        ----------
        n_workers : int
            Dask workers (a step's nodes) to start.
        threads_per_worker : int
            Threads of each Dask worker (each worker process a step starts has its own).
        host : str
            The address the scheduler and workers listen on.
        """
        return DaskComputeProvisioningConfiguration(n_workers, threads_per_worker, host)

    @classmethod
    def _provision(cls, workspace: Workspace, spec: dict[str, Any]) -> dict[str, Any]:
        settings = spec["provisioning"]
        folder = workspace.path / "compute" / spec["name"]
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        scheduler_file = folder / "scheduler.json"
        started: list[subprocess.Popen] = []
        common = ["--host", settings["host"], "--no-dashboard"]
        try:
            started.append(
                _start(
                    ["distributed.cli.dask_scheduler", "--port", "0", *common],
                    scheduler_file,
                    folder / "scheduler.log",
                )
            )
            address = _wait_for_scheduler(scheduler_file, started[0], folder / "scheduler.log")
            for index in range(settings["n_workers"]):
                worker = [
                    "distributed.cli.dask_worker",
                    "--nthreads",
                    str(settings["threads_per_worker"]),
                    "--name",
                    f"{spec['name']}-{index}",
                    "--local-directory",
                    str(folder / "workers"),
                    *common,
                ]
                started.append(_start(worker, scheduler_file, folder / f"worker-{index}.log"))
            spec = {
                **spec,
                "address": address,
                "runner_host": None,
                "timeout": 10,
                "cluster": {"folder": str(folder), "pids": [p.pid for p in started]},
            }
            _wait_for_workers(spec, settings["n_workers"], folder)
        except BaseException:
            stop_processes([p.pid for p in started])
            raise
        return spec

    def _release(self) -> None:
        cluster = self._spec.get("cluster")
        if cluster:  # started by create(); an attached cluster is not ours to stop
            stop_processes(cluster["pids"])

    @property
    def address(self) -> str:
        """The scheduler's address."""
        return self._spec["address"]

    @property
    def provisioning_state(self) -> str:
        """``"Succeeded"`` when the scheduler answers, else ``"Failed"``."""
        return self.get_status().provisioning_state

    def get_status(self) -> DaskComputeStatus:
        """Ask the scheduler for its workers; an unreachable scheduler gives a Failed status."""
        try:
            client = connect(self._spec)
        except ConnectionError as error:
            return DaskComputeStatus({}, str(error))
        try:
            workers = client.scheduler_info()["workers"]
        finally:
            client.close()
        return DaskComputeStatus({a: w.get("host", "") for a, w in sorted(workers.items())})

    def wait_for_completion(
        self,
        show_output: bool = False,
        min_node_count: int | None = None,
        timeout_in_minutes: int = 20,
    ) -> None:
        """Wait until the cluster has ``min_node_count`` Dask workers (default: 1, or as many
        as ``create`` started); ConnectionError when the scheduler does not answer."""
        wanted = min_node_count or (self._spec.get("provisioning") or {}).get("n_workers", 1)
        client = connect(self._spec)
        try:
            client.wait_for_workers(wanted, timeout=timeout_in_minutes * 60)
            count = len(client.scheduler_info()["workers"])
        finally:
            client.close()
        if show_output:
            print(f"DaskCompute {self.name!r}: {count} Dask worker(s) at {self.address}, Succeeded")

    def check_step(self, node_count: int, environment: dict[str, Any] | None) -> list[str]:
        """Check on every Dask worker what a step needs; returns the environment's warnings.

        Raises ConnectionError (scheduler unreachable, or a worker cannot reach this machine),
        ValueError (``node_count`` above the number of Dask workers), EnvironmentCheckError (a
        package missing on a worker, naming both) or FileNotFoundError (a worker cannot see
        the workspace folder).
        """
        client = connect(self._spec)
        try:
            return check_cluster(
                client,
                self._spec,
                environment,
                node_count=node_count,
                folder=str(self.workspace.path),
                reach_runner=True,
            )
        finally:
            client.close()


def _start(command: list[str], scheduler_file: Path, log: Path) -> subprocess.Popen:
    """Start ``python -m COMMAND`` in a session of its own, so it outlives this process."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *command, "--scheduler-file", str(scheduler_file)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _tail(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return "\n".join(lines[-10:])


def _wait_for_scheduler(scheduler_file: Path, process: subprocess.Popen, log: Path) -> str:
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            return json.loads(scheduler_file.read_text())["address"]
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"the Dask scheduler did not start; the end of {log}:\n{_tail(log)}")


def _wait_for_workers(spec: dict[str, Any], count: int, folder: Path) -> None:
    client = connect(spec)
    try:
        client.wait_for_workers(count, timeout=START_TIMEOUT)
    except TimeoutError:
        logs = "\n".join(f"{p.name}:\n{_tail(p)}" for p in sorted(folder.glob("worker-*.log")))
        raise RuntimeError(
            f"{count} Dask worker(s) did not join the scheduler within {START_TIMEOUT}s:\n{logs}"
        ) from None
    finally:
        client.close()
