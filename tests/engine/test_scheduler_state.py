"""The scheduler's pure state, fault by fault, with no process, clock or file.

Each test feeds :class:`SchedulerState` the events a loop would (with the times they carry)
and reads the instructions it hands back. This file holds the harness (:class:`Run`), starting
and sending, and late messages from replaced processes. ``test_scheduler_state_faults.py``
holds the faults of worker processes (timeout, lost worker, init failure, stale heartbeat), and
``test_scheduler_state_outcomes.py`` what ends or holds a run (retries exhausted, the error
budget, cancel, a lost lease, preserve_order's hold-back).
"""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_parallelrun.engine.messages import Done, Failed, Ready
from jupyter_parallelrun.engine.mini_batch import MiniBatch
from jupyter_parallelrun.engine.scheduler_events import (
    AcceptConnection,
    Commit,
    ConnectionLost,
    DropConnection,
    EndProcess,
    Finish,
    InputExhausted,
    InputFormed,
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
    WorkerStarted,
)
from jupyter_parallelrun.engine.scheduler_state import (
    SchedulerSettings,
    SchedulerState,
    worker_names,
)

W0, W1 = "process000", "process001"
#: The run starts at this time (a clock's zero is no time a run ever sees).
T0 = 1_000_000.0


def of(kind: type, out: list) -> list:
    """The instructions of one kind, in order."""
    return [instruction for instruction in out if isinstance(instruction, kind)]


def mini_batch(mb_id: int, n_items: int = 1) -> MiniBatch:
    paths = [f"/data/item_{mb_id}_{i}.txt" for i in range(n_items)]
    return MiniBatch(mb_id, {"kind": "files", "paths": paths}, n_items)


class Run:
    """One step run's pure state, the test's clock (``now``), and the events a loop would feed
    it. Every call checks ``validate_state()`` and keeps what came out in ``out``."""

    def __init__(self, workers: int = 1, **settings: Any) -> None:
        names = worker_names(1, workers)
        self.state = SchedulerState(SchedulerSettings("step", names, **settings))
        self.now = T0
        self.out: list = []

    def __call__(self, *events: Any) -> list:
        out = self.state.handle(*events)
        self.state.validate_state()
        self.out += out
        return out

    def t(self, seconds: float) -> float:
        """The time ``seconds`` after the run started."""
        return T0 + seconds

    def at(self, seconds: float) -> Run:
        self.now = self.t(seconds)
        return self

    def inc(self, worker: str) -> int:
        return self.state.workers[worker].restarts

    def start(self, *ids: int, exhausted: bool = False, n_items: int = 1, size: int = 100) -> list:
        out = self(RunStarted(self.now))
        return out + self.form(*ids, exhausted=exhausted, n_items=n_items, size=size)

    def form(self, *ids: int, exhausted: bool = False, n_items: int = 1, size: int = 100) -> list:
        events = [InputFormed(self.now, mini_batch(i, n_items), size) for i in ids]
        return self(*events, *([InputExhausted(self.now)] if exhausted else []))

    def up(self, *workers: str) -> list:
        """The workers' processes start, connect and finish init()."""
        out = []
        for w in workers:
            inc, pid = self.inc(w), 100 + 10 * self.inc(w) + int(w[-1])
            out += self(
                WorkerStarted(self.now, w, inc, pid, None),
                WorkerConnected(self.now, w, inc, pid),
                Received(self.now, w, inc, Ready(0.5)),
            )
        return out

    def says(self, worker: str, message: Any, incarnation: int | None = None) -> list:
        inc = self.inc(worker) if incarnation is None else incarnation
        return self(Received(self.now, worker, inc, message))

    def done(self, worker: str, mb_id: int, n_items: int = 1, **kw: Any) -> list:
        n_ok, note, took = kw.get("n_ok", n_items), kw.get("note"), kw.get("took", 1.0)
        payload = kw.get("payload", f"row {mb_id}\n".encode())
        message = Done(mb_id, n_items, n_ok, payload, self.now - took, self.now, note)
        return self.says(worker, message, kw.get("incarnation"))

    def fail(self, worker: str, mb_id: int, n_items: int | None = 1, error: str = "E") -> list:
        return self.says(worker, Failed(mb_id, n_items, error, "trace", self.now - 1, self.now))

    def lose(self, worker: str, garbled: bool = False) -> list:
        return self(ConnectionLost(self.now, worker, self.inc(worker), "gone", garbled))

    def ended(self, worker: str, code: int | None = -9, host_lost: bool = False) -> list:
        """The process the last EndProcess for ``worker`` asked to end has ended."""
        asked = of(EndProcess, self.out)
        end = next(e for e in reversed(asked) if e.worker == worker)
        event = WorkerEnded(
            self.now, worker, end.incarnation, end.reason, end.kill, code, host_lost
        )
        return self(event)

    def tick(self) -> list:
        return self(Tick(self.now))

    def queue(self, worker: str) -> list[int]:
        return [flight.mini_batch.id for flight in self.state.workers[worker].queue]

    def waiting(self) -> list[tuple[int, int]]:
        return [(flight.mini_batch.id, flight.tries) for flight in self.state.waiting]


def ready_run(*ids: int, workers: int = 1, n_items: int = 1, **settings: Any) -> Run:
    """A run whose workers are all ready, with mini-batches ``ids`` formed (the input goes on)."""
    run = Run(workers, **settings)
    run.start(*ids, n_items=n_items)
    run.up(*[name for name, _ in worker_names(1, workers)])
    return run


# -- starting and sending ---------------------------------------------------------------------


