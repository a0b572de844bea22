"""The runner's end of the worker connections: where worker processes call back.

Anyone who can reach the address may connect: on the Dask path it is a TCP port of this machine.
So each connection must prove it holds the step's key (the HMAC challenge of
``multiprocessing.connection``, both ways) and say hello before it counts as a worker, and no
connection can stop the others: the accept thread only accepts; each handshake runs on a thread
of its own, cut off after ``handshake_timeout`` seconds, so a port scan, a wrong key, garbage or
a peer that connects and says nothing costs one line in the runner log and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import (
    AuthenticationError,
    Connection,
    answer_challenge,
    arbitrary_address,
    deliver_challenge,
)
from queue import Empty, SimpleQueue
from typing import Any

#: Handshakes in progress at once; a connection beyond that is closed at once (and logged), so
#: a flood of idle connections cannot take a thread each.
MAX_HANDSHAKES = 64
#: Sets the seconds a connection has to authenticate and say hello, in place of the run's
#: ``heartbeat_timeout``: shorter drops strangers sooner (the tests' sieges take seconds, not a
#: minute); longer lets workers on a slow link in.
HANDSHAKE_ENV = "JUPYTER_PARALLELRUN_HANDSHAKE_SECONDS"


def handshake_seconds(default: float) -> tuple[float, str]:
    """The handshake deadline, and what set it: ``HANDSHAKE_ENV`` when given, else ``default``
    (the run's heartbeat_timeout)."""
    value = os.environ.get(HANDSHAKE_ENV)
    if not value:
        return float(default), "heartbeat_timeout"
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{HANDSHAKE_ENV} must be a positive number of seconds; got {value!r}")
    return seconds, HANDSHAKE_ENV


class _Deadline:
    """Shuts a connection's socket down once ``seconds`` pass, unless disarmed first.

    The socket is shut down through a duplicate of its descriptor, so the shutdown reaches that
    socket even if the connection was closed and its descriptor number reused meanwhile, and a
    handshake blocked in a read wakes up with end-of-file.
    """

    def __init__(self, conn: Connection, seconds: float) -> None:
        self.socket: socket.socket | None = socket.socket(fileno=os.dup(conn.fileno()))
        self.expired = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True
        self._timer.start()

    def _cut(self) -> None:
        with self._lock:
            if self.socket is not None:
                self.expired = True
                with contextlib.suppress(OSError):
                    self.socket.shutdown(socket.SHUT_RDWR)

    def disarm(self) -> bool:
        """Stop the timer; False when it went off first (the connection is then cut)."""
        self._timer.cancel()
        with self._lock:
            self.socket.close()
            self.socket = None
            return not self.expired


def _peer(sock: socket.socket) -> str:
    """Who is on the other end, for the runner log."""
    if sock.family == socket.AF_UNIX:
        with contextlib.suppress(OSError, AttributeError):
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid, uid, _ = struct.unpack("3i", creds)
            return f"local pid {pid} (uid {uid})"
        return "a local process"
    with contextlib.suppress(OSError):
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    return "an unknown peer"


class WorkerListener:
    """Accepts the worker processes of one step run, each authenticated with a fresh key.

    Parameters
    ----------
    family : str
        ``"AF_UNIX"`` (local workers) or ``"AF_INET"`` (workers on other hosts).
    address
        Where to listen; None picks a free address of ``family``.
    names : iterable of str
        The worker names a hello may carry.
    handshake_timeout : float
        Seconds a connection has to authenticate and say hello, unless ``HANDSHAKE_ENV`` sets
        them.

    Notes
    -----
    :attr:`authkey` is made here, 32 random bytes, once per step run started: it is never
    written anywhere, and reaches the workers only as the backends hand it over (see
    ``backends``).
    """

    def __init__(
        self, family: str, address: Any, names: list[str], handshake_timeout: float
    ) -> None:
        self.authkey = secrets.token_bytes(32)
        self.handshake_timeout, self._set_by = handshake_seconds(handshake_timeout)
        self._names = frozenset(names)
        # A socket of its own rather than a multiprocessing Listener, whose accept() runs the
        # handshake on the accept thread (one silent peer would block every later worker) and
        # whose close() leaves a thread blocked in accept() listening on.
        self._socket = socket.socket(getattr(socket, family), socket.SOCK_STREAM)
        self._socket.bind(address or arbitrary_address(family))
        if family == "AF_UNIX":  # in a 0700 folder already; the socket itself owner-only too
            os.chmod(self._socket.getsockname(), 0o600)
        self._socket.listen(64)  # every worker connects at start; a backlog of 1 drops some
        self.address = self._socket.getsockname()
        self._events: SimpleQueue = SimpleQueue()
        self._slots = threading.BoundedSemaphore(MAX_HANDSHAKES)
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self._socket.accept()
            except OSError as error:
                if self._closed:
                    return
                # A connection reset before it was accepted, or out of file descriptors: the
                # listener itself is fine; wait a moment rather than spin on a lasting cause.
                self._events.put(f"accepting a connection failed: {error}")
                time.sleep(0.1)
                continue
            sock.setblocking(True)
            conn = Connection(sock.detach())
            if not self._slots.acquire(blocking=False):
                self._events.put(
                    f"refused a connection: {MAX_HANDSHAKES} handshakes are already in progress"
                )
                conn.close()
                continue
            try:
                threading.Thread(target=self._greet, args=(conn,), daemon=True).start()
            except RuntimeError as error:  # out of threads: this one waits for no stranger
                self._slots.release()
                conn.close()
                self._events.put(f"refused a connection: cannot start its handshake ({error})")

    def _greet(self, conn: Connection) -> None:
        try:
            try:
                deadline = _Deadline(conn, self.handshake_timeout)
            except (OSError, RuntimeError) as error:  # out of descriptors or threads
                conn.close()
                self._events.put(f"refused a connection: cannot time its handshake ({error})")
                return
            peer = _peer(deadline.socket)
            reason = None
            try:
                deliver_challenge(conn, self.authkey)
                answer_challenge(conn, self.authkey)
                hello = conn.recv()
            except AuthenticationError as error:
                reason = f"wrong authkey ({error})"
            except EOFError:
                reason = "closed the connection before authenticating"
            except Exception as error:  # noqa: BLE001 - whatever a stranger sends is refused
                reason = f"broke off the handshake ({type(error).__name__}: {error})"
            else:
                if not (
                    isinstance(hello, tuple)
                    and len(hello) == 4
                    and hello[0] == "hello"
                    and hello[1] in self._names
                ):
                    reason = f"authenticated, then sent {str(hello)[:80]!r} instead of a hello"
            if not deadline.disarm():
                reason = (
                    f"did not authenticate and say hello within {self.handshake_timeout:g}s "
                    f"({self._set_by})"
                )
            if reason is None:
                self._events.put((*hello[1:], conn))
                return
            conn.close()
            self._events.put(f"refused a connection from {peer}: {reason}")
        finally:
            self._slots.release()

    def events(self) -> Iterator[tuple | str]:
        """What happened since the last call: ``(name, pid, incarnation, conn)`` for each
        worker that connected, a line for the runner log for each connection refused."""
        while True:
            try:
                yield self._events.get_nowait()
            except Empty:
                return

    def close(self) -> None:
        """Stop accepting; handshakes in progress are refused when they end."""
        self._closed = True
        with contextlib.suppress(OSError):  # wakes the accept thread (close alone does not)
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        if isinstance(self.address, str):
            with contextlib.suppress(OSError):
                os.unlink(self.address)
