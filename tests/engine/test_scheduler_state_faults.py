"""The scheduler's pure state: the faults of worker processes, with no process.

A run call over its limit, a process that died, sent junk or answered out of turn, an init()
that failed, and a worker gone silent. The harness (:class:`Run`) is ``test_scheduler_state.py``'s.
"""

from __future__ import annotations

from jupyter_parallelrun.engine.messages import Beat, InitFailed, Ready
from jupyter_parallelrun.engine.scheduler_events import (
    CloseConnection,
    EndProcess,
    Finish,
    ProcessExited,
    RecordError,
    StartWorker,
)

from .test_scheduler_state import W0, W1, Run, of, ready_run

# -- timeout ----------------------------------------------------------------------------------


def test_a_run_call_over_run_invocation_timeout_gets_its_process_killed():
    run = ready_run(0, run_invocation_timeout=60)
    assert of(EndProcess, run.at(60).tick()) == []
    [end] = of(EndProcess, run.at(60.5).tick())
    assert end == EndProcess(
        W0, 0, "TimeoutError: run() of mini-batch 0 exceeded run_invocation_timeout=60s", True
    )
    assert run.state.workers[W0].state == "ending"


def test_task_overhead_timeout_is_added_to_the_limit_of_a_call():
    run = ready_run(0, run_invocation_timeout=60, task_overhead_timeout=5)
    assert of(EndProcess, run.at(64).tick()) == []
    [end] = of(EndProcess, run.at(65.5).tick())
    assert "run_invocation_timeout=60s + task_overhead_timeout=5s" in end.reason


def test_a_timed_out_try_is_retried_after_the_rest_of_that_workers_queue():
    run = ready_run(0, 1, 2, workers=1, run_invocation_timeout=10)
    run.at(11).tick()
    out = run.ended(W0)
    [error] = of(RecordError, out)
    assert (error.row["mb_id"], error.row["try"]) == (0, 1)
    assert "killed by signal 9, SIGKILL)" in error.row["exception"]
    assert run.waiting() == [(1, 1), (2, 1), (0, 2)]
    assert of(StartWorker, out) == [StartWorker(W0, 1)]
    assert run.state.counters["retries"] == 1


def test_the_limit_of_the_next_mini_batch_starts_when_the_one_before_it_finishes():
    run = ready_run(0, 1, run_invocation_timeout=60)
    run.at(50).done(W0, 0)
    assert of(EndProcess, run.at(100).tick()) == []
    assert of(EndProcess, run.at(110.5).tick())


# -- lost worker ------------------------------------------------------------------------------


def test_a_dead_worker_costs_one_try_of_its_running_mini_batch_only():
    run = ready_run(0, 1, 2, workers=2)
    assert of(EndProcess, run.lose(W0)) == [EndProcess(W0, 0, "gone", False)]
    out = run.ended(W0, code=-9)
    [error] = of(RecordError, out)
    assert error.row["exception"] == (
        "gone (killed by signal 9, SIGKILL; the kernel kills processes out of memory this way)"
    )
    assert (error.row["exit_code"], error.row["try"]) == (-9, 1)
    assert run.queue(W1) == [2, 1] and run.waiting() == [(0, 2)]
    assert run.state.tries == {0: 2, 1: 1, 2: 1}


def test_a_worker_that_sent_junk_is_killed_not_waited_for():
    run = ready_run(0)
    assert of(EndProcess, run.lose(W0, garbled=True)) == [EndProcess(W0, 0, "gone", True)]


def test_an_exit_code_is_given_exit_grace_for_what_the_process_said_before():
    run = ready_run(0)
    assert run(ProcessExited(run.t(1.0), W0, 0)) == []
    assert run(ProcessExited(run.t(1.2), W0, 0)) == []
    assert run(ProcessExited(run.t(1.2), W0, 0, unread=True)) == []
    [end] = of(EndProcess, run(ProcessExited(run.t(1.4), W0, 0)))
    assert end == EndProcess(W0, 0, "the worker process ended unexpectedly", False)


def test_while_its_messages_wait_to_be_read_an_ended_process_is_not_lost():
    run = ready_run(0)
    run(ProcessExited(run.t(1.0), W0, 0))
    assert run(ProcessExited(run.t(5.0), W0, 0, unread=True)) == []
    run.done(W0, 0)  # the result it sent before ending counts
    assert run.state.mini_batches == {0: "finished"}


def test_an_idle_worker_lost_is_recorded_as_its_process_and_started_again():
    run = ready_run()
    run.lose(W0)
    out = run.ended(W0, code=1)
    [error] = of(RecordError, out)
    assert (error.row["item"], error.row["exception"]) == ("worker process", "gone (exit code 1)")
    assert of(StartWorker, out) == [StartWorker(W0, 1)]
    assert run.state.workers[W0].restarts == 1


