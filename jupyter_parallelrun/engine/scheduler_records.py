"""The scheduler's records: a worker's state, the tries sent to it, and the rows made of them.

Pure data for the scheduler's state (``scheduler_state.py``): a :class:`WorkerRecord` per
worker process (its state, the :class:`Try` objects sent to it, the running one first, and its
counters), and the rows of the run store they make: ``workers``, ``errors`` and the
``mini_batches`` of finished tries. Times are passed in; nothing here reads a clock.
"""

from __future__ import annotations

import signal
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from .error_text import MAX_MESSAGE_CHARS, MAX_TRACEBACK_CHARS, shorten
from .mini_batch import MiniBatch

#: A worker process's state. ``starting``: started, init() not yet done; ``idle``/``busy``:
#: ready, without or with mini-batches sent to it; ``ending``: declared lost, its process being
#: killed or waited for; ``failed``: init() failed, or it died before init() finished, and it is
#: not started again; ``stopped``: ended at the end of the run.
WorkerState = Literal["starting", "idle", "busy", "ending", "failed", "stopped"]
#: States of a worker that can take mini-batches.
READY: frozenset[WorkerState] = frozenset({"idle", "busy"})
#: States of a worker whose process is watched (timeouts, heartbeats, exits).
WATCHED: frozenset[WorkerState] = frozenset({"starting", "idle", "busy"})
#: States a worker does not leave (until the run ends, for ``failed``).
ENDED: frozenset[WorkerState] = frozenset({"failed", "stopped"})

#: A mini-batch's state, once the input formed it. ``waiting``: to be sent (again);
#: ``sent``: in a worker's queue; ``held``: finished, waiting for earlier ones (preserve_order);
#: ``finished``: done or failed for good, handed to the committer.
MiniBatchState = Literal["waiting", "sent", "held", "finished"]
#: States of a mini-batch that will not be sent again.
FINISHED: frozenset[MiniBatchState] = frozenset({"held", "finished"})


@dataclass(slots=True)
class Try:
    """One try of a mini-batch: sent to a worker, or waiting to be sent again.

    ``size`` is the bytes of its message on the wire.
    """

    mini_batch: MiniBatch
    tries: int
    size: int = 0

    def record(
        self,
        run_id: str,
        worker: str,
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
            "worker": worker,
            "started": began,
            "ended": ended,
            "succeeded": succeeded,
            "failed": failed,
            "error": error,
            "output_end": None,
        }


@dataclass(slots=True)
class WorkerRecord:
    """The scheduler's record of one worker (``restarts``: its incarnation now)."""

    name: str
    node_id: int
    state: WorkerState = "starting"
    queue: deque[Try] = field(default_factory=deque)
    head_started: float = 0.0
    done: int = 0
    failed: int = 0
    retries: int = 0
    restarts: int = 0
    pid: int | None = None
    host: str | None = None
    connected: bool = False
    heartbeat: float | None = None
    mb_seconds: float | None = None
    #: Mini-batches its speed lets be queued for it (0 until its speed is known).
    ahead: int = 0
    queued_bytes: int = 0
    rss: int | None = None
    cpu: float | None = None
    started: float = 0.0
    ended: float | None = None
    exit_code: int | None = None
    exit_seen: float | None = None
    ending_from: WorkerState | None = None
    error: str | None = None

    def restart(self, now: float) -> None:
        """A new process of this worker starts: everything timed per process starts again (a
        replacement must not inherit the heartbeat of a predecessor gone silent, nor its
        speed)."""
        self.state, self.started, self.connected = "starting", now, False
        self.exit_code = self.error = self.exit_seen = self.ending_from = None
        self.heartbeat = self.mb_seconds = self.rss = self.cpu = None
        self.ahead = 0

    def row(self, run_id: str) -> dict[str, Any]:
        """This worker's row of the ``workers`` table."""
        return {
            "run_id": run_id,
            "name": self.name,
            "node_id": self.node_id,
            "pid": self.pid,
            "host": self.host,
            "state": self.ending_from if self.state == "ending" else self.state,
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
        now: float,
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
            "time": now,
            "pid": self.pid,
            "exit_code": exit_code,
        }


def how_it_ended(reason: str, code: int | None, killed: bool) -> str:
    """``reason`` with how the process ended added: its exit code, or the signal that killed
    it (``killed``: by the runner)."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        reason += f" (killed by signal {-code}, {name}"
        if -code == signal.SIGKILL and not killed:
            reason += "; the kernel kills processes out of memory this way"
        reason += ")"
    elif code is not None:
        reason += f" (exit code {code})"
    return reason
