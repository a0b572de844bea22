"""The scheduler's decisions, as a pure state machine: events in, instructions out.

:meth:`SchedulerState.handle` takes events (``scheduler_events.py``: a worker's messages, its
process ending, the input's next mini-batch, time passing, a cancel, a lost lease) and returns
the instructions that follow (start a process, send a mini-batch, end a process, record a
result or an error, commit, finish). It reads no clock, starts no process and touches no file:
``scheduler.py``'s loop does that, so every timeout, retry, lost worker, budget and hold-back is
decided here and can be tested in microseconds. The model is dask.distributed's
``worker_state_machine.py``: one transition per kind of event (``_TRANSITIONS``).

Each mini-batch the input formed is in one :data:`~.scheduler_records.MiniBatchState`: waiting
to be sent (first or again), sent to one worker's queue, held (finished, with preserve_order,
until every earlier one is), or finished (handed to the committer). Each worker is in one
:data:`~.scheduler_records.WorkerState`. :meth:`~SchedulerState.validate_state` checks that, and
:meth:`~SchedulerState.story` tells what happened to one mini-batch or worker.

Examples
--------
>>> from jupyter_parallelrun.engine.mini_batch import MiniBatch
>>> from jupyter_parallelrun.engine.scheduler_events import InputFormed, RunStarted
>>> state = SchedulerState(SchedulerSettings("step", worker_names(1, 1)))
>>> state.handle(RunStarted(0.0), InputFormed(0.0, MiniBatch(0, {"paths": ["a"]}, 1), 40))
[StartWorker(worker='process000', incarnation=0)]
>>> state.mini_batches
{0: 'waiting'}
"""

from __future__ import annotations

from .messages import Beat, Bye, Done, Failed, InitFailed, Ready
from .mini_batch import describe
from .scheduler_events import (
    AcceptConnection,
    CancelRequested,
    CloseConnection,
    Commit,
    ConnectionLost,
    DropConnection,
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
    RunStarted,
    Tick,
    WorkerConnected,
    WorkerEnded,
    WorkersStopped,
    WorkerStarted,
)
from .scheduler_records import ENDED, FINISHED, WATCHED, Try, WorkerRecord, how_it_ended
from .scheduler_steps import (
    ENDED_TEXT,
    EXIT_GRACE,
    PREFETCH_MAX,
    QUEUED_SECONDS,
    SchedulerSettings,
    SchedulerSteps,
    worker_names,
)


class InvalidState(AssertionError):
    """The state broke one of its invariants (a bug in the scheduler)."""


