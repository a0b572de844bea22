"""The worker processes of one step run, as the scheduler's loop reaches them.

:class:`WorkerProcesses` is the I/O the scheduler's state asks for: it starts each process
through the backend, takes each one's connection as it calls back, reads its messages (as
``messages.py``'s types), says whether it ended and how, ends a lost one, and ends them all
when the step is done. What any of it means (which process is lost, what becomes of its
mini-batches) is the state's part (``scheduler_state.py``).
"""

from __future__ import annotations

import contextlib
import pickle
import select
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from . import frames
from .backends.base import Backend, WorkerHandle
from .listener import WorkerListener
from .logs import StepLogs
from .messages import GarbledMessage, RunMiniBatch, RunnerMessage, Stop, WorkerMessage, encode

#: Seconds the workers told to stop have, together, to run shutdown() and say bye.
STOP_SECONDS = 10


def wire(message: RunnerMessage) -> bytes:
    """The bytes that carry ``message`` to a worker."""
    return pickle.dumps(encode(message), protocol=pickle.HIGHEST_PROTOCOL)


def wire_mini_batch(mb_id: int, spec: dict) -> bytes:
    """``wire(RunMiniBatch(mb_id, spec))``, without making the message: this runs once per
    mini-batch, and the message object was half its time."""
    return pickle.dumps((RunMiniBatch.KIND, mb_id, spec), protocol=pickle.HIGHEST_PROTOCOL)


