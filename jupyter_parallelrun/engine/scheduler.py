"""The scheduler: feeds mini-batches to worker processes and commits what comes back.

It runs inside the runner process, one step run at a time. Each worker gets up to
``PREFETCH`` mini-batches ahead so it never waits for the runner; the scheduler enforces
``run_invocation_timeout`` (a stuck call gets its worker killed and replaced), retries failed
tries up to ``run_max_try``, keeps the error budget, and hands finished mini-batches to its
:class:`~.commit.StepCommitter`, which commits them exactly once. Starting, connecting and ending
the worker processes is its :class:`~.worker_processes.WorkerProcesses`' part.
"""

from __future__ import annotations

import itertools
import pickle
import time
from collections import deque
from collections.abc import Collection, Iterator
from multiprocessing.connection import wait
from typing import Any

from ..settings import DEFAULT_HEARTBEAT_TIMEOUT
from ..store import RunStore
from .backends.base import Backend
from .budget import Budget, StepCanceled, StepFailed
from .commit import OutputUnwritable, StepCommitter
from .logs import StepLogs
from .mini_batch import MiniBatch, describe
from .output import AppendRowWriter
from .worker_processes import GarbledMessage, InFlight, Worker, WorkerProcesses, receive

#: Why a worker whose connection closed is lost.
ENDED = "the worker process ended unexpectedly"

#: Mini-batches sent ahead to each worker (one running, the rest queued in its pipe) ...
PREFETCH = 2
#: ... or more when its mini-batches are quick: about QUEUED_SECONDS of work, at most
#: PREFETCH_MAX, so that the worker never waits for a round of the runner's loop.
PREFETCH_MAX = 64
QUEUED_SECONDS = 0.02
#: Past PREFETCH, no more is sent while this many bytes of specs wait in a worker's pipe: a
#: full pipe would block the runner's send while the worker blocks sending its results.
PREFETCH_BYTES = 64 * 1024


