"""The worker processes of one step run, as the scheduler keeps them.

The scheduler keeps a :class:`Worker` record of each process (its connection, its state, the
mini-batches sent to it as :class:`InFlight` tries, the one running first, and its counters);
the records make the step run's rows of the run store: ``workers``, ``errors`` and the
``mini_batches`` of finished tries. :class:`WorkerProcesses` starts the processes through the
backend, takes each one's connection as it calls back, watches them (a ``run()`` call over its
limit, a process that ended, one gone silent), says how a lost one ended, and ends them all when
the step is done. What becomes of a lost worker's mini-batches is the scheduler's part.
"""

from __future__ import annotations

import contextlib
import pickle
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from .backends.base import Backend, WorkerHandle
from .error_text import MAX_MESSAGE_CHARS, MAX_TRACEBACK_CHARS, printable, shorten
from .listener import WorkerListener
from .logs import StepLogs
from .mini_batch import MiniBatch

#: Seconds between noticing that a worker process ended and declaring it lost (see find_lost).
EXIT_GRACE = 0.3
#: Seconds a new worker process may take to connect, when heartbeat_timeout is shorter.
CONNECT_GRACE = 30.0


#: The length of each message a worker sends (see ``worker``'s module docstring).
MESSAGE_LENGTHS = {"ready": 2, "init_failed": 3, "done": 8, "error": 7, "beat": 3, "bye": 1}


class GarbledMessage(Exception):
    """A worker sent bytes that are not one of its messages (user code wrote on the pipe)."""


def receive(conn: Connection) -> tuple:
    """The next message on a worker's connection.

    Raises
    ------
    EOFError, OSError
        The connection is closed: the process ended.
    GarbledMessage
        What came cannot be unpickled, or is not a message a worker sends.
    """
    data = conn.recv_bytes()
    try:
        message = pickle.loads(data)
    except Exception as error:  # noqa: BLE001 - any junk: UnpicklingError, EOFError, ...
        raise GarbledMessage(
            f"the worker process sent {len(data)} bytes that are not a message "
            f"({type(error).__name__}: {str(error)[:200]}); something in it wrote on the "
            "runner's connection"
        ) from None
    if not (
        isinstance(message, tuple)
        and message
        and isinstance(message[0], str)
        and MESSAGE_LENGTHS.get(message[0]) == len(message)
    ):
        raise GarbledMessage(
            f"the worker process sent {printable(repr(message))[:200]}, which is not a "
            "message; something in it wrote on the runner's connection"
        )
    return message


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


@dataclass
class InFlight:
    """One try of a mini-batch: sent to a worker, or waiting to be sent again."""

    mini_batch: MiniBatch
    tries: int
    size: int = 0

    def record(
        self,
        run_id: str,
        worker: Worker,
        status: str,
        began: float,
        ended: float,
        *,
        succeeded: int,
        failed: int,
        error: str | None = None,
    ) -> dict[str, Any]:
        """This try's row of the ``mini_batches`` table, once it is done or failed for good."""
        mb = self.mini_batch
        return {
            "run_id": run_id,
            "mb_id": mb.id,
            "spec": mb.spec,
            "n_items": succeeded + failed,
            "status": status,
            "tries": self.tries,
            "worker": worker.name,
            "started": began,
            "ended": ended,
            "succeeded": succeeded,
            "failed": failed,
            "error": error,
            "output_end": None,
        }


@dataclass
class Worker:
    """The scheduler's record of one worker process."""

    name: str
    node_id: int
    handle: WorkerHandle | None = None
    conn: Connection | None = None
    state: str = "starting"
    queue: deque[InFlight] = field(default_factory=deque)
    head_started: float = 0.0
    done: int = 0
    failed: int = 0
    retries: int = 0
    restarts: int = 0
    heartbeat: float | None = None
    mb_seconds: float | None = None
    queued_bytes: int = 0
    rss: int | None = None
    cpu: float | None = None
    started: float = 0.0
    ended: float | None = None
    exit_code: int | None = None
    exit_seen: float | None = None
    error: str | None = None

    def row(self, run_id: str) -> dict[str, Any]:
        """This worker's row of the ``workers`` table."""
        return {
            "run_id": run_id,
            "name": self.name,
            "node_id": self.node_id,
            "pid": self.handle.pid if self.handle else None,
            "host": self.handle.host if self.handle else None,
            "state": self.state,
            "current_mb": self.queue[0].mini_batch.id if self.queue else None,
            "done": self.done,
            "failed": self.failed,
            "retries": self.retries,
            "restarts": self.restarts,
            "heartbeat": self.heartbeat,
            "rss": self.rss,
            "cpu": self.cpu,
            "started": self.started,
            "ended": self.ended,
            "exit_code": self.exit_code,
            "error": self.error,
        }

    def error_row(
        self,
        run_id: str,
        mb_id: int | None,
        try_: int,
        item: str,
        exception: str,
        trace: str | None,
        exit_code: int | None = None,
    ) -> dict[str, Any]:
        """A row of the ``errors`` table: a failed try, a failed ``init()`` or a lost process.

        The texts are escaped and bounded here too (workers send them so already), whatever
        sent them: the store, the widget and job_error.txt all read this row."""
        where = f"the worker's log logs/workers/{self.name}.txt"
        return {
            "run_id": run_id,
            "mb_id": mb_id,
            "try": try_,
            "item": shorten(item, MAX_MESSAGE_CHARS, "logs/mini_batches.jsonl"),
            "worker": self.name,
            "exception": shorten(exception, MAX_MESSAGE_CHARS, where),
            "traceback": None if trace is None else shorten(trace, MAX_TRACEBACK_CHARS, where),
            "time": time.time(),
            "pid": self.handle.pid if self.handle else None,
            "exit_code": exit_code,
        }


