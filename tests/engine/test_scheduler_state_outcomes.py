"""The scheduler's pure state: what ends a run or holds its work back, with no process.

Retries exhausted, the error budget, cancel, a lost lease, an output that cannot be written,
the run's own time limits, and preserve_order's holding of results and of new input. The
harness (:class:`Run`) is ``test_scheduler_state.py``'s.
"""

from __future__ import annotations

import pytest

from jupyter_parallelrun.engine import scheduler_steps
from jupyter_parallelrun.engine.budget import Budget
from jupyter_parallelrun.engine.messages import Bye, Done
from jupyter_parallelrun.engine.scheduler_events import (
    CancelRequested,
    Commit,
    CountRetry,
    Finish,
    LeaseLost,
    MiniBatchesCounted,
    OutputUnwritable,
    RecordError,
    RecordResult,
    Send,
    StartWorker,
    WorkersStopped,
)

from .test_scheduler_state import W0, W1, Run, of, ready_run


def recorded(run: Run) -> list[int]:
    """The ids of the mini-batches handed to the committer, in order."""
    return [result.record["mb_id"] for result in of(RecordResult, run.out)]


# -- retries exhausted ------------------------------------------------------------------------


def test_a_failing_mini_batch_is_tried_run_max_try_times_then_failed_for_good():
    run = ready_run(0, run_max_try=3, n_items=4)
    for _ in range(3):
        run.fail(W0, 0, n_items=4)
    [result] = of(RecordResult, run.out)
    assert (result.record["status"], result.record["tries"]) == ("failed", 3)
    assert (result.record["succeeded"], result.record["failed"], result.payload) == (0, 4, b"")
    assert [e.row["try"] for e in of(RecordError, run.out)] == [1, 2, 3]
    assert len(of(CountRetry, run.out)) == 2
    assert run.state.counters == {
        "items_done": 0,
        "items_failed": 4,
        "mb_done": 0,
        "mb_failed": 1,
        "retries": 2,
    }
    assert run.state.workers[W0].failed == 1 and run.state.workers[W0].retries == 2


def test_with_run_max_try_1_the_first_failure_is_final():
    run = ready_run(0, run_max_try=1)
    run.fail(W0, 0)
    assert run.state.mini_batches == {0: "finished"} and not of(CountRetry, run.out)


def test_a_try_that_could_not_count_its_items_fails_the_mini_batchs_own_count():
    run = ready_run(0, run_max_try=1, n_items=5)
    run.fail(W0, 0, n_items=None)
    assert of(RecordResult, run.out)[0].record["failed"] == 5


def test_a_retry_is_sent_after_what_already_waits():
    run = ready_run(0, 1, 2, 3)
    run.fail(W0, 0)
    assert run.queue(W0) == [1, 2] and run.waiting() == [(3, 1), (0, 2)]


def test_the_last_try_lost_with_its_process_fails_the_mini_batch_for_good():
    run = ready_run(0, run_max_try=2)
    run.fail(W0, 0)
    run.lose(W0)
    run.ended(W0, code=-11)
    [result] = of(RecordResult, run.out)
    assert result.record["tries"] == 2
    assert result.record["error"].startswith("gone (killed by signal 11, SIGSEGV")


def test_a_mini_batch_done_after_a_retry_counts_one_retry_and_its_rows():
    run = ready_run(0)
    run.fail(W0, 0)
    run.done(W0, 0)
    assert of(RecordResult, run.out)[0].record["tries"] == 2
    assert (run.state.counters["retries"], run.state.counters["mb_done"]) == (1, 1)


# -- error budget -----------------------------------------------------------------------------


def test_error_threshold_counts_failed_items():
    run = ready_run(0, 1, n_items=2, budget=Budget(error_threshold=2))
    run.done(W0, 0, n_items=2, n_ok=1)
    assert of(Finish, run.tick()) == []
    run.done(W0, 1, n_items=2, n_ok=0)
    [finish] = of(Finish, run.tick())
    assert finish == Finish("Failed", "error_threshold=2 exceeded: 3 input items failed")


def test_allowed_failed_count_counts_mini_batches_failed_for_good():
    run = ready_run(0, 1, run_max_try=1, budget=Budget(allowed_failed_count=1))
    run.fail(W0, 0)
    assert of(Finish, run.tick()) == []
    run.fail(W0, 1)
    [finish] = of(Finish, run.tick())
    assert finish.reason == "allowed_failed_count=1 exceeded: 2 mini-batches failed"


