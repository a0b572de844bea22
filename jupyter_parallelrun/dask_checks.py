"""What a step needs of a Dask cluster, checked on every Dask worker before the step is
submitted: enough workers, the environment's packages in their Python, the workspace folder
visible, and a connection back to this machine.

The check runs on the workers themselves (``client.run``), so it sees their Python and their
filesystem, not this machine's.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections import defaultdict
from typing import Any

from .dask_client import check_node_count, runner_host
from .environment_check import EnvironmentCheckError, check_environment


def _probe_worker(
    env_spec: dict | None, folder: str | None, runner_address: list | None
) -> dict[str, list[str]]:
    """What this Dask worker lacks to run a step, by kind, and the environment's warnings."""
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
