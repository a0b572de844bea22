"""Worker processes on this machine, started through joblib's process launcher (loky).

Each worker is its own loky process rather than a slot of a shared executor: a worker stuck
past ``run_invocation_timeout`` or dying mid-mini-batch is killed and replaced alone, while the
others keep going (a shared pool breaks as a whole when one of its processes dies).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from joblib.externals.loky.backend.context import get_context

from .. import PACKAGE_PARENT, python_path
from ..worker import worker_main
from .base import Backend, WorkerHandle, WorkerSettings, worker_environment


def _own_package(interpreter: str) -> bool:
    """Whether ``interpreter`` is a virtual environment with this package in its own
    site-packages (as ``Environment.build_local`` makes them)."""
    prefix = Path(interpreter).parent.parent
    return (prefix / "pyvenv.cfg").is_file() and any(
        prefix.glob("lib/python*/site-packages/jupyter_parallelrun")
    )


def _exec_interpreter(interpreter: str, arguments: dict) -> None:
    """Replace the freshly started process with another Python running the worker.

    The arguments, the runner's key among them, become its stdin: a file without a name
    (O_TMPFILE, 0600), as a command line can be read by every user in /proc.
    """
    if _own_package(interpreter):
        # Where this package lies may be a site-packages folder: on PYTHONPATH, all of the
        # notebook's packages would shadow the environment's own.
        paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        search = os.pathsep.join(p for p in paths if p and p != PACKAGE_PARENT)
    else:
        search = python_path()
    with tempfile.TemporaryFile() as stdin:
        stdin.write(json.dumps(arguments).encode())
        stdin.flush()
        os.lseek(stdin.fileno(), 0, os.SEEK_SET)
        os.dup2(stdin.fileno(), 0)
    command = [interpreter, "-m", "jupyter_parallelrun.engine.worker"]
    os.execve(interpreter, command, {**os.environ, "PYTHONPATH": search})


class LocalBackend(Backend):
    """``node_count`` groups of ``process_count_per_node`` processes, all on this machine.

    Parameters
    ----------
    compute_spec : dict
        The compute target's stored spec (``{}`` for a step without one); nothing of it is
        needed here.
    settings : WorkerSettings
        The step's worker settings.

    Every process gets :attr:`env` over this process's environment: the step's variables, and
    each thread variable at its share of the cores unless the user set it where they started
    the run (this process inherits their environment).
    """

    address_family = "AF_UNIX"

    def __init__(self, compute_spec: dict[str, Any], settings: WorkerSettings) -> None:
        self.interpreter_path = settings.interpreter_path
        processes = settings.node_count * settings.processes_per_node
        self.env = worker_environment(settings.variables, processes, kept=os.environ)
        self._context = get_context("loky")

    def start_worker(
        self, name: str, node_id: int, address: Any, authkey: bytes, spec: dict
    ) -> WorkerHandle:
        # The workers are this process's children: each has the kernel kill it when the runner
        # dies, however it is stuck (see parent_death.end_with_parent).
        spec = {**spec, "parent_pid": os.getpid()}
        # Not realpath: a virtual environment's python links to its base Python, and is not it.
        if self.interpreter_path and os.path.abspath(self.interpreter_path) != os.path.abspath(
            sys.executable
        ):
            arguments = {
                "address": address,
                "authkey": authkey.hex(),
                "name": name,
                "node_id": node_id,
                "spec": spec,
            }
            target, args = _exec_interpreter, (self.interpreter_path, arguments)
        else:
            target, args = worker_main, (address, authkey, name, node_id, spec)
        process = self._context.Process(
            target=target, args=args, name=name, daemon=True, env=self.env
        )
        process.start()
        return WorkerHandle(name=name, node_id=node_id, pid=process.pid, native=process)

    def exit_code(self, handle: WorkerHandle) -> int | None:
        return handle.native.exitcode

    def kill(self, handle: WorkerHandle) -> None:
        self.kill_all([handle])

    def kill_all(self, handles: list[WorkerHandle]) -> None:
        # The kernel takes tens of milliseconds to tear down a process with TensorFlow loaded:
        # signal every one first, then wait for them together.
        for handle in handles:
            if handle.native.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(handle.native.pid, signal.SIGKILL)
        for handle in handles:
            handle.native.join(timeout=5)

    def join(self, handle: WorkerHandle, timeout: float) -> None:
        handle.native.join(timeout=timeout)