def test_the_run_starts_every_worker_and_forms_its_first_mini_batch_meanwhile():
    run = Run(2)
    assert run.state.wants_input()
    out = run.start(0)
    assert out == [StartWorker(W0, 0), StartWorker(W1, 0)]
    assert run.state.mini_batches == {0: "waiting"}
    assert not run.state.wants_input()  # no worker could take a second one yet


def test_a_ready_worker_gets_two_mini_batches_ahead_and_others_get_the_rest():
    run = ready_run(0, 1, 2, 3, 4, workers=2)
    assert [(s.worker, s.mini_batch.id) for s in of(Send, run.out)] == [
        (W0, 0),
        (W0, 1),
        (W1, 2),
        (W1, 3),
    ]
    assert run.queue(W0) == [0, 1] and run.waiting() == [(4, 1)]
    assert run.state.workers[W0].state == "busy"


def test_a_quick_worker_is_sent_about_queued_seconds_of_work_ahead():
    run = ready_run(0, 1)
    run.done(W0, 0, took=0.002)  # 0.02 s of work is ten of these
    run.form(*range(2, 30))
    assert len(run.queue(W0)) == 10


def test_past_two_mini_batches_a_full_pipe_of_specs_stops_the_sending():
    run = Run()
    run.start(*range(6), size=40_000)
    run.up(W0)
    run.done(W0, 0, took=0.0001)
    assert run.queue(W0) == [1, 2] and run.waiting()[0] == (3, 1)


def test_each_send_names_the_incarnation_it_is_for():
    run = ready_run(0, 1, 2)
    run.lose(W0)
    run.ended(W0)
    run.up(W0)
    sends = [(s.mini_batch.id, s.incarnation) for s in of(Send, run.out)]
    assert sends == [(0, 0), (1, 0), (1, 1), (2, 1)]  # 0's retry waits behind 1 and 2


def test_a_second_hello_of_the_same_process_is_dropped():
    run = Run()
    run.start()
    assert run(WorkerConnected(run.t(0), W0, 0, 7)) == [AcceptConnection(W0)]
    assert of(DropConnection, run(WorkerConnected(run.t(0), W0, 0, 8))) == [DropConnection(W0)]


def test_a_mini_batch_formed_twice_or_after_the_end_is_refused():
    run = Run()
    run.start(0)
    with pytest.raises(ValueError, match="mini-batch 0 formed twice"):
        run.form(0)
    run.form(exhausted=True)
    with pytest.raises(ValueError, match="after the input's end"):
        run.form(1)


def test_an_event_about_a_worker_the_run_does_not_have_is_refused():
    with pytest.raises(KeyError):
        Run().state.handle(WorkerStarted(0, "process999", 0, 1, None))


def test_a_done_mini_batch_is_recorded_with_its_counts_and_the_rows():
    run = ready_run(0, n_items=3)
    [result] = of(RecordResult, run.done(W0, 0, n_items=3, n_ok=2, payload=b"a\nb\n"))
    assert result.payload == b"a\nb\n"
    assert {k: result.record[k] for k in ("mb_id", "status", "tries", "succeeded", "failed")} == {
        "mb_id": 0,
        "status": "done",
        "tries": 1,
        "succeeded": 2,
        "failed": 1,
    }
    assert run.state.counters == {
        "items_done": 2,
        "items_failed": 1,
        "mb_done": 1,
        "mb_failed": 0,
        "retries": 0,
    }


def test_items_without_a_result_are_recorded_as_an_error_with_the_reason():
    run = ready_run(0)
    [error] = of(RecordError, run.done(W0, 0, n_items=2, n_ok=1, note="run() returned 1 row"))
    assert (error.row["mb_id"], error.row["exception"]) == (0, "run() returned 1 row")


def test_time_passing_commits_and_an_empty_input_completes():
    run = Run()
    run.start()
    assert run.tick() == [Commit()]
    run.form(exhausted=True)
    assert run.tick() == [Finish("Completed", "", ())]


def test_a_completed_run_stops_its_ready_workers_politely():
    run = ready_run(0, workers=2)
    run.form(exhausted=True)
    run.done(W0, 0)
    assert of(Finish, run.tick()) == [Finish("Completed", "", (W0, W1))]


# -- late messages from replaced processes ------------------------------------------------------


def test_a_late_result_from_a_replaced_process_changes_nothing():
    run = ready_run(0, 1)
    run.lose(W0)
    run.ended(W0)
    run.up(W0)
    before = (run.queue(W0), dict(run.state.counters), dict(run.state.mini_batches))
    assert run.done(W0, 0, incarnation=0) == []
    assert run.says(W0, Ready(0.1), incarnation=0) == []
    assert run(ConnectionLost(run.t(0), W0, 0, "late", False)) == []
    assert run(ProcessExited(run.t(9), W0, 0)) == []
    assert (run.queue(W0), run.state.counters, run.state.mini_batches) == before
    assert ("stale" in [entry[1] for entry in run.state.story(W0)]) is True


def test_a_late_hello_of_a_process_declared_lost_is_dropped():
    run = Run(heartbeat_timeout=5)
    run.start()
    run.at(31).tick()  # silent while starting
    run.ended(W0, host_lost=True)  # else a process that never said hello is not started again
    out = run(WorkerConnected(run.t(32), W0, 0, 77))
    assert of(DropConnection, out) == [DropConnection(W0)]
    assert run(WorkerConnected(run.t(32), W0, 1, 78)) == [AcceptConnection(W0)]


def test_a_loss_reported_twice_ends_the_process_once():
    run = ready_run(0)
    run.lose(W0)
    assert run.lose(W0) == [] and run.tick() == [Commit()]
    run.ended(W0)
    assert run(WorkerEnded(run.t(1), W0, 0, "gone", False, -9)) == []
    assert run.state.tries == {0: 2}
