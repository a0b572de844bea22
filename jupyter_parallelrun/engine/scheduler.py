"""The scheduler: feeds mini-batches to worker processes and commits what comes back.

It runs inside the runner process, one step run at a time. Each worker gets up to
``PREFETCH`` mini-batches ahead so it never waits for the runner; the scheduler enforces
``run_invocation_timeout`` (a stuck call gets its worker killed and replaced), retries failed
tries up to ``run_max_try``, keeps the error budget, and hands finished mini-batches to its
:class:`~.commit.StepCommitter`, which commits them exactly once.
"""

from __future__ import annotations

import contextlib
import itertools
import pickle
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Listener, wait
from queue import Empty, SimpleQueue
from typing import Any

from ..store import RunStore
from .backends.base import Backend, WorkerHandle
from .budget import Budget, StepCanceled, StepFailed
from .commit import OutputUnwritable, StepCommitter
from .logs import StepLogs
from .output import AppendRowWriter
from .partition import MiniBatch, describe

#: Mini-batches sent ahead to each worker (one running, the rest queued in its pipe) ...
PREFETCH = 2
#: ... or more when its mini-batches are quick: about QUEUED_SECONDS of work, at most
#: PREFETCH_MAX, so that the worker never waits for a round of the runner's loop.
PREFETCH_MAX = 64
QUEUED_SECONDS = 0.02
#: Past PREFETCH, no more is sent while this many bytes of specs wait in a worker's pipe: a
#: full pipe would block the runner's send while the worker blocks sending its results.
PREFETCH_BYTES = 64 * 1024


#: Seconds between noticing that a worker process ended and declaring it lost (see _watch).
EXIT_GRACE = 0.3


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


@dataclass
class _InFlight:
    mini_batch: MiniBatch
    tries: int
    size: int = 0


