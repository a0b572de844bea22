"""The scheduler: the loop that carries out what the scheduler's state decides.

It runs inside the runner process, one step run at a time. Each round it takes the workers that
connected, forms the mini-batches the state wants, reads what the workers sent, notes the
processes that ended and the time, and turns each into an event for its
:class:`~.scheduler_state.SchedulerState`; it carries out the instructions that come back
(start a process, send a mini-batch, end a process, commit through its
:class:`~.commit.StepCommitter`, finish). Every decision (timeouts, retries, lost workers, the
error budget, cancel, preserve_order's hold-back) is the state's; this loop only does the I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from itertools import islice
from multiprocessing.connection import Connection
from queue import Empty, SimpleQueue
from typing import Any

from ..settings import Settings
from ..store import RunStore
from ..store_lease import LeaseLost as LeaseLostError
from .backends.base import Backend
from .budget import Budget, StepCanceled, StepFailed
from .commit import OutputUnwritable as OutputUnwritableError
from .commit import StepCommitter
from .logs import StepLogs
from .messages import GarbledMessage, WorkerMessage
from .mini_batch import MiniBatch
from .output import AppendRowWriter
from .scheduler_events import (
    AcceptConnection,
    CancelRequested,
    CloseConnection,
    Commit,
    ConnectionLost,
    CountRetry,
    DropConnection,
    EndProcess,
    Finish,
    InputExhausted,
    InputFormed,
    Instruction,
    LeaseLost,
    Log,
    LogResources,
    MiniBatchesCounted,
    OutputUnwritable,
    ProcessExited,
    Received,
    RecordError,
    RecordResult,
    RunStarted,
    Send,
    StartWorker,
    Tick,
    WorkerConnected,
    WorkerEnded,
    WorkersStopped,
    WorkerStarted,
)
from .scheduler_records import WATCHED
from .scheduler_state import SchedulerSettings, SchedulerState, worker_names
from .scheduler_steps import ENDED_TEXT, PREFETCH
from .worker_processes import WorkerProcesses, wire_mini_batch

#: Seconds the loop waits for a worker's message in one round.
ROUND_SECONDS = 0.05
#: Seconds between looks at the store for a cancel request.
CANCEL_CHECK_SECONDS = 0.5
#: At most this many of a worker's waiting messages are handed to the state at once.
DRAIN_BATCH = 64

__all__ = ["PREFETCH", "Scheduler", "step_scheduler"]


class Scheduler:
    """Runs the mini-batches of one step run on a backend's worker processes.

    Parameters
    ----------
    state
        Decides what happens (see ``scheduler_state.py``).
    processes
        Reaches the worker processes.
    committer
        Commits what the state records, exactly once.
    mini_batches
        The step's input, split (a stream; ids ascending), without those already committed.
    logs
        The step's logs.
    cancel_requested
        Whether ``cancel()`` was asked for (it reads the store).
    """

    def __init__(
        self,
        state: SchedulerState,
        processes: WorkerProcesses,
        committer: StepCommitter,
        mini_batches: Iterator[MiniBatch],
        logs: StepLogs,
        cancel_requested: Callable[[], bool],
    ) -> None:
        self.state, self.processes, self.committer = state, processes, committer
        self.source, self.logs, self.cancel_requested = mini_batches, logs, cancel_requested
        self.finish: Finish | None = None
        self._wire: dict[int, bytes] = {}
        #: The mini-batches to send to each (worker, incarnation), written once a round.
        self._outbox: dict[tuple[str, int], list[bytes]] = {}
        self._arriving: tuple[Connection, int] | None = None
        self._counted: SimpleQueue[int] = SimpleQueue()
        self._last_cancel_check = 0.0

    def counted(self, total: int) -> None:
        """The counting thread's total of mini-batches (safe from any thread)."""
        self._counted.put(total)

    def run(self) -> None:
        """Process every mini-batch; raises StepFailed or StepCanceled when the run stops."""
        # The workers start while the input is listed up to its first mini-batch (a folder of
        # a million files takes a second); for an empty input they are stopped at once.
        try:
            self._do(self.state.handle(RunStarted(time.time())))
            while self.finish is None:
                self._round()
        finally:
            try:
                self._commit(force=True)
            finally:
                self._stop()
                self.committer.write_state(force=True)
        if self.finish.outcome == "Failed":
            raise StepFailed(self.finish.reason)
        if self.finish.outcome == "Canceled":
            raise StepCanceled(self.finish.reason)

    def check_budget(self) -> None:
        """Raise StepFailed when the committed outcomes exceed the error budget, counting the
        percentage over the mini-batches that finished (the step's total, once it ran)."""
        counters, budget = self.committer.counters, self.state.settings.budget
        finished = counters["mb_done"] + counters["mb_failed"]
        reason = budget.exceeded(counters["items_failed"], counters["mb_failed"], finished)
        if reason:
            raise StepFailed(reason)

    def _round(self) -> None:
        for name, pid, incarnation, conn in self.processes.arrivals():
            self._arriving = (conn, incarnation)
            self._do(self.state.handle(WorkerConnected(time.time(), name, incarnation, pid)))
        self._form()
        for conn in self.processes.readable(ROUND_SECONDS):
            owner = self.processes.owner(conn)
            if owner is not None:  # not closed meanwhile by what an earlier one sent
                self._drain(*owner, readable=True)
        now = time.time()
        events: list = []
        for name, worker in self.state.workers.items():
            if worker.state in WATCHED and self.processes.exit_code(name) is not None:
                unread = self.processes.unread(name)
                events.append(ProcessExited(now, name, worker.restarts, unread))
        while True:
            try:
                events.append(MiniBatchesCounted(now, self._counted.get_nowait()))
            except Empty:
                break
        if now - self._last_cancel_check > CANCEL_CHECK_SECONDS:
            self._last_cancel_check = now
            if self.cancel_requested():
                events.append(CancelRequested(now))
        events.append(Tick(now))
        self._do(self.state.handle(*events))
        self._flush()

    def _form(self) -> None:
        """Form the mini-batches the state wants now, and send what it sends of them."""
        wanted = self.state.input_wanted()
        while wanted:
            now, events = time.time(), []
            for mb in islice(self.source, wanted):
                data = self._wire[mb.id] = wire_mini_batch(mb.id, mb.spec)
                events.append(InputFormed(now, mb, len(data)))
            if len(events) < wanted:
                events.append(InputExhausted(now))
            self._do(self.state.handle(*events))
            wanted = self.state.input_wanted()
        self._flush()

    def _drain(self, name: str, incarnation: int, readable: bool = False) -> None:
        """Handle every message waiting from the worker (``readable``: a poll just said some
        are); once its connection closed or carried junk, say it was lost."""
        conn = self.processes.connection(name, incarnation)
        if conn is None:
            return
        # The messages waiting are handed to the state together, up to DRAIN_BATCH at a time
        # (one handle() per batch instead of per message). What the state decides on one of
        # them is carried out after the rest of the batch was read: once it declared the
        # worker lost, it ignores what that process said after.
        events: list = []
        now = time.time()  # they are all read at once, now
        try:
            for message in self.processes.messages(name, conn, readable):
                events.append(Received(now, name, incarnation, message))
                if len(events) == DRAIN_BATCH:
                    self._do(self.state.handle(*events))
                    events = []
        except (EOFError, OSError):
            events.append(ConnectionLost(time.time(), name, incarnation, ENDED_TEXT))
        except GarbledMessage as error:
            events.append(ConnectionLost(time.time(), name, incarnation, str(error), garbled=True))
        if events:
            self._do(self.state.handle(*events))

    def _do(self, instructions: list[Instruction]) -> None:
        for instruction in instructions:
            kind = type(instruction)
            if kind is Send:
                self._send(instruction)
            elif kind is RecordResult:
                self.committer.add_result(instruction.record, instruction.payload)
            elif kind is RecordError:
                self.committer.add_error(instruction.row)
            elif kind is CountRetry:
                self.committer.add_retry()
            elif kind is Log:
                self.logs.runner(instruction.text)
            elif kind is Commit:
                self._commit(instruction.force)
            else:
                self._do_process(instruction)

    def _do_process(self, instruction: Instruction) -> None:
        kind, name = type(instruction), getattr(instruction, "worker", None)
        if kind is StartWorker:
            handle = self.processes.start(name, instruction.incarnation)
            started = WorkerStarted(
                time.time(), name, instruction.incarnation, handle.pid, handle.host
            )
            self._do(self.state.handle(started))
        elif kind is EndProcess:
            code, host_lost = self.processes.end(name, instruction.kill)
            ended = WorkerEnded(
                time.time(),
                name,
                instruction.incarnation,
                instruction.reason,
                instruction.kill,
                code,
                host_lost,
            )
            self._do(self.state.handle(ended))
        elif kind is AcceptConnection:
            self.processes.connect(name, *self._arriving)
        elif kind is DropConnection:
            self._arriving[0].close()
        elif kind is CloseConnection:
            self.processes.close(name)
        elif kind is LogResources:
            self.logs.resources(name, instruction.pid, instruction.rss, instruction.cpu)
        elif kind is Finish:
            self.finish = self.finish or instruction

    def _send(self, send: Send) -> None:
        # Sent with the rest of the round's mini-batches for that process (see _flush).
        mb = send.mini_batch
        data = self._wire.pop(mb.id, None) or wire_mini_batch(mb.id, mb.spec)
        self._outbox.setdefault((send.worker, send.incarnation), []).append(data)

    def _flush(self) -> None:
        """Write what waits in the outbox, one write per worker process."""
        while self._outbox:
            (name, incarnation), payloads = self._outbox.popitem()
            try:
                # Nothing is sent to a process lost meanwhile: the state sends its mini-batches
                # again, to its replacement.
                self.processes.send(name, incarnation, payloads)
            except OSError:
                # What the process sent before it ended comes first: a mini-batch it finished
                # just before dying is a result, and the try that failed is the one after it.
                self._drain(name, incarnation)
                lost = ConnectionLost(time.time(), name, incarnation, ENDED_TEXT)
                self._do(self.state.handle(lost))

    def _commit(self, force: bool = False) -> None:
        try:
            self.committer.commit(force=force)
        except OutputUnwritableError as error:
            self._do(self.state.handle(OutputUnwritable(time.time(), str(error))))
        except LeaseLostError as error:
            self._do(self.state.handle(LeaseLost(time.time(), str(error))))
            raise

    def _stop(self) -> None:
        self._outbox.clear()  # nothing is left to run once the run is decided
        polite = self.finish.polite if self.finish is not None else ()
        codes = self.processes.stop_all(polite, self._said_bye)
        self.state.handle(WorkersStopped(time.time(), codes))

    def _said_bye(self, name: str, incarnation: int, message: WorkerMessage) -> bool:
        self._do(self.state.handle(Received(time.time(), name, incarnation, message)))
        return self.state.workers[name].state == "stopped"


