"""The steps the scheduler's transitions are made of, and the state they work on.

:class:`SchedulerSteps` holds the data of one step run's scheduling (the workers' records, the
mini-batches' states, the tries waiting, the counters, the held results) and the steps that
``scheduler_state.py``'s transitions share: sending what waits, finishing a worker's running
try, a failed try and its retry, a result counted and recorded in order. Pure: times come in as
arguments, effects go out as instructions appended to ``out``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from ..settings import (
    DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_RUN_INVOCATION_TIMEOUT,
    DEFAULT_RUN_MAX_TRY,
)
from .budget import Budget
from .mini_batch import describe
from .scheduler_events import (
    CountRetry,
    EndProcess,
    Finish,
    Log,
    Outcome,
    RecordError,
    RecordResult,
    Send,
    StartWorker,
)
from .scheduler_records import READY, MiniBatchState, Try, WorkerRecord

#: Mini-batches sent ahead to each worker (one running, the rest queued in its pipe) ...
PREFETCH = 2
#: ... or more when its mini-batches are quick: about QUEUED_SECONDS of work, at most
#: PREFETCH_MAX, so that the worker never waits for a round of the runner's loop.
PREFETCH_MAX = 64
QUEUED_SECONDS = 0.02
#: Past PREFETCH, no more is sent while this many bytes of specs wait in a worker's pipe: a
#: full pipe would block the runner's send while the worker blocks sending its results.
PREFETCH_BYTES = 64 * 1024
#: With preserve_order, past this many bytes of held rows, or this many held mini-batches,
#: no new mini-batch starts until the earliest unfinished one is done (see holding_back).
HELD_BYTES = 64 * 1024 * 1024
HELD_MINI_BATCHES = 10_000
#: Seconds between noticing that a worker process ended and declaring it lost: what it said
#: before it ended (init() failing) may still be on its way through the accept thread.
EXIT_GRACE = 0.3
#: Seconds a new worker process may take to connect, when heartbeat_timeout is shorter.
CONNECT_GRACE = 30.0
#: Why a worker whose connection closed, or whose process ended, is lost.
ENDED_TEXT = "the worker process ended unexpectedly"
#: Entries of the story kept (the oldest go first).
STORY_LENGTH = 100_000

COUNTERS = ("items_done", "items_failed", "mb_done", "mb_failed", "retries")


@dataclass(frozen=True)
class SchedulerSettings:
    """What the state machine of one step run is set up with.

    Parameters
    ----------
    run_id
        The step run (in every row the state makes).
    workers
        ``(name, node_id)`` of each worker process; see :func:`worker_names`.
    run_max_try, run_invocation_timeout, task_overhead_timeout, heartbeat_timeout,
    progress_update_timeout, first_task_creation_timeout
        The ParallelRunConfig settings of that name (seconds; None: no limit).
    budget
        The error budget.
    preserve_order
        Commit mini-batches in id order; ``committed`` (ids an earlier runner committed)
        count as already there.
    counters
        Counters of mini-batches committed by an earlier runner of this step run (resume).
    """

    run_id: str
    workers: tuple[tuple[str, int], ...]
    run_max_try: int = DEFAULT_RUN_MAX_TRY
    run_invocation_timeout: float = DEFAULT_RUN_INVOCATION_TIMEOUT
    budget: Budget = field(default_factory=Budget)
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT
    task_overhead_timeout: float | None = None
    progress_update_timeout: float | None = None
    first_task_creation_timeout: float | None = None
    preserve_order: bool = False
    committed: Collection[int] = ()
    counters: Mapping[str, int] | None = None


def worker_names(nodes: int, processes_per_node: int) -> tuple[tuple[str, int], ...]:
    """The ``(name, node_id)`` of each worker process of ``nodes`` nodes."""
    return tuple(
        (f"process{node * processes_per_node + index:03d}", node)
        for node in range(nodes)
        for index in range(processes_per_node)
    )


class SchedulerSteps:
    """The data of one step run's scheduling, and the steps its transitions share.

    Attributes
    ----------
    workers : dict[str, WorkerRecord]
        Each worker's record, in start order.
    mini_batches : dict[int, MiniBatchState]
        The state of every mini-batch the input formed so far.
    tries : dict[int, int]
        The tries each mini-batch was sent, or is waiting, for (at most ``run_max_try``).
    waiting : deque[Try]
        Tries to send, first to last.
    counters : dict[str, int]
        ``items_done``, ``items_failed``, ``mb_done``, ``mb_failed``, ``retries``: those of an
        earlier runner plus the outcomes decided here (held ones included).
    outcome : Finish or None
        How the run ends, once that is decided.
    """

    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = s = settings
        self.max_try = int(s.run_max_try)
        self.heartbeat_timeout = float(s.heartbeat_timeout)
        # Until a new process says hello (an interpreter starting, importing the package) it
        # cannot beat; on a loaded machine that takes seconds, more than a short timeout.
        self.connect_limit = max(self.heartbeat_timeout, CONNECT_GRACE)
        # Loading a mini-batch's input happens inside the worker's call, so the allowance for
        # that (task_overhead_timeout) is added to the call's own limit.
        self.timeout = float(s.run_invocation_timeout)
        self.timeout_text = f"run_invocation_timeout={self.timeout:g}s"
        if s.task_overhead_timeout:
            self.timeout += float(s.task_overhead_timeout)
            self.timeout_text += f" + task_overhead_timeout={s.task_overhead_timeout:g}s"
        self.workers = {name: WorkerRecord(name, node) for name, node in s.workers}
        self.mini_batches: dict[int, MiniBatchState] = {}
        self.tries: dict[int, int] = {}
        self.waiting: deque[Try] = deque()
        self.exhausted = False
        self.mb_total: int | None = None
        self.counters = {name: 0 for name in COUNTERS} | dict(s.counters or {})
        self.outcome: Finish | None = None
        self.held: dict[int, tuple[dict, bytes]] = {}
        self.held_bytes = 0
        self._before = set(s.committed) if s.preserve_order else set()
        self._next_id = 0
        self._baseline = dict(self.counters)
        self._started_at: float | None = None
        self._last_progress = 0.0
        self._dispatched_any = False
        self._story: deque[tuple] = deque(maxlen=STORY_LENGTH)

    def _note(self, now: float, mb_id: int, what: str, worker: str | None, tries: int) -> None:
        # One entry serves the stories of both the mini-batch and the worker (see story()).
        self._story.append((mb_id, worker, now, what, tries))

    # -- helpers of the handlers --------------------------------------------------------------

    def _current(self, event) -> WorkerRecord | None:
        """The worker an event is about, or None when it comes from a replaced process."""
        worker = self.workers[event.worker]
        if event.incarnation != worker.restarts:
            self._story.append((type(event).__name__, worker.name, event.time, "stale", None))
            return None
        return worker

    def _start(self, worker: WorkerRecord, now: float, out: list) -> None:
        worker.restart(now)
        out.append(StartWorker(worker.name, worker.restarts))

    def _lose(self, worker: WorkerRecord, reason: str, kill: bool, out: list) -> None:
        worker.ending_from, worker.state = worker.state, "ending"
        out.append(EndProcess(worker.name, worker.restarts, reason, kill))

    def _finish(self, outcome: Outcome, reason: str) -> None:
        if self.outcome is not None:
            return
        polite = ()
        if outcome == "Completed":
            polite = tuple(w.name for w in self.workers.values() if w.state in READY)
        self.outcome = Finish(outcome, reason, polite)

    @property
    def holding_back(self) -> bool:
        """Whether so much waits for an earlier mini-batch that no new one should start.

        The earliest unfinished mini-batch is always running or waiting for a retry, never
        still in the input, so holding the input back cannot keep it from finishing."""
        return self.held_bytes > HELD_BYTES or len(self.held) > HELD_MINI_BATCHES

    @property
    def finished(self) -> bool:
        """Whether every mini-batch of the input is finished (held ones included)."""
        return (
            self.exhausted and not self.waiting and not any(w.queue for w in self.workers.values())
        )

    def input_wanted(self) -> int:
        """How many mini-batches of the input to form now, 0 when :meth:`wants_input` is
        false: the room of the workers that take mini-batches (counting mini-batches; past
        ``PREFETCH`` a worker's room also ends at ``PREFETCH_BYTES``, so some of them may
        wait to be sent)."""
        if self.waiting or self.exhausted or self.outcome is not None or self.holding_back:
            return 0
        if not self.mini_batches:
            return 1
        room = 0
        for worker in self.workers.values():  # a loop, not sum(): this runs every round
            if worker.state in READY:
                room += self._room(worker)
        return room

    def _has_room(self, worker: WorkerRecord) -> bool:
        # Called several times per mini-batch: the common answer comes first.
        queued = len(worker.queue)
        return queued < PREFETCH or (queued < worker.ahead and worker.queued_bytes < PREFETCH_BYTES)

    def _room(self, worker: WorkerRecord) -> int:
        """How many more mini-batches may be sent to ``worker`` now (past ``PREFETCH``, as many
        as its speed lets be queued, while their specs stay under ``PREFETCH_BYTES``)."""
        limit = max(PREFETCH, worker.ahead) if worker.queued_bytes < PREFETCH_BYTES else PREFETCH
        return max(limit - len(worker.queue), 0)

    def _dispatch(self, now: float, out: list) -> None:
        if not self.waiting or self.outcome is not None:
            return
        for worker in self.workers.values():
            while self.waiting and worker.state in READY and self._has_room(worker):
                flight = self.waiting.popleft()
                if not worker.queue:
                    worker.head_started = now
                worker.queue.append(flight)
                worker.state = "busy"
                worker.queued_bytes += flight.size
                self._dispatched_any = True
                mb = flight.mini_batch
                self.mini_batches[mb.id] = "sent"
                # _note's append, inline: this runs per mini-batch sent
                self._story.append((mb.id, worker.name, now, "sent", flight.tries))
                out.append(Send(worker.name, worker.restarts, mb))
            if not self.waiting:
                return

    def _finish_head(self, worker: WorkerRecord, mb_id: int, now: float) -> Try | None:
        if not worker.queue or worker.queue[0].mini_batch.id != mb_id:
            return None
        flight = worker.queue.popleft()
        worker.queued_bytes -= flight.size
        worker.head_started = now
        if not worker.queue and worker.state == "busy":
            worker.state = "idle"
        self._last_progress = now
        return flight

    def _failed_try(
        self,
        worker: WorkerRecord,
        flight: Try,
        now: float,
        error: tuple[str, str | None],
        span: tuple[float, float],
        out: list,
        n_items: int | None = None,
        exit_code: int | None = None,
    ) -> None:
        mb, run_id = flight.mini_batch, self.settings.run_id
        row = worker.error_row(
            run_id, now, mb.id, flight.tries, describe(mb.spec), *error, exit_code
        )
        out.append(RecordError(row))
        text = f"mini-batch {mb.id} try {flight.tries} failed on {worker.name}: {error[0]}"
        out.append(Log(text))
        if flight.tries < self.max_try:
            worker.retries += 1
            self.counters["retries"] += 1
            out.append(CountRetry())
            self.waiting.append(Try(mb, flight.tries + 1, flight.size))
            self.tries[mb.id] = flight.tries + 1
            self.mini_batches[mb.id] = "waiting"
            self._note(now, mb.id, "to retry", worker.name, flight.tries)
            return
        worker.failed += 1
        n = n_items if n_items is not None else (mb.n_items or 0)
        record = flight.record(
            run_id, worker.name, "failed", *span, succeeded=0, failed=n, error=error[0]
        )
        self._result(record, b"", now, out)

    def _result(self, record: dict, payload: bytes, now: float, out: list) -> None:
        """A mini-batch finished for good: counted, then recorded (in order, or held)."""
        mb_id, done = record["mb_id"], record["status"] == "done"
        counters = self.counters
        counters["mb_done" if done else "mb_failed"] += 1
        counters["items_done"] += record["succeeded"]
        counters["items_failed"] += record["failed"]
        self._story.append((mb_id, record["worker"], now, record["status"], record["tries"]))
        if not self.settings.preserve_order:
            self.mini_batches[mb_id] = "finished"
            out.append(RecordResult(record, payload))
            return
        self.held[mb_id] = (record, payload)
        self.held_bytes += len(payload)
        self.mini_batches[mb_id] = "held"
        while True:
            while self._next_id in self._before:
                self._before.discard(self._next_id)
                self._next_id += 1
            result = self.held.pop(self._next_id, None)
            if result is None:
                return
            self.held_bytes -= len(result[1])
            self.mini_batches[self._next_id] = "finished"
            out.append(RecordResult(*result))
            self._next_id += 1

    def _over_budget(self) -> str | None:
        """Why the error budget is exceeded, if it is."""
        c = self.counters
        return self.settings.budget.exceeded(c["items_failed"], c["mb_failed"], self.mb_total)

    def _watch(self, worker: WorkerRecord, now: float, out: list) -> None:
        if worker.queue and now - worker.head_started > self.timeout:
            mb = worker.queue[0].mini_batch
            reason = f"TimeoutError: run() of mini-batch {mb.id} exceeded {self.timeout_text}"
            self._lose(worker, reason, True, out)
            return
        beat = worker.heartbeat
        silent = now - (worker.started if beat is None else beat)
        limit = self.connect_limit if beat is None else self.heartbeat_timeout
        if not worker.queue and worker.exit_seen is None and silent > limit:
            # Outside run() the worker's heartbeat thread beats every few seconds; silence
            # means a frozen process (stopped, deadlocked, swapped out, cut off).
            doing = "starting" if worker.state == "starting" else "idle"
            reason = (
                f"no heartbeat for {silent:.0f}s while {doing} "
                f"(heartbeat_timeout={self.heartbeat_timeout:g}s)"
            )
            self._lose(worker, reason, True, out)

    def _stop_reason(self, now: float) -> str | None:
        """Why the run must stop now, if it must, once its work is not all done."""
        if all(w.state == "failed" for w in self.workers.values()):
            causes = sorted({w.error for w in self.workers.values() if w.error})
            return "no worker process could start: " + "; ".join(causes)
        s = self.settings
        busy = any(w.queue for w in self.workers.values())
        if (
            s.progress_update_timeout
            and busy
            and now - self._last_progress > s.progress_update_timeout
        ):
            return (
                f"progress_update_timeout={s.progress_update_timeout:g}s: no mini-batch "
                "finished in that time"
            )
        limit = s.first_task_creation_timeout
        if limit and not self._dispatched_any and now - self._started_at > limit:
            return f"first_task_creation_timeout={limit:g}s: no worker finished init() in that time"
        return None