@dataclass
class _Worker:
    name: str
    node_id: int
    handle: WorkerHandle | None = None
    conn: Connection | None = None
    state: str = "starting"
    queue: deque[_InFlight] = field(default_factory=deque)
    head_started: float = 0.0
    done: int = 0
    failed: int = 0
    retries: int = 0
    restarts: int = 0
    heartbeat: float | None = None
    mb_seconds: float | None = None
    queued_bytes: int = 0
    rss: int | None = None
    cpu: float | None = None
    started: float = 0.0
    ended: float | None = None
    exit_code: int | None = None
    exit_seen: float | None = None
    error: str | None = None


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
        heartbeat_timeout: float = 60,
        counters: dict[str, int] | None = None,
        ordered_after: Collection[int] | None = None,
    ) -> None:
        self.store, self.run_id, self.backend = store, run_id, backend
        self.source = mini_batches
        self.worker_spec = worker_spec
        self.logs = logs
        self.timeout = float(run_invocation_timeout)
        self.max_try = int(run_max_try)
        self.budget = budget
        self.progress_update_timeout = progress_update_timeout
        self.first_task_creation_timeout = first_task_creation_timeout
        self.heartbeat_timeout = float(heartbeat_timeout)
        # Loading a mini-batch's input happens inside the worker's call, so the allowance for
        # that (task_overhead_timeout) is added to the call's own limit.
        self.timeout_text = f"run_invocation_timeout={self.timeout:g}s"
        if task_overhead_timeout:
            self.timeout += float(task_overhead_timeout)
            self.timeout_text += f" + task_overhead_timeout={task_overhead_timeout:g}s"
        self._started_at = time.time()
        self._dispatched_any = False
        self.workers = [
            _Worker(name=f"process{node * processes_per_node + index:03d}", node_id=node)
            for node in range(nodes)
            for index in range(processes_per_node)
        ]
        self.retry: deque[_InFlight] = deque()
        self.exhausted = False
        self.mb_total: int | None = None
        self.committer = StepCommitter(
            store,
            run_id,
            writer,
            logs,
            lambda: (self._worker_rows(), self.mb_total),
            counters,
            ordered_after,
        )
        self.counters = self.committer.counters
        self._last_progress = time.time()
        self._last_cancel_check = 0.0
        self._authkey = secrets.token_bytes(16)
        self._listener = Listener(
            address=backend.listen_address,
            family=backend.address_family,
            backlog=64,  # every worker connects at start; a TCP backlog of 1 would drop some
            authkey=self._authkey,
        )
        self._arrivals: SimpleQueue = SimpleQueue()
        threading.Thread(target=self._accept, daemon=True).start()

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Process every mini-batch; raises StepFailed or StepCanceled when the run stops."""
        # The workers start while the input is listed up to its first mini-batch (a folder of
        # a million files takes a second); for an empty input they are stopped at once.
        for worker in self.workers:
            self._start(worker)
        finished = False
        try:
            first = next(self.source, None)
            if first is None:
                self.exhausted = True
            else:
                self.source = itertools.chain([first], self.source)
            while not self._finished():
                self._take_arrivals()
                self._dispatch()
                conns = [w.conn for w in self.workers if w.conn is not None]
                if not conns:
                    time.sleep(0.05)
                for conn in wait(conns, timeout=0.05) if conns else ():
                    self._drain(self._by_conn(conn))
                self._watch()
                self._commit()
                self._check_stop()
            finished = True
        finally:
            try:
                self._commit(force=True)
            finally:
                self._stop_all(graceful=finished)

    def _finished(self) -> bool:
        return self.exhausted and not self.retry and not any(w.queue for w in self.workers)

    # -- workers ----------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                conn = self._listener.accept()
                hello = conn.recv()
            except (OSError, EOFError):
                return
            self._arrivals.put((hello[1], hello[2], conn))

    def _take_arrivals(self) -> None:
        while True:
            try:
                name, pid, conn = self._arrivals.get_nowait()
            except Empty:
                return
            worker = next(w for w in self.workers if w.name == name)
            worker.conn, worker.handle.pid = conn, pid

    def _start(self, worker: _Worker) -> None:
        spec = {**self.worker_spec, "log_file": str(self.logs.worker_log(worker.name))}
        worker.state, worker.conn, worker.started = "starting", None, time.time()
        worker.exit_code = worker.error = worker.exit_seen = None
        worker.handle = self.backend.start_worker(
            worker.name, worker.node_id, self._listener.address, self._authkey, spec
        )

    def _by_conn(self, conn: Connection) -> _Worker:
        return next(w for w in self.workers if w.conn is conn)

    def _drain(self, worker: _Worker) -> None:
        if not self._read(worker):
            self._lost(worker, "the worker process ended unexpectedly")

    def _read(self, worker: _Worker) -> bool:
        """Handle every message waiting on the worker's connection; False once it has ended."""
        try:
            while worker.conn is not None and worker.conn.poll():
                self._handle(worker, worker.conn.recv())
        except (EOFError, OSError):
            return False
        return True

    def _handle(self, worker: _Worker, message: tuple) -> None:
        kind, now = message[0], time.time()
        worker.heartbeat = now
        if kind == "ready":
            worker.state = "idle"
            where = f" on {worker.handle.host}" if worker.handle.host else ""
            self.logs.runner(f"{worker.name} ready{where} (init {message[1]:.2f}s)")
        elif kind == "init_failed":
            worker.state, worker.error = "failed", message[1]
            self.committer.add_error(
                self._error_row(None, 0, "init()", worker, message[1], message[2])
            )
            self.logs.runner(f"{worker.name} init() failed: {message[1]}")
            self._close(worker)
        elif kind == "done":
            _, mb_id, n_items, n_ok, payload, began, ended = message
            flight = self._finish_head(worker, mb_id, now)
            n_failed = max(n_items - n_ok, 0)
            worker.done += 1
            took = max(ended - began, 1e-6)
            worker.mb_seconds = (
                took if worker.mb_seconds is None else (0.8 * worker.mb_seconds + 0.2 * took)
            )
            self.committer.add_result(
                self._record(flight, worker, "done", began, ended, succeeded=n_ok, failed=n_failed),
                payload,
            )
        elif kind == "error":
            _, mb_id, n_items, error, trace, began, ended = message
            flight = self._finish_head(worker, mb_id, now)
            self._failed_try(flight, worker, error, trace, began, ended, n_items)
        elif kind == "beat" and message[1] is not None:
            worker.rss, worker.cpu = message[1], message[2]
            self.logs.resources(worker.name, worker.handle.pid, worker.rss, worker.cpu)
        elif kind == "bye":
            worker.state = "stopped"

    def _finish_head(self, worker: _Worker, mb_id: int, now: float) -> _InFlight:
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
        flight: _InFlight,
        worker: _Worker,
        error: str,
        trace: str | None,
        began: float,
        ended: float,
        n_items: int | None = None,
        exit_code: int | None = None,
    ) -> None:
        mb = flight.mini_batch
        self.committer.add_error(
            self._error_row(mb.id, flight.tries, describe(mb.spec), worker, error, trace, exit_code)
        )
        self.logs.runner(f"mini-batch {mb.id} try {flight.tries} failed on {worker.name}: {error}")
        if flight.tries < self.max_try:
            worker.retries += 1
            self.counters["retries"] += 1
            self.retry.append(_InFlight(mb, flight.tries + 1))
            return
        worker.failed += 1
        n = n_items if n_items is not None else (mb.n_items or 0)
        record = self._record(
            flight, worker, "failed", began, ended, succeeded=0, failed=n, error=error
        )
        self.committer.add_result(record, b"")

    def _lost(self, worker: _Worker, reason: str, *, kill: bool = False) -> None:
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
        code = self.backend.exit_code(worker.handle)
        if code is not None and code < 0:
            reason += f" (killed by signal {-code}, {_signal_name(-code)}"
            if -code == signal.SIGKILL and not kill:
                reason += "; the kernel kills processes out of memory this way"
            reason += ")"
        elif code is not None:
            reason += f" (exit code {code})"
        where = f" on {worker.handle.host}" if worker.handle.host else ""
        self.logs.runner(f"{worker.name} (pid {worker.handle.pid}{where}) lost: {reason}")
        self._close(worker)
        worker.exit_code = code
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
                self._error_row(None, 0, "worker process", worker, reason, None, code)
            )
        if gave_up:
            worker.state, worker.error = "failed", f"died before init() finished: {reason}"
            self.committer.add_error(
                self._error_row(None, 0, "init()", worker, worker.error, None, code)
            )
            return
        worker.restarts += 1
        self._start(worker)

    def _close(self, worker: _Worker) -> None:
        if worker.conn is not None:
            worker.conn.close()
            worker.conn = None
        worker.ended = time.time()

    def _stop_all(self, graceful: bool) -> None:
        """End every worker: those that initialised get ``stop`` (and run ``shutdown()``) when
        the work is done; the rest, and all of them when the run failed or was canceled, are
        killed at once."""
        self._take_arrivals()
        polite = [w for w in self.workers if graceful and w.conn and w.state in ("idle", "busy")]
        for worker in polite:
            with contextlib.suppress(OSError):
                worker.conn.send(("stop",))
        deadline = time.time() + 10
        for worker in polite:
            self._wait_bye(worker, deadline)
        started = [w for w in self.workers if w.handle is not None]
        # After "bye" the worker has run shutdown() and flushed its log; what is left is
        # interpreter teardown (a second or more with TensorFlow loaded), not worth waiting.
        self.backend.kill_all(
            [w.handle for w in started if self.backend.exit_code(w.handle) is None]
        )
        for worker in started:
            said_bye = worker.state == "stopped"
            worker.exit_code = 0 if said_bye else self.backend.exit_code(worker.handle)
            self._close(worker)
            if worker.state != "failed":
                worker.state = "stopped"
        self._listener.close()
        self.committer.write_state(force=True)

    def _wait_bye(self, worker: _Worker, deadline: float) -> None:
        try:
            while worker.state != "stopped" and worker.conn.poll(max(0.0, deadline - time.time())):
                self._handle(worker, worker.conn.recv())
        except (EOFError, OSError):
            pass

    # -- dispatching and watching ---------------------------------------------------------

    def _next_mini_batch(self) -> _InFlight | None:
        if self.retry:
            return self.retry.popleft()
        if self.exhausted or self.committer.holding_back:
            return None
        mb = next(self.source, None)
        if mb is None:
            self.exhausted = True
            return None
        return _InFlight(mb, 1)

    def _prefetch(self, worker: _Worker) -> int:
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
                    self._lost(worker, "the worker process ended unexpectedly")
                    break

    def _watch(self) -> None:
        now = time.time()
        for worker in self.workers:
            if worker.state in ("failed", "stopped"):
                continue
            if worker.queue and now - worker.head_started > self.timeout:
                mb = worker.queue[0].mini_batch
                self._lost(
                    worker,
                    f"TimeoutError: run() of mini-batch {mb.id} exceeded {self.timeout_text}",
                    kill=True,
                )
            elif self.backend.exit_code(worker.handle) is not None:
                # What a process said before it ended (its hello, init() failing) may still be
                # on its way through the accept thread: give it EXIT_GRACE to arrive and be
                # read, so that the cause the process reported is what the run records.
                worker.exit_seen = worker.exit_seen or now
                if now - worker.exit_seen > EXIT_GRACE and not (
                    worker.conn is not None and worker.conn.poll()
                ):
                    self._lost(worker, "the worker process ended unexpectedly")
            elif not worker.queue and now - (worker.heartbeat or worker.started) > (
                self.heartbeat_timeout
            ):
                # Outside run() the worker's heartbeat thread beats every few seconds; silence
                # means a frozen process (stopped, deadlocked, swapped out, cut off).
                self._lost(
                    worker,
                    f"no heartbeat for {now - (worker.heartbeat or worker.started):.0f}s while "
                    f"{'starting' if worker.state == 'starting' else 'idle'} "
                    f"(heartbeat_timeout={self.heartbeat_timeout:g}s)",
                    kill=True,
                )
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

    def _record(self, flight, worker, status, began, ended, *, succeeded, failed, error=None):
        mb = flight.mini_batch
        return {
            "run_id": self.run_id,
            "mb_id": mb.id,
            "spec": mb.spec,
            "n_items": succeeded + failed,
            "status": status,
            "tries": flight.tries,
            "worker": worker.name,
            "started": began,
            "ended": ended,
            "succeeded": succeeded,
            "failed": failed,
            "error": error,
            "output_end": None,
        }

    def _error_row(self, mb_id, try_, item, worker, exception, trace, exit_code=None):
        return {
            "run_id": self.run_id,
            "mb_id": mb_id,
            "try": try_,
            "item": item,
            "worker": worker.name,
            "exception": exception,
            "traceback": trace,
            "time": time.time(),
            "pid": worker.handle.pid if worker.handle else None,
            "exit_code": exit_code,
        }

    def _commit(self, force: bool = False) -> None:
        try:
            self.committer.commit(force=force)
        except OutputUnwritable as error:
            raise StepFailed(str(error)) from error

    def _worker_rows(self) -> list[dict[str, Any]]:
        """The ``workers`` table's rows for this step run."""
        return [
            {
                "run_id": self.run_id,
                "name": w.name,
                "node_id": w.node_id,
                "pid": w.handle.pid if w.handle else None,
                "host": w.handle.host if w.handle else None,
                "state": w.state,
                "current_mb": w.queue[0].mini_batch.id if w.queue else None,
                "done": w.done,
                "failed": w.failed,
                "retries": w.retries,
                "restarts": w.restarts,
                "heartbeat": w.heartbeat,
                "rss": w.rss,
                "cpu": w.cpu,
                "started": w.started,
                "ended": w.ended,
                "exit_code": w.exit_code,
                "error": w.error,
            }
            for w in self.workers
        ]
