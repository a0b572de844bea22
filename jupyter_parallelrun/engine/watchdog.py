"""A worker's watchdog: a tiny process that kills the worker when its runner is gone.

A worker that is not the runner's child (one started on a Dask worker) gets no parent-death
signal when the runner dies, and its heartbeat thread, which notices a closed connection, cannot
run while ``run()`` holds the GIL (``sum(range(10**15))``, a stuck extension): it would burn a
core for a run nobody will ever commit. The watchdog needs no thread of the worker. It is a
separate interpreter (``python -I -S`` running this file, standard library only, a few MB) that
holds a copy of the worker's connection socket and waits, in ``poll()``, for the runner's side
of it to close (a dead process's sockets are closed by the kernel: FIN or RST on TCP, hang-up on
a unix socket); it never reads from the socket. Then it SIGKILLs the worker and exits.

It never outlives the worker: the kernel kills it when the worker dies (parent-death signal),
it checks once a second that its parent is still the worker, and the worker kills it before it
says its last word (``init_failed`` or ``bye``), after which the runner closes its side.

It is started with :mod:`subprocess` (fork and exec in one step, nothing of the worker's Python
runs in the child), which is safe whatever threads the worker or its host already runs, and is
handed only the socket (``pass_fds``).
"""

from __future__ import annotations

import os
import select
import signal
import sys

#: Seconds between checks that the worker, the watchdog's parent, is still there.
PARENT_CHECK_SECONDS = 1.0

_PR_SET_PDEATHSIG = 1


def start(fd: int):
    """Start the watchdog of this process over the connection socket ``fd``.

    Returns the ``subprocess.Popen`` of the watchdog, or None where it cannot run (not Linux,
    or the process cannot be started: the heartbeat thread then remains the only guard).
    """
    if not sys.platform.startswith("linux") or not hasattr(select, "POLLRDHUP"):
        return None
    import subprocess

    command = [sys.executable, "-I", "-S", os.path.abspath(__file__), str(fd), str(os.getpid())]
    try:
        return subprocess.Popen(command, pass_fds=(fd,), stdin=subprocess.DEVNULL)
    except OSError as error:
        print(f"cannot start the worker's watchdog: {error}", file=sys.stderr, flush=True)
        return None


def stop(process) -> None:
    """End the watchdog ``start`` returned (None: there is none) and reap it."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


def _end_with_worker(worker: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (ImportError, AttributeError, OSError):
        pass  # the once-a-second check below still ends it
    if os.getppid() != worker:  # the worker died before the signal was set
        sys.exit(0)


def watch(fd: int, worker: int) -> None:
    """Wait until the other side of socket ``fd`` closes, then SIGKILL ``worker``; return
    when ``worker`` (this process's parent) is gone."""
    _end_with_worker(worker)
    poller = select.poll()
    # Only the end of the connection: data arriving (POLLIN) is the worker's to read.
    # POLLHUP and POLLERR are reported whether asked for or not.
    poller.register(fd, select.POLLRDHUP)
    while os.getppid() == worker:
        events = poller.poll(PARENT_CHECK_SECONDS * 1000)
        if not events:
            continue
        if events[0][1] & select.POLLNVAL:  # not a socket of ours: nothing to watch
            return
        if os.getppid() == worker:
            os.kill(worker, signal.SIGKILL)
        return


if __name__ == "__main__":
    watch(int(sys.argv[1]), int(sys.argv[2]))
