"""A Dask cluster as the API and the engine both see it: a client of its scheduler, the
address its workers reach this machine at, and whether it has the nodes a step asks for.

``DaskCompute`` (at submit) and the Dask backend (in the runner) both connect to the cluster;
``distributed`` is imported only when they do.
"""

from __future__ import annotations

import socket
from typing import Any


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


def check_node_count(compute_spec: dict[str, Any], node_count: int, workers: dict) -> None:
    """Raise when a step asks for more nodes than the cluster has Dask workers."""
    if node_count > len(workers):
        raise ValueError(
            f"node_count={node_count} exceeds the {len(workers)} Dask worker(s) of compute "
            f"target {compute_spec['name']!r} (scheduler {compute_spec['address']}); start "
            "more workers or lower node_count"
        )
