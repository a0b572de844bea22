"""The backend interface the scheduler talks to, and the environment every backend gives its
worker processes."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Thread-pool sizes of the math libraries a worker may load; each worker gets its share of
#: its host's cores (two single-threaded TensorFlow processes beat one with two threads on 2
#: cores).
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


def worker_environment(
    variables: Mapping[str, str], processes: int, kept: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables one worker process gets on top of those it inherits (joblib's
    ``_prepare_worker_env``).

    Parameters
    ----------
    variables : mapping
        The step's own variables (workspace, run id, the user's environment variables): they
        win over everything.
    processes : int
        Worker processes sharing the host's cores: each thread variable is set to its share.
    kept : mapping, optional
        The environment the user started from: a thread variable set there is kept, not
        replaced by the share.

    Examples
    --------
    >>> env = worker_environment({"GREETING": "hi"}, 4, {"OMP_NUM_THREADS": "3"})
    >>> env["OMP_NUM_THREADS"], env["GREETING"]
    ('3', 'hi')
    """
    share = str(max(1, (os.cpu_count() or 1) // max(1, processes)))
    kept = kept or {}
    return {**{name: kept.get(name, share) for name in THREAD_VARIABLES}, **variables}


@dataclass(frozen=True)
class WorkerSettings:
    """What every backend is told about a step's worker processes.

    Attributes
    ----------
    node_count, processes_per_node : int
        The step's resolved settings.
    interpreter_path : str or None
        The Python that runs the workers (None: this one, or the Dask worker's).
    variables : mapping
        Environment variables every worker process gets; the backend adds the thread limits.
    """

    node_count: int
    processes_per_node: int
    interpreter_path: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass
class WorkerHandle:
    """One started worker process, as a backend knows it."""

    name: str
    node_id: int
    pid: int | None = None
    native: Any = field(default=None, repr=False)
    #: Where it runs when that is not this machine (a Dask worker's address).
    host: str | None = None


class Backend(ABC):
    """Starts, watches and stops worker processes for one step run.

    Every worker runs :func:`jupyter_parallelrun.engine.worker.worker_main` and connects back
    to the runner at ``address`` (a ``multiprocessing.connection`` address); all mini-batch
    traffic goes through that connection, so a backend only manages process lifetimes.
    """

    #: ``multiprocessing.connection`` family the runner listens on for this backend's workers.
    address_family: str = "AF_UNIX"
    #: Where the runner listens (None: any free address of ``address_family``).
    listen_address: Any = None

    @abstractmethod
    def start_worker(
        self, name: str, node_id: int, address: Any, authkey: bytes, spec: dict
    ) -> WorkerHandle:
        """Start one worker process; returns at once."""

    @abstractmethod
    def exit_code(self, handle: WorkerHandle) -> int | None:
        """None while the process lives, else its exit code (negative: killed by that signal)."""

    @abstractmethod
    def kill(self, handle: WorkerHandle) -> None:
        """Stop the process now (it may be stuck in C code or ignoring signals)."""

    def host_lost(self, handle: WorkerHandle) -> bool:
        """Whether the process went down with the machine (or cluster worker) that ran it,
        rather than by a fault of its own: such a process is started again elsewhere even
        when it had not finished ``init()``."""
        return False

    def kill_all(self, handles: list[WorkerHandle]) -> None:
        """Stop these processes now; a backend that can should let them end side by side."""
        for handle in handles:
            self.kill(handle)

    @abstractmethod
    def join(self, handle: WorkerHandle, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the process to end."""

    def close(self) -> None:  # noqa: B027 - a hook: most backends hold nothing
        """Let go of what the backend holds once the step's workers have ended."""
