"""What goes into the scheduler's pure state (events) and what comes out (instructions).

The state (``scheduler_state.py``) reads no clock and does no I/O: every event carries the
time it happened, and every effect is an instruction that the loop (``scheduler.py``) carries
out, feeding back what it learned as new events. Events about one worker process carry its
``incarnation`` (which start of that worker it is), so what a replaced process still sent is
told apart from what its replacement says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .messages import WorkerMessage
from .mini_batch import MiniBatch

# -- events -------------------------------------------------------------------------------


@dataclass(slots=True)
class RunStarted:
    """The step run begins: every worker process is to be started."""

    time: float


@dataclass(slots=True)
class InputFormed:
    """The next mini-batch of the input (ids ascending), ``size`` bytes on the wire."""

    time: float
    mini_batch: MiniBatch
    size: int


@dataclass(slots=True)
class InputExhausted:
    """The input has no more mini-batches."""

    time: float


@dataclass(slots=True)
class MiniBatchesCounted:
    """The counting thread's total of mini-batches (for allowed_failed_percent)."""

    time: float
    total: int


@dataclass(slots=True)
class WorkerStarted:
    """The backend started the process asked for by :class:`StartWorker`."""

    time: float
    worker: str
    incarnation: int
    pid: int | None
    host: str | None


@dataclass(slots=True)
class WorkerConnected:
    """A process of this worker said hello on the listener."""

    time: float
    worker: str
    incarnation: int
    pid: int


@dataclass(slots=True)
class Received:
    """A worker process sent a message."""

    time: float
    worker: str
    incarnation: int
    message: WorkerMessage


@dataclass(slots=True)
class ConnectionLost:
    """The connection closed (``garbled`` False: the process ended) or carried junk
    (``garbled`` True: the process lives on and must be killed). Whatever the process sent
    before is already handled."""

    time: float
    worker: str
    incarnation: int
    reason: str
    garbled: bool = False


@dataclass(slots=True)
class ProcessExited:
    """The process has an exit code; ``unread``: messages of it still wait to be read."""

    time: float
    worker: str
    incarnation: int
    unread: bool = False


@dataclass(slots=True)
class WorkerEnded:
    """A process :class:`EndProcess` asked to end has ended (``killed``: by the runner)."""

    time: float
    worker: str
    incarnation: int
    reason: str
    killed: bool
    exit_code: int | None
    host_lost: bool = False


@dataclass(slots=True)
class WorkersStopped:
    """After :class:`Finish`: every process ended; each worker's exit code (None: unknown)."""

    time: float
    exit_codes: Mapping[str, int | None]


@dataclass(slots=True)
class CancelRequested:
    """``cancel()`` was asked for."""

    time: float


@dataclass(slots=True)
class LeaseLost:
    """Another runner owns the run now: nothing more may be written or started."""

    time: float
    reason: str


@dataclass(slots=True)
class OutputUnwritable:
    """The append_row file refused the rows of a commit."""

    time: float
    reason: str


@dataclass(slots=True)
class Tick:
    """Time passed: check the limits (timeouts, heartbeats, budget, the end of the run)."""

    time: float


Event = (
    RunStarted
    | InputFormed
    | InputExhausted
    | MiniBatchesCounted
    | WorkerStarted
    | WorkerConnected
    | Received
    | ConnectionLost
    | ProcessExited
    | WorkerEnded
    | WorkersStopped
    | CancelRequested
    | LeaseLost
    | OutputUnwritable
    | Tick
)

# -- instructions -------------------------------------------------------------------------


@dataclass(slots=True)
class StartWorker:
    """Start a process for ``worker``; answer with :class:`WorkerStarted`."""

    worker: str
    incarnation: int


@dataclass(slots=True)
class AcceptConnection:
    """Keep the connection of :class:`WorkerConnected` as the worker's."""

    worker: str


@dataclass(slots=True)
class DropConnection:
    """Close the connection of :class:`WorkerConnected`: its process was replaced."""

    worker: str


@dataclass(slots=True)
class Send:
    """Send ``mini_batch`` to the worker, unless that incarnation is no longer connected. A
    send that finds the connection broken is answered with :class:`ConnectionLost`."""

    worker: str
    incarnation: int
    mini_batch: MiniBatch


@dataclass(slots=True)
class CloseConnection:
    """Close the worker's connection (after its init() failed): the process ends itself."""

    worker: str


@dataclass(slots=True)
class EndProcess:
    """Kill the worker's process (``kill``), or wait for it to end; answer with
    :class:`WorkerEnded`, carrying ``reason``."""

    worker: str
    incarnation: int
    reason: str
    kill: bool


@dataclass(slots=True)
class RecordError:
    """A row of the ``errors`` table, to commit."""

    row: dict[str, Any]


@dataclass(slots=True)
class RecordResult:
    """A mini-batch finished for good (in input order with preserve_order): its row of the
    ``mini_batches`` table and its formatted output rows, to commit."""

    record: dict[str, Any]
    payload: bytes


@dataclass(slots=True)
class CountRetry:
    """A failed try will be tried again (counted when its error commits)."""


@dataclass(slots=True)
class Commit:
    """Commit what was recorded (the committer groups commits; ``force``: now)."""

    force: bool = False


@dataclass(slots=True)
class Log:
    """A line for the runner log."""

    text: str


@dataclass(slots=True)
class LogResources:
    """A resource sample of a worker, for its log of resources."""

    worker: str
    pid: int | None
    rss: int
    cpu: float


#: How a step run ends.
Outcome = Literal["Completed", "Failed", "Canceled", "LeaseLost"]


@dataclass(slots=True)
class Finish:
    """The run stops: commit what is left, stop the workers (``polite`` ones get a stop and run
    ``shutdown()``, the rest are killed), answer with :class:`WorkersStopped`, and end as
    ``outcome`` (``reason`` says why when it did not complete)."""

    outcome: Outcome
    reason: str
    polite: tuple[str, ...] = ()


Instruction = (
    StartWorker
    | AcceptConnection
    | DropConnection
    | Send
    | CloseConnection
    | EndProcess
    | RecordError
    | RecordResult
    | CountRetry
    | Commit
    | Log
    | LogResources
    | Finish
)