class SchedulerState(SchedulerSteps):
    """The scheduler's state of one step run; change it only through :meth:`handle`.

    Parameters
    ----------
    settings : SchedulerSettings
        The step run's limits, workers and resume point.
    """

    def handle(self, *events) -> list[Instruction]:
        """Take ``events`` in order; the instructions that follow, in the order to carry out.

        Raises
        ------
        KeyError
            An event names a worker the run does not have.
        """
        out: list[Instruction] = []
        for event in events:
            _TRANSITIONS[type(event)](self, event, out)
        return out

    # -- the transitions, one per kind of event ---------------------------------------------

    def _run_started(self, event: RunStarted, out: list) -> None:
        self._started_at = self._last_progress = event.time
        for worker in self.workers.values():
            self._start(worker, event.time, out)

    def _input_formed(self, event: InputFormed, out: list) -> None:
        mb = event.mini_batch
        if self.exhausted or mb.id in self.mini_batches:
            raise ValueError(f"mini-batch {mb.id} formed twice, or after the input's end")
        self.mini_batches[mb.id] = "waiting"
        self.tries[mb.id] = 1
        self.waiting.append(Try(mb, 1, event.size))
        self._story.append((mb.id, None, event.time, "formed", 1))  # _note's, inline
        self._dispatch(event.time, out)

    def _input_exhausted(self, event: InputExhausted, out: list) -> None:
        self.exhausted = True

    def _counted(self, event: MiniBatchesCounted, out: list) -> None:
        self.mb_total = event.total

    def _worker_started(self, event: WorkerStarted, out: list) -> None:
        worker = self._current(event)
        if worker is not None:
            worker.pid, worker.host = event.pid, event.host

    def _connected(self, event: WorkerConnected, out: list) -> None:
        worker = self._current(event)
        if worker is None or worker.state != "starting" or worker.connected:
            # A process already declared lost (silent while starting) whose hello was on
            # its way: its replacement is the one to wait for.
            out.append(DropConnection(event.worker))
            out.append(Log(f"{event.worker}: dropped the late connection of lost pid {event.pid}"))
            return
        # Its hello is its first sign of life: silence is timed from here on.
        worker.connected, worker.pid, worker.heartbeat = True, event.pid, event.time
        out.append(AcceptConnection(event.worker))

    def _received(self, event: Received, out: list) -> None:
        worker = self._current(event)
        if worker is None or worker.state in ENDED or worker.state == "ending":
            return
        message, now = event.message, event.time
        worker.heartbeat = now
        kind = type(message)
        if kind is Done:
            self._done(worker, message, now, out)
        elif kind is Failed:
            flight = self._finish_head(worker, message.mb_id, now)
            if flight is None:
                self._stray(worker, message.mb_id, out)
                return
            error, span = (message.exception, message.traceback), (message.began, message.ended)
            self._failed_try(worker, flight, now, error, span, out, message.n_items)
            self._dispatch(now, out)
        elif kind is Beat:
            if message.rss is not None:
                worker.rss, worker.cpu = message.rss, message.cpu
                out.append(LogResources(worker.name, worker.pid, message.rss, message.cpu))
        elif kind is Ready:
            self._ready(worker, message, out)
            self._dispatch(now, out)
        elif kind is InitFailed:
            self._init_failed(worker, message, now, out)
        elif kind is Bye and self.outcome is None:
            # Only a worker told to stop says bye: one that ends on its own cannot be trusted
            # with the mini-batches sent to it.
            self._lose(worker, "the worker process said bye before it was told to stop", True, out)
        elif kind is Bye:
            worker.state = "stopped"

    def _ready(self, worker: WorkerRecord, message: Ready, out: list) -> None:
        if worker.state != "starting":
            return
        worker.state = "idle"
        where = f" on {worker.host}" if worker.host else ""
        out.append(Log(f"{worker.name} ready{where} (init {message.init_seconds:.2f}s)"))

    def _init_failed(self, worker: WorkerRecord, message: InitFailed, now: float, out) -> None:
        worker.state, worker.error = "failed", message.exception
        row = worker.error_row(
            self.settings.run_id, now, None, 0, "init()", message.exception, message.traceback
        )
        out.append(RecordError(row))
        out.append(Log(f"{worker.name} init() failed: {message.exception}"))
        worker.connected, worker.ended = False, now
        out.append(CloseConnection(worker.name))

    def _done(self, worker: WorkerRecord, message: Done, now: float, out: list) -> None:
        flight = self._finish_head(worker, message.mb_id, now)
        if flight is None:
            self._stray(worker, message.mb_id, out)
            return
        n_failed = max(message.n_items - message.n_ok, 0)
        mb_id, note = message.mb_id, message.note
        if note:
            # Items without a result are failed items: their inputs go in the failure
            # record with the reason, as every item must be in the output or there.
            item = describe(flight.mini_batch.spec)
            row = worker.error_row(self.settings.run_id, now, mb_id, flight.tries, item, note, None)
            out.append(RecordError(row))
            out.append(Log(f"mini-batch {mb_id} on {worker.name}: {note}"))
        worker.done += 1
        took = max(message.ended - message.began, 1e-6)
        seconds = worker.mb_seconds
        worker.mb_seconds = took if seconds is None else (0.8 * seconds + 0.2 * took)
        worker.ahead = min(PREFETCH_MAX, int(QUEUED_SECONDS / worker.mb_seconds))
        record = flight.record(
            self.settings.run_id,
            worker.name,
            "done",
            message.began,
            message.ended,
            succeeded=message.n_ok,
            failed=n_failed,
            error=note,
        )
        self._result(record, message.payload, now, out)
        self._dispatch(now, out)

    def _stray(self, worker: WorkerRecord, mb_id: int, out: list) -> None:
        """A result for a mini-batch the worker was not running: it cannot be trusted."""
        running = worker.queue[0].mini_batch.id if worker.queue else None
        reason = f"the worker process answered for mini-batch {mb_id} while running {running}"
        self._lose(worker, reason, True, out)

    def _connection_lost(self, event: ConnectionLost, out: list) -> None:
        worker = self._current(event)
        if worker is not None and worker.state in WATCHED:
            # A process that sent junk is alive and of no more use: it is killed and replaced.
            self._lose(worker, event.reason, event.garbled, out)

    def _exited(self, event: ProcessExited, out: list) -> None:
        worker = self._current(event)
        if worker is None or worker.state not in WATCHED:
            return
        # What a process said before it ended (its hello, init() failing) may still be on its
        # way through the accept thread: give it EXIT_GRACE to arrive and be read, so that the
        # cause the process reported is what the run records.
        if worker.exit_seen is None:
            worker.exit_seen = event.time
        if event.time - worker.exit_seen > EXIT_GRACE and not event.unread:
            self._lose(worker, ENDED_TEXT, False, out)

    def _ended(self, event: WorkerEnded, out: list) -> None:
        worker = self._current(event)
        if worker is None or worker.state != "ending":
            return
        now, code = event.time, event.exit_code
        reason = how_it_ended(event.reason, code, event.killed)
        where = f" on {worker.host}" if worker.host else ""
        out.append(Log(f"{worker.name} (pid {worker.pid}{where}) lost: {reason}"))
        worker.connected, worker.ended, worker.exit_code = False, now, code
        # A process that had not finished init() is not started again (a failing init() must
        # not loop), unless it went down with its host: then it starts on another.
        gave_up = worker.ending_from == "starting" and not event.host_lost
        run_id = self.settings.run_id
        if worker.queue:
            head = worker.queue.popleft()
            span = (worker.head_started, now)
            self._failed_try(worker, head, now, (reason, None), span, out, exit_code=code)
            for flight in worker.queue:
                self.mini_batches[flight.mini_batch.id] = "waiting"
            self.waiting.extendleft(reversed(worker.queue))
            worker.queue.clear()
            worker.queued_bytes = 0
        elif not gave_up:
            row = worker.error_row(run_id, now, None, 0, "worker process", reason, None, code)
            out.append(RecordError(row))
        if gave_up:
            worker.state, worker.error = "failed", f"died before init() finished: {reason}"
            row = worker.error_row(run_id, now, None, 0, "init()", worker.error, None, code)
            out.append(RecordError(row))
        elif self.outcome is None:
            worker.restarts += 1
            self._start(worker, now, out)
        self._dispatch(now, out)

    def _stopped(self, event: WorkersStopped, out: list) -> None:
        for name, code in event.exit_codes.items():
            worker = self.workers[name]
            # After "bye" the worker ran shutdown() and flushed its log; it was then killed
            # in its interpreter's teardown, which is no failure.
            worker.exit_code = 0 if worker.state == "stopped" else code
            worker.connected, worker.ended = False, event.time
            if worker.state != "failed":
                worker.state = "stopped"

    def _cancel(self, event: CancelRequested, out: list) -> None:
        self._finish("Canceled", "canceled")
        out.append(self.outcome)

    def _lease_lost(self, event: LeaseLost, out: list) -> None:
        self._finish("LeaseLost", event.reason)
        out.append(self.outcome)

    def _unwritable(self, event: OutputUnwritable, out: list) -> None:
        self._finish("Failed", event.reason)
        out.append(self.outcome)

    def _tick(self, event: Tick, out: list) -> None:
        if self.outcome is not None:
            return
        now = event.time
        for worker in self.workers.values():
            if worker.state in WATCHED:
                self._watch(worker, now, out)
        # A run whose work is all done completes, within its error budget, whatever limit its
        # clock passed meanwhile (an input found empty only after first_task_creation_timeout:
        # everything committed before a resume).
        reason = self._over_budget()
        if reason is None and self.finished:
            self._finish("Completed", "")
        elif (reason := reason or self._stop_reason(now)) is not None:
            self._finish("Failed", reason)
        out.append(self.outcome or Commit())

    # -- questions the loop asks ------------------------------------------------------------
    def wants_input(self) -> bool:
        """Whether the next mini-batch of the input should be formed now: a worker has room
        and nothing waits to be sent (the first one is formed at once, while workers start)."""
        return self.input_wanted() > 0

    def rows(self) -> list[dict]:
        """The ``workers`` table's rows for this step run."""
        return [w.row(self.settings.run_id) for w in self.workers.values()]

    def story(self, key: int | str) -> list[tuple]:
        """What happened to mini-batch ``key`` (an id) or worker ``key`` (a name), oldest
        first, as ``(time, what, worker or mini-batch, tries)`` tuples."""
        if isinstance(key, str):
            return [(t, what, mb, tries) for mb, w, t, what, tries in self._story if w == key]
        return [(t, what, w, tries) for mb, w, t, what, tries in self._story if mb == key]

    # -- the invariants -------------------------------------------------------------------

    def validate_state(self) -> None:
        """Check every invariant of the state; raises :class:`InvalidState` on the first broken.

        Each formed mini-batch is in exactly one state and, when waiting or sent, in exactly
        one place; no try is above ``run_max_try``; the counters are those of an earlier runner
        plus the outcomes; with preserve_order, what is finished is a prefix of the ids.
        """
        places: dict[int, str] = {}
        for flight in self.waiting:
            places[flight.mini_batch.id] = places.get(flight.mini_batch.id, "") + "waiting"
        for worker in self.workers.values():
            _check(
                worker.queued_bytes == sum(f.size for f in worker.queue),
                f"{worker.name}'s queued bytes do not add up",
            )
            _check(
                # Ending and stopped workers keep what was sent to them and never answered.
                (worker.state == "busy") == bool(worker.queue)
                or worker.state in ("ending", "stopped"),
                f"{worker.name} is {worker.state} with {len(worker.queue)} mini-batches queued",
            )
            for flight in worker.queue:
                places[flight.mini_batch.id] = places.get(flight.mini_batch.id, "") + "sent"
        for mb_id, state in self.mini_batches.items():
            expected = "" if state in FINISHED else state
            _check(places.pop(mb_id, "") == expected, f"mini-batch {mb_id} is {state} elsewhere")
            _check(1 <= self.tries.get(mb_id, 1) <= self.max_try, f"mini-batch {mb_id}'s tries")
            _check((state == "held") == (mb_id in self.held), f"mini-batch {mb_id} held")
        _check(not places, f"mini-batches queued but not formed: {sorted(places)}")
        outcomes = sum(1 for state in self.mini_batches.values() if state in FINISHED)
        decided = sum(self.counters[k] - self._baseline[k] for k in ("mb_done", "mb_failed"))
        _check(decided == outcomes, f"{decided} outcomes counted, {outcomes} finished")
        if self.settings.preserve_order:
            done = [i for i, state in self.mini_batches.items() if state == "finished"]
            _check(all(i < self._next_id for i in done), "finished out of order")
            _check(all(i >= self._next_id for i in self.held), "held ones already due")


def _check(condition: bool, text: str) -> None:
    if not condition:
        raise InvalidState(text)


_TRANSITIONS = {
    RunStarted: SchedulerState._run_started,
    InputFormed: SchedulerState._input_formed,
    InputExhausted: SchedulerState._input_exhausted,
    MiniBatchesCounted: SchedulerState._counted,
    WorkerStarted: SchedulerState._worker_started,
    WorkerConnected: SchedulerState._connected,
    Received: SchedulerState._received,
    ConnectionLost: SchedulerState._connection_lost,
    ProcessExited: SchedulerState._exited,
    WorkerEnded: SchedulerState._ended,
    WorkersStopped: SchedulerState._stopped,
    CancelRequested: SchedulerState._cancel,
    LeaseLost: SchedulerState._lease_lost,
    OutputUnwritable: SchedulerState._unwritable,
    Tick: SchedulerState._tick,
}

__all__ = ["InvalidState", "SchedulerSettings", "SchedulerState", "worker_names"]
