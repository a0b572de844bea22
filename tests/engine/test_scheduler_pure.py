"""The scheduler's pure state as its loop drives it, and the runner-worker messages: no
processes, on purpose (issue 14). Lane fsmtest's suites cover every fault class; these pin the
contract the loop in scheduler.py relies on."""

from __future__ import annotations

import pickle

import pytest

from jupyter_parallelrun.engine.budget import Budget
from jupyter_parallelrun.engine.messages import (
    Beat,
    Done,
    Failed,
    GarbledMessage,
    InitFailed,
    Ready,
    RunMiniBatch,
    Stop,
    decode,
    encode,
)
from jupyter_parallelrun.engine.mini_batch import MiniBatch
from jupyter_parallelrun.engine.scheduler_events import (
    AcceptConnection,
    CancelRequested,
    CloseConnection,
    Commit,
    DropConnection,
    EndProcess,
    Finish,
    InputExhausted,
    InputFormed,
    LeaseLost,
    Received,
    RecordResult,
    RunStarted,
    Send,
    StartWorker,
    Tick,
    WorkerConnected,
    WorkerEnded,
)
from jupyter_parallelrun.engine.scheduler_records import Try
from jupyter_parallelrun.engine.scheduler_state import (
    InvalidState,
    SchedulerSettings,
    SchedulerState,
    worker_names,
)
from jupyter_parallelrun.engine.scheduler_steps import PREFETCH, PREFETCH_BYTES, PREFETCH_MAX


def _mb(mb_id: int) -> MiniBatch:
    return MiniBatch(mb_id, {"paths": [f"item_{mb_id}"]}, 1)


def _state(workers: int = 1, **settings) -> SchedulerState:
    state = SchedulerState(SchedulerSettings("step", worker_names(1, workers), **settings))
    assert state.handle(RunStarted(0.0)) == [
        StartWorker(name, 0) for name, _ in worker_names(1, workers)
    ]
    return state


def _ready(state: SchedulerState, name: str, incarnation: int = 0, at: float = 1.0) -> list:
    return state.handle(
        WorkerConnected(at, name, incarnation, 100 + incarnation),
        Received(at, name, incarnation, Ready(0.1)),
    )


def test_messages_travel_as_tagged_tuples_and_junk_is_refused():
    done = Done(3, 2, 1, b"row\n", 1.0, 2.0, "1 item without a result")
    assert encode(done) == ("done", 3, 2, 1, b"row\n", 1.0, 2.0, "1 item without a result")
    for message in (done, Ready(0.5), InitFailed("E: x", "tb"), Beat(None, None)):
        assert decode(pickle.loads(pickle.dumps(encode(message)))) == message
    assert decode(("mb", 0, {}), (RunMiniBatch, Stop)) == RunMiniBatch(0, {})
    for junk in (("mb", 0, {}), ("done", 1), ["ready", 1.0], "ready", ()):
        with pytest.raises(GarbledMessage, match="which is not a message"):
            decode(junk)


def test_the_first_mini_batch_is_formed_while_workers_start_and_sent_once_one_is_ready():
    state = _state()
    assert state.wants_input()
    assert state.handle(InputFormed(0.0, _mb(0), 40)) == []
    assert not state.wants_input() and state.mini_batches == {0: "waiting"}
    out = _ready(state, "process000")
    assert out[0] == AcceptConnection("process000")
    assert out[-1] == Send("process000", 0, _mb(0))
    assert state.wants_input()  # room for one more ahead
    state.validate_state()


def test_the_input_wanted_is_the_room_the_ready_workers_have():
    # The loop forms input_wanted() mini-batches at once; each is sent, none waits.
    state = _state(workers=2)
    assert state.input_wanted() == 1  # the first, while the workers start
    state.handle(InputFormed(0.0, _mb(0), 40))
    assert state.input_wanted() == 0  # it waits for a worker
    _ready(state, "process000")
    _ready(state, "process001")
    assert state.input_wanted() == 2 * PREFETCH - 1  # until a worker's speed is known
    formed = [InputFormed(1.0, _mb(i), 40) for i in range(1, 2 * PREFETCH)]
    sends = [o for o in state.handle(*formed) if isinstance(o, Send)]
    assert len(sends) == 2 * PREFETCH - 1 and not state.waiting and state.input_wanted() == 0
    # Quick mini-batches: up to PREFETCH_MAX ahead, as long as their bytes stay under the cap.
    state.handle(Received(1.0, "process000", 0, Done(0, 1, 1, b"", 1.0, 1.0 + 1e-6, None)))
    assert state.input_wanted() == PREFETCH_MAX - (PREFETCH - 1)
    formed = [InputFormed(2.0, _mb(i), PREFETCH_BYTES) for i in range(2 * PREFETCH, 50)]
    state.handle(*formed)
    assert state.input_wanted() == 0 and state.waiting  # a full pipe: they wait for room
    state.validate_state()