def step_scheduler(
    store: RunStore,
    run_id: str,
    config: Settings,
    backend: Backend,
    logs: StepLogs,
    source: Iterator[MiniBatch],
    worker_spec: dict[str, Any],
    writer: AppendRowWriter | None,
    committed: Collection[int],
    counters: dict[str, int],
) -> Scheduler:
    """The scheduler of step run ``run_id``, with its state and collaborators made from the
    step's settings (``config``).

    Parameters
    ----------
    committed, counters
        The ids of the mini-batches an earlier runner of this step run committed, and their
        counters.
    """
    settings = SchedulerSettings(
        run_id=run_id,
        workers=worker_names(config.node_count, config.process_count_per_node),
        run_max_try=config.run_max_try,
        run_invocation_timeout=config.run_invocation_timeout,
        budget=Budget(
            config.error_threshold, config.allowed_failed_count, config.allowed_failed_percent
        ),
        heartbeat_timeout=float(config.heartbeat_timeout),
        task_overhead_timeout=config.task_overhead_timeout,
        progress_update_timeout=config.progress_update_timeout,
        first_task_creation_timeout=config.first_task_creation_timeout,
        preserve_order=config.preserve_order,
        committed=frozenset(committed),
        counters=counters,
    )
    state = SchedulerState(settings)
    processes = WorkerProcesses(
        backend, worker_spec, logs, settings.workers, settings.heartbeat_timeout
    )
    committer = StepCommitter(
        store,
        run_id,
        writer,
        logs,
        lambda: (state.rows(), state.mb_total, len(state.held)),
        dict(settings.counters),
    )
    cancel = lambda: bool(store.get_run(run_id)["cancel_requested"])  # noqa: E731
    return Scheduler(state, processes, committer, source, logs, cancel)