def test_allowed_failed_percent_waits_for_the_count_of_mini_batches():
    run = ready_run(0, 1, run_max_try=1, budget=Budget(allowed_failed_percent=10))
    run.fail(W0, 0)
    assert of(Finish, run.tick()) == []  # 1 of how many?
    run(MiniBatchesCounted(run.now, 4))
    [finish] = of(Finish, run.tick())
    assert finish.reason == (
        "allowed_failed_percent=10 exceeded: 1 of 4 mini-batches failed (25.0%)"
    )


def test_the_budget_counts_what_an_earlier_runner_committed():
    earlier = {"items_done": 5, "items_failed": 2, "mb_done": 5, "mb_failed": 2, "retries": 0}
    run = ready_run(7, counters=earlier, run_max_try=1, budget=Budget(allowed_failed_count=2))
    run.fail(W0, 7)
    assert of(Finish, run.tick())[0].reason.endswith("3 mini-batches failed")


def test_a_failed_run_sends_nothing_more_and_starts_no_process():
    run = ready_run(0, 1, 2, 3, workers=1, run_max_try=1, budget=Budget(allowed_failed_count=0))
    run.fail(W0, 0)
    run.tick()
    assert of(Send, run.done(W0, 1)) == []
    run.lose(W0)
    assert of(StartWorker, run.ended(W0)) == []
    assert run.state.outcome.outcome == "Failed"


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_ends_the_run_canceled_and_kills_every_worker():
    run = ready_run(0, 1, 2, workers=2)
    assert run(CancelRequested(run.now)) == [Finish("Canceled", "canceled", ())]


def test_after_cancel_results_that_arrive_are_still_recorded_but_nothing_is_sent():
    run = ready_run(0, 1, 2)
    run(CancelRequested(run.now))
    out = run.done(W0, 0)
    assert of(RecordResult, out) and not of(Send, out)
    assert run.tick() == []  # the outcome is decided: time changes nothing more


def test_after_cancel_a_lost_worker_is_not_replaced():
    run = ready_run(0)
    run(CancelRequested(run.now))
    run.lose(W0)
    assert of(StartWorker, run.ended(W0)) == []


def test_the_first_outcome_decided_stays():
    run = ready_run(0)
    run(CancelRequested(run.now))
    assert run(LeaseLost(run.now, "taken")) == [Finish("Canceled", "canceled", ())]


def test_the_workers_stopped_after_a_cancel_leave_a_valid_state():
    run = ready_run(0, 1, 2, workers=2)
    run(CancelRequested(run.now))
    run(WorkersStopped(run.now, {W0: -9, W1: -9}))
    assert {w.state for w in run.state.workers.values()} == {"stopped"}


# -- lost lease -------------------------------------------------------------------------------


def test_a_lost_lease_ends_the_run_with_its_reason():
    run = ready_run(0)
    reason = "this runner no longer owns run step: the run is owned by pid 9"
    assert run(LeaseLost(run.now, reason)) == [Finish("LeaseLost", reason, ())]


def test_after_a_lost_lease_nothing_is_sent_started_or_committed():
    run = ready_run(0, 1, 2, 3, workers=2, run_invocation_timeout=10)
    run(LeaseLost(run.now, "taken"))
    out = run.done(W0, 0) + run.at(30).tick()
    run.lose(W1)
    out += run.ended(W1)
    assert not of(Send, out) and not of(StartWorker, out) and not of(Commit, out)


# -- other ends -------------------------------------------------------------------------------


def test_an_output_that_cannot_be_written_fails_the_run():
    run = ready_run(0)
    out = run(OutputUnwritable(run.now, "cannot write the output file out.txt: disk full"))
    assert out == [Finish("Failed", "cannot write the output file out.txt: disk full", ())]


def test_progress_update_timeout_fails_a_run_where_nothing_finishes():
    run = ready_run(0, 1, run_invocation_timeout=600, progress_update_timeout=100)
    run.at(90).done(W0, 0)
    assert of(Finish, run.at(180).tick()) == []
    [finish] = of(Finish, run.at(191).tick())
    assert finish.reason == ("progress_update_timeout=100s: no mini-batch finished in that time")


def test_first_task_creation_timeout_fails_a_run_whose_workers_never_get_work():
    run = Run(first_task_creation_timeout=20)
    run.start(0)
    assert of(Finish, run.at(20).tick()) == []
    [finish] = of(Finish, run.at(21).tick())
    assert finish.reason.startswith("first_task_creation_timeout=20s: no worker finished init()")


