"""A child of the runner that must not outlive it: its workers, its fingerprint process."""

from __future__ import annotations

import os
import signal
import sys


def end_with_parent(parent_pid: int | None) -> None:
    """Have the kernel kill this process the moment its parent, the runner, dies.

    The heartbeat thread ends a worker whose runner is gone, but only while it can run: C code
    holding the GIL (a long builtin call, a stuck extension) keeps it from ever noticing. Linux's
    parent-death signal needs no thread. It fires when the thread that started this process
    ends: for a worker the runner's main thread, so only when the runner ends; for the
    fingerprint process the counting thread, which waits for it. ``parent_pid`` is given by
    backends whose workers are the runner's own children (the others get a watchdog, see
    watchdog.py).
    """
    if parent_pid is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the runner died before the signal was set
        os._exit(1)