class WorkerProcesses:
    """Starts, connects, reads and ends the worker processes of one step run.

    Parameters
    ----------
    backend
        Starts and stops the worker processes.
    worker_spec
        What every worker needs to host the entry script (see ``worker.worker_main``).
    logs
        The step's logs; each worker writes a log file of its own there.
    workers
        ``(name, node_id)`` of each worker.
    handshake_timeout
        Seconds a connection has to authenticate and say hello (heartbeat_timeout: a
        connection that has not by then is no worker worth waiting for).
    """

    def __init__(
        self,
        backend: Backend,
        worker_spec: dict[str, Any],
        logs: StepLogs,
        workers: tuple[tuple[str, int], ...],
        handshake_timeout: float,
    ) -> None:
        self.backend, self.worker_spec, self.logs = backend, worker_spec, logs
        self._nodes = dict(workers)
        self.handles: dict[str, WorkerHandle] = {}
        #: The connection of each connected worker, with the incarnation that made it.
        self.conns: dict[str, tuple[Connection, int]] = {}
        self._owners: dict[Connection, str] = {}
        #: What was read from each connection past its last whole message.
        self._unfinished: dict[Connection, bytes] = {}
        #: The connections to wait on, by descriptor; one poll object for the whole run
        #: (``multiprocessing.connection.wait`` builds a selector per call).
        self._poll = select.poll()
        self._by_fd: dict[int, Connection] = {}
        self._listener = WorkerListener(
            backend.address_family,
            backend.listen_address,
            list(self._nodes),
            handshake_timeout=handshake_timeout,
        )

    def arrivals(self) -> Iterator[tuple[str, int, int, Connection]]:
        """``(name, pid, incarnation, connection)`` of each worker that connected since the
        last call; the connections refused are logged."""
        for event in self._listener.events():
            if isinstance(event, str):
                self.logs.runner(event)
            else:
                yield event

    def start(self, name: str, incarnation: int) -> WorkerHandle:
        """Start a process of worker ``name`` (again, after a loss)."""
        self.close(name)
        spec = {
            **self.worker_spec,
            "log_file": str(self.logs.worker_log(name)),
            "incarnation": incarnation,
        }
        handle = self.backend.start_worker(
            name, self._nodes[name], self._listener.address, self._listener.authkey, spec
        )
        self.handles[name] = handle
        return handle

    def connect(self, name: str, conn: Connection, incarnation: int) -> None:
        """Take ``conn`` as the connection of worker ``name``'s process ``incarnation``."""
        self.close(name)
        self.conns[name] = (conn, incarnation)
        self._owners[conn] = name
        self._unfinished[conn] = b""
        self._by_fd[conn.fileno()] = conn
        self._poll.register(conn.fileno(), select.POLLIN)

    def readable(self, timeout: float) -> list[Connection]:
        """The connections with something to read (a message, or their end), waiting up to
        ``timeout`` seconds for one."""
        if not self._by_fd:
            time.sleep(timeout)
            return []
        return [self._by_fd[fd] for fd, _ in self._poll.poll(timeout * 1000)]

    def owner(self, conn: Connection) -> tuple[str, int] | None:
        """The worker on the other end of ``conn`` and its incarnation; None once closed."""
        name = self._owners.get(conn)
        return None if name is None else (name, self.conns[name][1])

    def connection(self, name: str, incarnation: int) -> Connection | None:
        """The connection of that process of the worker, if it is still connected."""
        conn, connected = self.conns.get(name, (None, None))
        return conn if connected == incarnation else None

    def messages(
        self, name: str, conn: Connection, readable: bool = False
    ) -> Iterator[WorkerMessage]:
        """The messages waiting on ``conn`` (all of them, read at once), while it stays the
        worker's connection; ``readable``: :meth:`readable` just said so (``conn.poll()``
        builds a selector per call).

        Raises
        ------
        EOFError, OSError
            The connection is closed: the process ended.
        GarbledMessage
            What came is not a message a worker sends.
        """
        unfinished = self._unfinished.get(conn)
        if unfinished is None or not (readable or conn.poll()):
            return
        whole, self._unfinished[conn] = frames.split(unfinished + frames.read(conn.fileno()))
        for frame in whole:
            if self.conns.get(name, (None,))[0] is not conn:
                return  # closed meanwhile, for what an earlier message said
            yield frames.load(frame)

    def send(self, name: str, incarnation: int, payloads: list[bytes]) -> None:
        """Send the ``payloads`` (see :func:`wire`) to that process of the worker, in one
        write; nothing when it is no longer connected.

        Raises
        ------
        OSError
            The connection closed: the process ended.
        """
        conn = self.connection(name, incarnation)
        if conn is not None:
            frames.write(conn.fileno(), payloads)

    def close(self, name: str) -> None:
        """Close the worker's connection, if it has one."""
        conn, _ = self.conns.pop(name, (None, None))
        if conn is not None:
            self._owners.pop(conn, None)
            self._unfinished.pop(conn, None)
            if self._by_fd.pop(conn.fileno(), None) is not None:
                self._poll.unregister(conn.fileno())
            conn.close()

    def exit_code(self, name: str) -> int | None:
        """The exit code of the worker's process, None while it runs."""
        handle = self.handles.get(name)
        return None if handle is None else self.backend.exit_code(handle)

    def unread(self, name: str) -> bool:
        """Whether messages of the worker wait to be read."""
        conn = self.conns.get(name, (None,))[0]
        return conn is not None and conn.poll()

    def end(self, name: str, kill: bool) -> tuple[int | None, bool]:
        """Kill the worker's process (``kill``) or give it a moment to end; close its
        connection. Returns its exit code and whether its host was lost."""
        handle = self.handles[name]
        if kill:
            self.backend.kill(handle)
        else:
            self.backend.join(handle, timeout=2)
        self.close(name)
        return self.backend.exit_code(handle), self.backend.host_lost(handle)

    def stop_all(
        self, polite: tuple[str, ...], on_message: Callable[[str, int, WorkerMessage], bool]
    ) -> dict[str, int | None]:
        """End every worker process: the ``polite`` ones are told to stop (and run
        ``shutdown()``); ``on_message`` takes what they send meanwhile and says whether the
        worker said bye. The rest are killed at once. Returns each started worker's exit
        code."""
        for *_, conn in self.arrivals():
            conn.close()
        told = []
        for name in polite:
            if name in self.conns:
                with contextlib.suppress(OSError):
                    self.conns[name][0].send_bytes(wire(Stop()))
                    told.append(name)
        deadline = time.time() + STOP_SECONDS
        for name in told:
            self._wait_bye(name, deadline, on_message)
        # After "bye" the worker has run shutdown() and flushed its log; what is left is
        # interpreter teardown (a second or more with TensorFlow loaded), not worth waiting.
        running = [h for h in self.handles.values() if self.backend.exit_code(h) is None]
        self.backend.kill_all(running)
        for name in list(self.conns):
            self.close(name)
        self._listener.close()
        return {name: self.backend.exit_code(h) for name, h in self.handles.items()}

    def _wait_bye(
        self, name: str, deadline: float, on_message: Callable[[str, int, WorkerMessage], bool]
    ) -> None:
        conn, incarnation = self.conns[name]
        try:
            while conn.poll(max(0.0, deadline - time.time())):
                for message in self.messages(name, conn, readable=True):
                    if on_message(name, incarnation, message):
                        return
        except (EOFError, OSError, GarbledMessage):
            pass  # it is killed with the rest