def test_a_worker_saying_bye_unasked_does_not_strand_its_mini_batches():
    run = ready_run(0, 1)
    run.says(W0, Bye())
    run.form(exhausted=True)
    for _ in range(5):  # the loop's rounds, with a process that now behaves
        if run.state.workers[W0].state == "ending":
            run.ended(W0)
        if run.state.workers[W0].state == "starting":
            run.up(W0)
        for mb_id in run.queue(W0):
            run.done(W0, mb_id)
        run.now += 1
        if of(Finish, run.tick()):
            break
    assert of(Finish, run.out) == [Finish("Completed", "", (W0,))]
    assert sorted(recorded(run)) == [0, 1]


# -- preserve_order ---------------------------------------------------------------------------


def test_a_result_waits_until_every_earlier_mini_batch_finished():
    run = ready_run(0, 1, 2, workers=2, preserve_order=True)
    run.done(W1, 2)
    assert recorded(run) == [] and run.state.mini_batches[2] == "held"
    assert run.state.counters["mb_done"] == 1  # counted as decided, recorded once in order
    run.done(W0, 0)
    assert recorded(run) == [0]
    run.done(W0, 1)
    assert recorded(run) == [0, 1, 2] and not run.state.held


def test_a_mini_batch_failed_for_good_takes_its_place_in_the_order():
    run = ready_run(0, 1, 2, workers=2, preserve_order=True, run_max_try=1)
    run.done(W1, 2)
    run.fail(W0, 0)
    assert recorded(run) == [0]
    run.done(W0, 1)
    assert recorded(run) == [0, 1, 2]
    assert [r.record["status"] for r in of(RecordResult, run.out)] == ["failed", "done", "done"]


def test_a_retried_mini_batch_holds_back_those_after_it_until_it_is_done():
    run = ready_run(0, 1, 2, preserve_order=True)
    run.fail(W0, 0)
    run.done(W0, 1)
    run.done(W0, 2)
    assert recorded(run) == [] and sorted(run.state.held) == [1, 2]
    run.done(W0, 0)
    assert recorded(run) == [0, 1, 2]


def test_ids_an_earlier_runner_committed_count_as_already_there():
    run = Run(preserve_order=True, committed={0, 1, 3})
    run.start(2, 4)
    run.up(W0)
    run.done(W0, 2)
    run.done(W0, 4)
    assert recorded(run) == [2, 4]


def test_too_many_held_results_hold_back_new_input_but_not_retries(monkeypatch):
    monkeypatch.setattr(scheduler_steps, "HELD_MINI_BATCHES", 1)
    run = ready_run(0, 1, 2, workers=2, preserve_order=True)
    run.done(W1, 2)
    assert run.state.wants_input()  # one held: not too many yet
    run.form(3)
    run.done(W1, 3)
    assert run.state.holding_back and not run.state.wants_input()
    run.fail(W0, 0)  # the earliest unfinished one is retried all the same
    assert run.waiting() == [] and run.queue(W0) == [1, 0]
    run.done(W0, 1)
    run.done(W0, 0)
    assert recorded(run) == [0, 1, 2, 3] and run.state.wants_input()


def test_held_rows_past_held_bytes_hold_back_new_input(monkeypatch):
    monkeypatch.setattr(scheduler_steps, "HELD_BYTES", 10)
    run = ready_run(0, 1, 2, workers=2, preserve_order=True)
    run.says(W1, Done(2, 1, 1, b"x" * 11, run.now - 1, run.now, None))
    assert run.state.held_bytes == 11 and not run.state.wants_input()


def test_without_preserve_order_results_are_recorded_as_they_finish():
    run = ready_run(0, 1, 2, workers=2)
    run.done(W1, 2)
    run.done(W0, 0)
    assert recorded(run) == [2, 0] and run.state.held == {}


@pytest.mark.parametrize("ordered", [False, True])
def test_the_story_of_a_mini_batch_tells_its_tries_and_outcome(ordered):
    run = ready_run(0, preserve_order=ordered)
    run.fail(W0, 0)
    run.done(W0, 0)
    assert [(what, worker, tries) for _, what, worker, tries in run.state.story(0)] == [
        ("formed", None, 1),
        ("sent", W0, 1),
        ("to retry", W0, 1),
        ("sent", W0, 2),
        ("done", W0, 2),
    ]
    assert [entry[1] for entry in run.state.story(W0)] == ["sent", "to retry", "sent", "done"]


def test_an_input_found_empty_late_completes_the_run():
    run = Run(first_task_creation_timeout=20)
    run.start()
    run.at(25).form(exhausted=True)
    assert of(Finish, run.tick()) == [Finish("Completed", "", ())]