def test_a_process_lost_before_init_finished_is_not_started_again():
    run = Run(2)
    run.start(0)
    run.up(W1)
    run.lose(W0)
    out = run.ended(W0, code=1)
    assert of(StartWorker, out) == []
    record = run.state.workers[W0]
    assert (record.state, record.error) == (
        "failed",
        "died before init() finished: gone (exit code 1)",
    )
    assert [e.row["item"] for e in of(RecordError, out)] == ["init()"]


def test_a_process_that_went_down_with_its_host_starts_again_elsewhere():
    run = Run()
    run.start(0)
    run.lose(W0)
    assert of(StartWorker, run.ended(W0, host_lost=True)) == [StartWorker(W0, 1)]


def test_an_answer_for_a_mini_batch_the_worker_was_not_running_loses_it():
    run = ready_run(0, 1)
    [end] = of(EndProcess, run.done(W0, 1))
    assert end.kill and "answered for mini-batch 1 while running 0" in end.reason


# -- init failure -----------------------------------------------------------------------------


def test_init_failing_in_one_process_leaves_the_other_working():
    run = Run(2)
    run.start(0, 1, 2)
    out = run.says(W0, InitFailed("ImportError: no module x", "tb"))
    assert of(CloseConnection, out) == [CloseConnection(W0)]
    assert [e.row["item"] for e in of(RecordError, out)] == ["init()"]
    run.up(W1)
    assert run.queue(W1) == [0, 1] and run.state.workers[W0].state == "failed"
    assert of(StartWorker, run.out) == [StartWorker(W0, 0), StartWorker(W1, 0)]


def test_no_process_that_can_initialise_fails_the_run_with_the_causes():
    run = Run(2)
    run.start(0)
    run.says(W0, InitFailed("ImportError: x", "tb"))
    run.says(W1, InitFailed("ImportError: x", "tb"))
    [finish] = of(Finish, run.tick())
    assert finish == Finish("Failed", "no worker process could start: ImportError: x")


def test_a_failed_worker_says_nothing_more_that_counts():
    run = Run()
    run.start(0)
    run.says(W0, InitFailed("E", "tb"))
    assert run.says(W0, Ready(0.1)) == [] and run.state.workers[W0].state == "failed"


# -- stale heartbeat --------------------------------------------------------------------------


def test_an_idle_worker_silent_past_heartbeat_timeout_is_killed():
    run = ready_run(heartbeat_timeout=60)
    assert of(EndProcess, run.at(60).tick()) == []
    [end] = of(EndProcess, run.at(61).tick())
    assert end == EndProcess(W0, 0, "no heartbeat for 61s while idle (heartbeat_timeout=60s)", True)


def test_every_message_is_a_heartbeat():
    run = ready_run(heartbeat_timeout=60)
    run.at(50).says(W0, Beat(None, None))
    assert of(EndProcess, run.at(100).tick()) == []
    assert of(EndProcess, run.at(110.5).tick())


def test_a_worker_inside_run_is_judged_by_its_call_limit_not_its_heartbeat():
    run = ready_run(0, heartbeat_timeout=10, run_invocation_timeout=600)
    assert of(EndProcess, run.at(500).tick()) == []


def test_a_process_not_yet_connected_gets_the_connect_grace():
    run = Run(heartbeat_timeout=5)
    run.start()
    assert of(EndProcess, run.at(29).tick()) == []
    [end] = of(EndProcess, run.at(31).tick())
    assert "while starting (heartbeat_timeout=5s)" in end.reason


def test_a_replacement_does_not_inherit_a_stale_heartbeat():
    run = ready_run(heartbeat_timeout=10)
    run.at(11).tick()
    run.ended(W0)
    assert run.state.workers[W0].heartbeat is None
    assert of(EndProcess, run.at(30).tick()) == []  # the new process has the connect grace
    run.up(W0)
    assert of(EndProcess, run.at(40).tick()) == []
    assert of(EndProcess, run.at(41).tick())


def test_a_worker_whose_exit_was_seen_is_not_killed_for_silence_too():
    run = ready_run(heartbeat_timeout=10)
    run(ProcessExited(run.t(5), W0, 0, unread=True))
    assert of(EndProcess, run.at(20).tick()) == []


def test_a_heartbeat_at_time_zero_counts():
    run = Run(heartbeat_timeout=10)
    run.t = lambda seconds: seconds  # this run's clock starts at 0
    run.at(0).start()
    run.up(W0)
    assert of(EndProcess, run.at(11).tick())