def test_a_timed_out_try_kills_the_worker_and_its_replacement_gets_the_retry():
    state = _state(run_invocation_timeout=10, run_max_try=2)
    state.handle(InputFormed(0.0, _mb(0), 40), InputExhausted(0.0))
    _ready(state, "process000")
    assert state.handle(Tick(5.0)) == [Commit()]
    (end, commit) = state.handle(Tick(12.0))
    assert end == EndProcess(
        "process000",
        0,
        "TimeoutError: run() of mini-batch 0 exceeded run_invocation_timeout=10s",
        True,
    )
    assert state.workers["process000"].state == "ending"
    out = state.handle(WorkerEnded(12.1, "process000", 0, end.reason, True, -9))
    assert StartWorker("process000", 1) in out
    assert state.mini_batches == {0: "waiting"} and state.tries == {0: 2}
    # What the killed process still sent is not taken for its replacement's words.
    late = Done(0, 1, 1, b"late\n", 11.0, 12.0, None)
    assert state.handle(Received(12.2, "process000", 0, late)) == []
    assert state.handle(WorkerConnected(12.3, "process000", 0, 100))[0] == DropConnection(
        "process000"
    )
    assert _ready(state, "process000", incarnation=1)[-1] == Send("process000", 1, _mb(0))
    out = state.handle(Received(13.0, "process000", 1, Done(0, 1, 1, b"row\n", 12.5, 13.0, None)))
    (result,) = [i for i in out if isinstance(i, RecordResult)]
    assert result.record["tries"] == 2 and result.payload == b"row\n"
    assert state.handle(Tick(13.1)) == [Finish("Completed", "", ("process000",))]
    assert [what for _, what, _, _ in state.story(0)] == [
        "formed", "sent", "to retry", "sent", "done"
    ]  # fmt: skip
    state.validate_state()


def test_retries_exhausted_count_against_the_budget_and_fail_the_run():
    state = _state(run_max_try=1, budget=Budget(allowed_failed_count=0))
    state.handle(InputFormed(0.0, _mb(0), 40), InputExhausted(0.0))
    _ready(state, "process000")
    out = state.handle(Received(2.0, "process000", 0, Failed(0, 1, "ValueError: x", "tb", 1, 2)))
    (result,) = [i for i in out if isinstance(i, RecordResult)]
    assert result.record["status"] == "failed" and state.counters["mb_failed"] == 1
    (finish,) = state.handle(Tick(2.1))
    assert finish.outcome == "Failed" and "allowed_failed_count=0 exceeded" in finish.reason
    assert finish.polite == ()  # a failed run kills its workers at once


def test_init_failing_everywhere_fails_the_run_and_is_not_retried():
    state = _state(workers=2)
    for name in ("process000", "process001"):
        state.handle(WorkerConnected(1.0, name, 0, 7))
        out = state.handle(Received(1.0, name, 0, InitFailed("ImportError: nope", "tb")))
        assert out[-1] == CloseConnection(name)
    (finish,) = state.handle(Tick(2.0))
    assert finish == Finish("Failed", "no worker process could start: ImportError: nope")


def test_cancel_and_a_lost_lease_stop_sending_at_once():
    state = _state(workers=2)
    for mb_id in range(3):
        state.handle(InputFormed(0.0, _mb(mb_id), 40))
    _ready(state, "process000")
    assert state.handle(CancelRequested(1.5)) == [Finish("Canceled", "canceled")]
    assert not any(isinstance(i, Send) for i in _ready(state, "process001"))
    assert not state.wants_input() and state.handle(Tick(2.0)) == []
    other = _state()
    assert other.handle(LeaseLost(1.0, "taken over")) == [Finish("LeaseLost", "taken over")]


def test_validate_state_catches_a_committed_mini_batch_queued_again():
    state = _state()
    state.handle(InputFormed(0.0, _mb(0), 40), InputExhausted(0.0))
    _ready(state, "process000")
    state.handle(Received(2.0, "process000", 0, Done(0, 1, 1, b"row\n", 1, 2, None)))
    state.validate_state()
    state.waiting.append(Try(_mb(0), 1, 40))  # the planted bug: a finished one to send again
    with pytest.raises(InvalidState, match="mini-batch 0 is finished elsewhere"):
        state.validate_state()