class Scheduler:
    """Runs the mini-batches of one step run on a backend's workers.

    Parameters
    ----------
    store, run_id
        Where the step run's state is written.
    backend
        Starts and stops the worker processes.
    mini_batches
        The step's input, split (a stream; ids ascending). Already-committed ones are skipped
        by the caller.
    worker_spec
        What every worker needs to host the entry script (see ``worker.worker_main``).
    nodes, processes_per_node
        How many workers to start, and how they are grouped into nodes.
    writer
        The ``append_row`` output, or None for ``summary_only``.
    ordered_after
        For ``preserve_order``: the ids of mini-batches committed before (see StepCommitter).
    """

    def __init__(
        self,
        *,
        store: RunStore,
        run_id: str,
        backend: Backend,
        mini_batches: Iterator[MiniBatch],
        worker_spec: dict[str, Any],
        nodes: int,
        processes_per_node: int,
        writer: AppendRowWriter | None,
        logs: StepLogs,
        run_invocation_timeout: float,
        run_max_try: int,
        budget: Budget,
        progress_update_timeout: float | None = None,
        first_task_creation_timeout: float | None = None,
        task_overhead_timeout: float | None = None,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        counters: dict[str, int] | None = None,
        ordered_after: Collection[int] | None = None,
    ) -> None:
        self.store, self.run_id, self.backend = store, run_id, backend
        self.source = mini_batches
        self.logs = logs
        self.max_try = int(run_max_try)
        self.budget = budget
        self.progress_update_timeout = progress_update_timeout
        self.first_task_creation_timeout = first_task_creation_timeout
        self._started_at = time.time()
        self._dispatched_any = False
        self.retry: deque[InFlight] = deque()
        self.exhausted = False
        self.mb_total: int | None = None
        self.committer = StepCommitter(
            store,
            run_id,
            writer,
            logs,
            lambda: (self.processes.rows(run_id), self.mb_total),
            counters,
            ordered_after,
        )
        self.counters = self.committer.counters
        self._last_progress = time.time()
        self._last_cancel_check = 0.0
        self.processes = WorkerProcesses(
            backend,
            worker_spec,
            logs,
            nodes,
            processes_per_node,
            run_invocation_timeout=run_invocation_timeout,
            task_overhead_timeout=task_overhead_timeout,
            heartbeat_timeout=heartbeat_timeout,
        )
        self.workers = self.processes.workers

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Process every mini-batch; raises StepFailed or StepCanceled when the run stops."""
        # The workers start while the input is listed up to its first mini-batch (a folder of
        # a million files takes a second); for an empty input they are stopped at once.
        for worker in self.workers:
            self.processes.start(worker)
        finished = False
        try:
            first = next(self.source, None)
            if first is None:
                self.exhausted = True
            else:
                self.source = itertools.chain([first], self.source)
            while not self._finished():
                self.processes.take_arrivals()
                self._dispatch()
                conns = [w.conn for w in self.workers if w.conn is not None]
                if not conns:
                    time.sleep(0.05)
                for conn in wait(conns, timeout=0.05) if conns else ():
                    self._drain(self.processes.by_conn(conn))
                self._watch()
                self._commit()
                self._check_stop()
            finished = True
        finally:
            try:
                self._commit(force=True)
            finally:
                self.processes.stop_all(graceful=finished, handle=self._handle)
                self.committer.write_state(force=True)

    def _finished(self) -> bool:
        return self.exhausted and not self.retry and not any(w.queue for w in self.workers)

    # -- workers ----------------------------------------------------------------------------

    def _drain(self, worker: Worker) -> None:
        lost = self._read(worker)
        if lost is not None:
            # A process that sent junk is alive and of no more use: it is killed and replaced.
            self._lost(worker, lost, kill=lost != ENDED)

    def _read(self, worker: Worker) -> str | None:
        """Handle every message waiting on the worker's connection; once it has ended or sent
        something that is not a message, why it is lost."""
        try:
            while worker.conn is not None and worker.conn.poll():
                self._handle(worker, receive(worker.conn))
        except (EOFError, OSError):
            return ENDED
        except GarbledMessage as error:
            return str(error)
        return None

    def _handle(self, worker: Worker, message: tuple) -> None:
        kind, now = message[0], time.time()
        worker.heartbeat = now
        if kind == "ready":
            worker.state = "idle"
            where = f" on {worker.handle.host}" if worker.handle.host else ""
            self.logs.runner(f"{worker.name} ready{where} (init {message[1]:.2f}s)")
        elif kind == "init_failed":
            worker.state, worker.error = "failed", message[1]
            self.committer.add_error(
                worker.error_row(self.run_id, None, 0, "init()", message[1], message[2])
            )
            self.logs.runner(f"{worker.name} init() failed: {message[1]}")
            self.processes.close(worker)
        elif kind == "done":
            _, mb_id, n_items, n_ok, payload, began, ended, note = message
            flight = self._finish_head(worker, mb_id, now)
            n_failed = max(n_items - n_ok, 0)
            if note:
                # Items without a result are failed items: their inputs go in the failure
                # record with the reason, as every item must be in the output or there.
                self.committer.add_error(
                    worker.error_row(
                        self.run_id,
                        mb_id,
                        flight.tries,
                        describe(flight.mini_batch.spec),
                        note,
                        None,
                    )
                )
                self.logs.runner(f"mini-batch {mb_id} on {worker.name}: {note}")
            worker.done += 1
            took = max(ended - began, 1e-6)
            worker.mb_seconds = (
                took if worker.mb_seconds is None else (0.8 * worker.mb_seconds + 0.2 * took)
            )
            record = flight.record(
                self.run_id,
                worker,
                "done",
                began,
                ended,
                succeeded=n_ok,
                failed=n_failed,
                error=note,
            )
            self.committer.add_result(record, payload)
        elif kind == "error":
            _, mb_id, n_items, error, trace, began, ended = message
            flight = self._finish_head(worker, mb_id, now)
            self._failed_try(flight, worker, error, trace, began, ended, n_items)
        elif kind == "beat" and message[1] is not None:
            worker.rss, worker.cpu = message[1], message[2]
            self.logs.resources(worker.name, worker.handle.pid, worker.rss, worker.cpu)
        elif kind == "bye":
            worker.state = "stopped"

    def _finish_head(self, worker: Worker, mb_id: int, now: float) -> InFlight:
        flight = worker.queue.popleft()
        assert flight.mini_batch.id == mb_id, (flight.mini_batch.id, mb_id)
        worker.queued_bytes -= flight.size
        worker.head_started = now
        if not worker.queue and worker.state == "busy":
            worker.state = "idle"
        self._last_progress = now
        return flight

    def _failed_try(
        self,
        flight: InFlight,
        worker: Worker,
        error: str,
        trace: str | None,
        began: float,
        ended: float,
        n_items: int | None = None,
        exit_code: int | None = None,
    ) -> None:
        mb = flight.mini_batch
        self.committer.add_error(
            worker.error_row(
                self.run_id, mb.id, flight.tries, describe(mb.spec), error, trace, exit_code
            )
        )
        self.logs.runner(f"mini-batch {mb.id} try {flight.tries} failed on {worker.name}: {error}")
        if flight.tries < self.max_try:
            worker.retries += 1
            self.committer.add_retry()
            self.retry.append(InFlight(mb, flight.tries + 1))
            return
        worker.failed += 1
        n = n_items if n_items is not None else (mb.n_items or 0)
        record = flight.record(
            self.run_id, worker, "failed", began, ended, succeeded=0, failed=n, error=error
        )
        self.committer.add_result(record, b"")

    def _lost(self, worker: Worker, reason: str, *, kill: bool = False) -> None:
        """A worker died or was killed: fail its running try, requeue the rest, replace it."""
        if kill:
            self.backend.kill(worker.handle)
        else:
            # What the process sent before it ended comes first: a mini-batch it finished just
            # before dying is a result, and the try that failed is the one after it (a send that
            # found the pipe broken can notice the death before those messages were read).
            self._read(worker)
            if worker.state == "failed":  # it reported init() failing, and that is recorded
                return
            self.backend.join(worker.handle, timeout=2)
        reason, code = self.processes.ended(worker, reason, killed=kill)
        # A process that had not finished init() is not started again (a failing init() must
        # not loop), unless it went down with its host: then it starts on another.
        gave_up = worker.state == "starting" and not self.backend.host_lost(worker.handle)
        if worker.queue:
            head = worker.queue.popleft()
            self._failed_try(
                head, worker, reason, None, worker.head_started, time.time(), exit_code=code
            )
            self.retry.extendleft(reversed(worker.queue))
            worker.queue.clear()
            worker.queued_bytes = 0
        elif not gave_up:
            self.committer.add_error(
                worker.error_row(self.run_id, None, 0, "worker process", reason, None, code)
            )
        if gave_up:
            worker.state, worker.error = "failed", f"died before init() finished: {reason}"
            self.committer.add_error(
                worker.error_row(self.run_id, None, 0, "init()", worker.error, None, code)
            )
            return
        worker.restarts += 1
        self.processes.start(worker)

    # -- dispatching and watching ---------------------------------------------------------

    def _next_mini_batch(self) -> InFlight | None:
        if self.retry:
            return self.retry.popleft()
        if self.exhausted or self.committer.holding_back:
            return None
        mb = next(self.source, None)
        if mb is None:
            self.exhausted = True
            return None
        return InFlight(mb, 1)

    def _prefetch(self, worker: Worker) -> int:
        if worker.mb_seconds is None:
            return PREFETCH
        return max(PREFETCH, min(PREFETCH_MAX, int(QUEUED_SECONDS / worker.mb_seconds)))

    def _dispatch(self) -> None:
        for worker in self.workers:
            limit = self._prefetch(worker)
            while worker.state in ("idle", "busy") and len(worker.queue) < limit:
                if len(worker.queue) >= PREFETCH and worker.queued_bytes >= PREFETCH_BYTES:
                    break
                flight = self._next_mini_batch()
                if flight is None:
                    return
                if not worker.queue:
                    worker.head_started = time.time()
                worker.queue.append(flight)
                worker.state = "busy"
                self._dispatched_any = True
                message = ("mb", flight.mini_batch.id, flight.mini_batch.spec)
                data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
                flight.size = len(data)
                worker.queued_bytes += flight.size
                try:
                    worker.conn.send_bytes(data)
                except OSError:
                    self._lost(worker, ENDED)
                    break

    def _watch(self) -> None:
        for worker, reason, kill in self.processes.find_lost(time.time()):
            self._lost(worker, reason, kill=kill)
        if all(w.state == "failed" for w in self.workers):
            causes = sorted({w.error for w in self.workers if w.error})
            raise StepFailed("no worker process could start: " + "; ".join(causes))

    def _check_stop(self) -> None:
        now = time.time()
        reason = self.budget.exceeded(
            self.counters["items_failed"], self.counters["mb_failed"], self.mb_total
        )
        if reason:
            raise StepFailed(reason)
        if (
            self.progress_update_timeout
            and any(w.queue for w in self.workers)
            and now - self._last_progress > self.progress_update_timeout
        ):
            raise StepFailed(
                f"progress_update_timeout={self.progress_update_timeout:g}s: no mini-batch "
                "finished in that time"
            )
        if (
            self.first_task_creation_timeout
            and not self._dispatched_any
            and now - self._started_at > self.first_task_creation_timeout
        ):
            raise StepFailed(
                f"first_task_creation_timeout={self.first_task_creation_timeout:g}s: no worker "
                "finished init() in that time"
            )
        if now - self._last_cancel_check > 0.5:
            self._last_cancel_check = now
            run = self.store.get_run(self.run_id)
            if run and run["cancel_requested"]:
                raise StepCanceled("canceled")

    # -- committing -------------------------------------------------------------------------

    def _commit(self, force: bool = False) -> None:
        try:
            self.committer.commit(force=force)
        except OutputUnwritable as error:
            raise StepFailed(str(error)) from error