class WorkerProcesses:
    """Starts, connects, watches and ends the worker processes of one step run.

    Parameters
    ----------
    backend
        Starts and stops the worker processes.
    worker_spec
        What every worker needs to host the entry script (see ``worker.worker_main``).
    logs
        The step's logs; each worker writes a log file of its own there.
    nodes, processes_per_node
        How many workers to start, and how they are grouped into nodes.
    run_invocation_timeout, task_overhead_timeout
        Seconds one ``run()`` call may take, and the allowance added for loading its input.
    heartbeat_timeout
        Seconds a worker may be silent outside ``run()``.
    """

    def __init__(
        self,
        backend: Backend,
        worker_spec: dict[str, Any],
        logs: StepLogs,
        nodes: int,
        processes_per_node: int,
        *,
        run_invocation_timeout: float,
        task_overhead_timeout: float | None,
        heartbeat_timeout: float,
    ) -> None:
        self.backend, self.worker_spec, self.logs = backend, worker_spec, logs
        self.timeout = float(run_invocation_timeout)
        self.heartbeat_timeout = float(heartbeat_timeout)
        # Until a new process says hello (an interpreter starting, importing the package) it
        # cannot beat; on a loaded machine that takes seconds, more than a short timeout.
        self._connect_limit = max(self.heartbeat_timeout, CONNECT_GRACE)
        # Loading a mini-batch's input happens inside the worker's call, so the allowance for
        # that (task_overhead_timeout) is added to the call's own limit.
        self.timeout_text = f"run_invocation_timeout={self.timeout:g}s"
        if task_overhead_timeout:
            self.timeout += float(task_overhead_timeout)
            self.timeout_text += f" + task_overhead_timeout={task_overhead_timeout:g}s"
        self.workers = [
            Worker(name=f"process{node * processes_per_node + index:03d}", node_id=node)
            for node in range(nodes)
            for index in range(processes_per_node)
        ]
        # A connected worker silent for heartbeat_timeout is declared lost, starting or not: a
        # connection that has not authenticated by then is no worker worth waiting for.
        self._listener = WorkerListener(
            backend.address_family,
            backend.listen_address,
            [worker.name for worker in self.workers],
            handshake_timeout=self.heartbeat_timeout,
        )

    def take_arrivals(self) -> None:
        """Give the workers that connected since the last call their connections, and log the
        connections refused."""
        for event in self._listener.events():
            if isinstance(event, str):
                self.logs.runner(event)
                continue
            name, pid, incarnation, conn = event
            worker = next(w for w in self.workers if w.name == name)
            if incarnation != worker.restarts:
                # A process already declared lost (silent while starting) whose hello was on
                # its way: its replacement is the one to wait for.
                self.logs.runner(f"{name}: dropped the late connection of lost pid {pid}")
                conn.close()
                continue
            # Its hello is its first sign of life: silence is timed from here on.
            worker.conn, worker.handle.pid, worker.heartbeat = conn, pid, time.time()

    def start(self, worker: Worker) -> None:
        """Start the worker's process (again, after a loss)."""
        spec = {
            **self.worker_spec,
            "log_file": str(self.logs.worker_log(worker.name)),
            "incarnation": worker.restarts,
        }
        # Everything timed per process starts again with the new one: a replacement must not
        # inherit the heartbeat of a predecessor that went silent inside run(), nor its speed.
        worker.state, worker.conn, worker.started = "starting", None, time.time()
        worker.exit_code = worker.error = worker.exit_seen = None
        worker.heartbeat = worker.mb_seconds = worker.rss = worker.cpu = None
        worker.handle = self.backend.start_worker(
            worker.name, worker.node_id, self._listener.address, self._listener.authkey, spec
        )

    def by_conn(self, conn: Connection) -> Worker:
        """The worker on the other end of ``conn``."""
        return next(w for w in self.workers if w.conn is conn)

    def close(self, worker: Worker) -> None:
        """Close the worker's connection and note when it ended."""
        if worker.conn is not None:
            worker.conn.close()
            worker.conn = None
        worker.ended = time.time()

    def find_lost(self, now: float) -> Iterator[tuple[Worker, str, bool]]:
        """The workers to declare lost at ``now``: each with the reason, and whether it must be
        killed. Declare each one lost before taking the next."""
        for worker in self.workers:
            if worker.state in ("failed", "stopped"):
                continue
            if worker.queue and now - worker.head_started > self.timeout:
                mb = worker.queue[0].mini_batch
                yield (
                    worker,
                    f"TimeoutError: run() of mini-batch {mb.id} exceeded {self.timeout_text}",
                    True,
                )
            elif self.backend.exit_code(worker.handle) is not None:
                # What a process said before it ended (its hello, init() failing) may still be
                # on its way through the accept thread: give it EXIT_GRACE to arrive and be
                # read, so that the cause the process reported is what the run records.
                worker.exit_seen = worker.exit_seen or now
                if now - worker.exit_seen > EXIT_GRACE and not (
                    worker.conn is not None and worker.conn.poll()
                ):
                    yield worker, "the worker process ended unexpectedly", False
            elif not worker.queue and now - (worker.heartbeat or worker.started) > (
                self.heartbeat_timeout if worker.heartbeat else self._connect_limit
            ):
                # Outside run() the worker's heartbeat thread beats every few seconds; silence
                # means a frozen process (stopped, deadlocked, swapped out, cut off).
                yield (
                    worker,
                    f"no heartbeat for {now - (worker.heartbeat or worker.started):.0f}s while "
                    f"{'starting' if worker.state == 'starting' else 'idle'} "
                    f"(heartbeat_timeout={self.heartbeat_timeout:g}s)",
                    True,
                )

    def ended(self, worker: Worker, reason: str, *, killed: bool) -> tuple[str, int | None]:
        """Close a lost worker, whose process has ended (``killed``: by the runner), and log
        why it was lost.

        Returns the reason with how the process ended added (its exit code, or the signal that
        killed it), and the exit code.
        """
        code = self.backend.exit_code(worker.handle)
        if code is not None and code < 0:
            reason += f" (killed by signal {-code}, {_signal_name(-code)}"
            if -code == signal.SIGKILL and not killed:
                reason += "; the kernel kills processes out of memory this way"
            reason += ")"
        elif code is not None:
            reason += f" (exit code {code})"
        where = f" on {worker.handle.host}" if worker.handle.host else ""
        self.logs.runner(f"{worker.name} (pid {worker.handle.pid}{where}) lost: {reason}")
        self.close(worker)
        worker.exit_code = code
        return reason, code

    def stop_all(self, graceful: bool, handle: Callable[[Worker, tuple], None]) -> None:
        """End every worker: those that initialised get ``stop`` (and run ``shutdown()``) when
        the work is done; the rest, and all of them when the run failed or was canceled, are
        killed at once. ``handle`` takes the messages that arrive meanwhile."""
        self.take_arrivals()
        polite = [w for w in self.workers if graceful and w.conn and w.state in ("idle", "busy")]
        for worker in polite:
            with contextlib.suppress(OSError):
                worker.conn.send(("stop",))
        deadline = time.time() + 10
        for worker in polite:
            self._wait_bye(worker, deadline, handle)
        started = [w for w in self.workers if w.handle is not None]
        # After "bye" the worker has run shutdown() and flushed its log; what is left is
        # interpreter teardown (a second or more with TensorFlow loaded), not worth waiting.
        self.backend.kill_all(
            [w.handle for w in started if self.backend.exit_code(w.handle) is None]
        )
        for worker in started:
            said_bye = worker.state == "stopped"
            worker.exit_code = 0 if said_bye else self.backend.exit_code(worker.handle)
            self.close(worker)
            if worker.state != "failed":
                worker.state = "stopped"
        self._listener.close()

    def _wait_bye(
        self, worker: Worker, deadline: float, handle: Callable[[Worker, tuple], None]
    ) -> None:
        try:
            while worker.state != "stopped" and worker.conn.poll(max(0.0, deadline - time.time())):
                handle(worker, receive(worker.conn))
        except (EOFError, OSError, GarbledMessage):
            pass  # it is killed with the rest

    def rows(self, run_id: str) -> list[dict[str, Any]]:
        """The ``workers`` table's rows for this step run."""
        return [worker.row(run_id) for worker in self.workers]
