"""A stateful property test of the scheduler's pure state (Hypothesis's rule-based machines).

:class:`SchedulerMachine` plays the loop and the worker processes around a
:class:`SchedulerState` (``test_scheduler_properties_loop.py``'s :class:`Loop` carries out the
instructions the state hands out: a process to start, a mini-batch to send, a process to end)
and lets Hypothesis pick what happens next, in any order: results, failed tries, deaths, junk on
the pipe, exit codes, time passing (timeouts, silence), cancels, a lost lease, and late messages
from processes already replaced. The loop's own ledger of what was sent and recorded, not the
state's word, backs the invariants checked after every step:

- each mini-batch formed is in exactly one place (waiting, one worker's queue, held, recorded),
  and the state's ``mini_batches`` says the same;
- a mini-batch recorded or held is never sent again, and none is recorded twice;
- no mini-batch is tried more than ``run_max_try`` times, and each record's ``tries`` counts its
  failed tries;
- the counters equal an earlier runner's plus the sum of the outcomes decided;
- with ``preserve_order``, the ids recorded are the ones after those committed before, in order;
- once the run's outcome is decided nothing is sent and no process started, and a late message
  from a replaced process changes nothing.

At the end of each example the run is driven to its end, to check it always gets there.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from jupyter_parallelrun.engine import scheduler_steps
from jupyter_parallelrun.engine.budget import Budget
from jupyter_parallelrun.engine.messages import Beat, Done, Failed, Ready
from jupyter_parallelrun.engine.scheduler_events import (
    CancelRequested,
    ConnectionLost,
    DropConnection,
    LeaseLost,
    Log,
    MiniBatchesCounted,
    OutputUnwritable,
    ProcessExited,
    Received,
    RunStarted,
    Tick,
    WorkerConnected,
    WorkerEnded,
)
from jupyter_parallelrun.engine.scheduler_state import SchedulerSettings, worker_names
from jupyter_parallelrun.engine.scheduler_steps import HELD_MINI_BATCHES

from .test_scheduler_properties_loop import EXIT_LATE, RESULTS, STEPS, WORK, Loop


class SchedulerMachine(Loop, RuleBasedStateMachine):
    """The loop and the worker processes around one :class:`SchedulerState`."""

    @initialize(
        workers=st.integers(1, 3),
        run_max_try=st.integers(1, 3),
        preserve_order=st.booleans(),
        n_input=st.integers(0, 8),
        before=st.integers(0, 2),
        items=st.lists(st.integers(1, 3), min_size=10, max_size=10),
        budget=st.sampled_from([Budget(), Budget(error_threshold=3), Budget(-1, 1, 40.0)]),
        limits=st.sampled_from([(None, None), (50.0, 100.0)]),
        warm=st.booleans(),
        hold=st.sampled_from([None, 1, 2]),
    )
    def start(
        self,
        workers,
        run_max_try,
        preserve_order,
        n_input,
        before,
        items,
        budget,
        limits,
        warm,
        hold,
    ):
        # preserve_order's hold-back, at a few held mini-batches instead of 10,000 (put back in
        # teardown), so that new input waits for the earliest unfinished one in these runs.
        scheduler_steps.HELD_MINI_BATCHES = hold or HELD_MINI_BATCHES
        earlier = dict(items_done=before, items_failed=0, mb_done=before, mb_failed=0, retries=0)
        config = SchedulerSettings(
            "step",
            worker_names(1, workers),
            run_max_try=run_max_try,
            run_invocation_timeout=10,
            heartbeat_timeout=20,
            budget=budget,
            progress_update_timeout=limits[0],
            first_task_creation_timeout=limits[1],
            preserve_order=preserve_order,
            committed=range(before),
            counters=earlier,
        )
        self.begin(config, n_input, items)
        self.feed(RunStarted(self.now))
        for process in list(self.processes.values()) if warm else ():  # a quick start
            self.start_step(process)
            self.start_step(process)
            self.init_ends(process, fails=False)

    @rule()
    def counted(self) -> None:
        if self.state.mb_total is None and not self.over:
            self.feed(MiniBatchesCounted(self.now, self.last_id))

    # -- worker processes -------------------------------------------------------------------

    @rule(pick=st.integers(0, 5), how=st.sampled_from(WORK))
    def works(self, pick: int, how: str) -> None:
        """A process does its next thing: it starts, says hello, finishes init() (or fails
        it), answers for its oldest mini-batch, or beats. What a process being ended says
        is discarded by the state."""
        chosen = self.live(lambda p: p.end is None or p.pipe)
        if not chosen:
            return
        process = chosen[pick % len(chosen)]
        if process.end is not None:
            self.answer(process, how if how in RESULTS else "ok")
        elif not process.connected:
            self.start_step(process)
            self.start_step(process) if how != "hello only" else None
        elif not process.ready:
            self.init_ends(process, fails=how == "init fails")
        elif process.pipe and how in RESULTS:
            self.answer(process, how)
        else:
            self.received(process, Beat(10_000, 0.5))

    @rule(pick=st.integers(0, 5), how=st.sampled_from(["closed", "junk", "exit", "lives"]))
    def process_dies(self, pick: int, how: str) -> None:
        chosen = self.live(lambda p: p.started and how != "lives")
        if not chosen:
            return
        process = chosen[pick % len(chosen)]
        key = (process.worker, process.incarnation)
        if how == "junk":  # it lives on, but is of no more use
            self.feed(ConnectionLost(self.now, *key, "junk on the pipe", True))
            return
        process.dead = True
        if how == "closed":
            self.feed(ConnectionLost(self.now, *key, "the worker process ended unexpectedly"))
        else:
            self.feed(ProcessExited(self.now, *key))

    @rule(pick=st.integers(0, 5), code=st.sampled_from([-9, 1, None]), host_lost=st.booleans())
    def process_ended(self, pick: int, code, host_lost: bool) -> None:
        """A process the state asked to end has ended."""
        chosen = [p for p in self.processes.values() if p.end is not None and not p.ended]
        if chosen and not self.over:
            self.ended(chosen[pick % len(chosen)], code, host_lost)

    @rule(seconds=st.sampled_from(STEPS))
    def time_passes(self, seconds: float) -> None:
        if not self.over:
            self.now += seconds
            self.feed(*self.exited(), Tick(self.now))

    # -- the run's own ends -----------------------------------------------------------------

    @rule(what=st.sampled_from(["cancel", "lease", "disk"]), now=st.integers(0, 7))
    def run_stops(self, what: str, now: int) -> None:
        if now == 0 and not self.over:  # an eighth of the times: runs do some work first
            event = {
                "cancel": CancelRequested(self.now),
                "lease": LeaseLost(self.now, "this runner no longer owns run step"),
                "disk": OutputUnwritable(self.now, "cannot write the output file: disk full"),
            }[what]
            self.feed(event)

    @rule()
    def workers_stopped(self) -> None:
        if self.outcome is not None and not self.over:
            self.stop_workers()

    # -- late messages from replaced processes ----------------------------------------------

    @rule(pick=st.integers(0, 20), kind=st.integers(0, 7))
    def late_message(self, pick: int, kind: int) -> None:
        old = [p for p in self.processes.values() if p.incarnation < self.current_of(p).incarnation]
        if not old:
            return
        process = old[pick % len(old)]
        key, now = (process.worker, process.incarnation), self.now
        sent = process.pipe + process.taken_back
        mb_id = sent[0] if sent else self.before
        event = [
            Received(now, *key, Done(mb_id, 1, 1, b"late\n", now - 1, now, None)),
            Received(now, *key, Failed(mb_id, 1, "late", "tb", now - 1, now)),
            Received(now, *key, Ready(0.1)),
            Received(now, *key, Beat(1, 0.1)),
            ConnectionLost(now, *key, "late"),
            ProcessExited(now + EXIT_LATE, *key),
            WorkerEnded(now, *key, "late", True, -9),
            WorkerConnected(now, *key, 4242),
        ][kind]
        before = self.snapshot()
        out = self.feed(event)
        dropped = [DropConnection(process.worker)] if kind == 7 else []
        assert [i for i in out if not isinstance(i, Log)] == dropped, f"late {event} acted on"
        assert self.snapshot() == before, f"a late {event} changed the state"

    # -- the invariants ---------------------------------------------------------------------

    @invariant()
    def each_mini_batch_is_in_exactly_one_place(self) -> None:
        s, recorded = self.state, self.recorded_ids()
        places = {mb_id: [] for mb_id in range(self.before, self.next_id)}
        for flight in s.waiting:
            places[flight.mini_batch.id].append("waiting")
        for worker in s.workers.values():
            for flight in worker.queue:
                places[flight.mini_batch.id].append("sent")
        for mb_id in [*s.held, *recorded]:
            places[mb_id].append("held" if mb_id in s.held else "finished")
        for mb_id, where in places.items():
            assert len(where) == 1, f"mini-batch {mb_id} is in {where or 'no place'}"
            assert s.mini_batches[mb_id] == where[0], (mb_id, s.mini_batches[mb_id], where)
        assert set(s.mini_batches) == set(places), "the state knows of other mini-batches"
        for name, worker in s.workers.items():
            queued, process = [flight.mini_batch.id for flight in worker.queue], self.current(name)
            assert queued == process.pipe, (
                f"{name} runs {queued} by the state, {process.pipe} really"
            )

    @invariant()
    def tries_stay_within_run_max_try(self) -> None:
        limit = self.settings.run_max_try
        for mb_id, tries in self.failed_tries.items():
            assert tries == list(range(1, len(tries) + 1)), f"mini-batch {mb_id} tries {tries}"
            assert len(tries) <= limit, f"mini-batch {mb_id} failed {len(tries)} tries"
        for record in [*self.recorded, *(record for record, _ in self.state.held.values())]:
            failures = len(self.failed_tries.get(record["mb_id"], []))
            if record["status"] == "done":
                assert record["tries"] == failures + 1 <= limit, (record, failures)
            else:
                assert record["tries"] == failures == limit, (record, failures)

    @invariant()
    def counters_are_the_sum_of_the_outcomes(self) -> None:
        decided = [*self.recorded, *(record for record, _ in self.state.held.values())]
        expected = dict(self.earlier)
        for record in decided:
            expected["mb_done" if record["status"] == "done" else "mb_failed"] += 1
            expected["items_done"] += record["succeeded"]
            expected["items_failed"] += record["failed"]
        expected["retries"] += self.retries
        assert self.state.counters == expected, (
            f"counters {self.state.counters}, outcomes {expected}"
        )
        final_failures = sum(1 for record in decided if record["status"] == "failed")
        tries_failed = sum(len(tries) for tries in self.failed_tries.values())
        assert self.retries == tries_failed - final_failures, "retries are not the failed tries"

    @invariant()
    def with_preserve_order_the_recorded_ids_are_a_prefix(self) -> None:
        if self.settings.preserve_order:
            recorded = self.recorded_ids()
            expected = list(range(self.before, self.before + len(recorded)))
            assert recorded == expected, f"recorded {recorded} is not the prefix {expected}"

    @invariant()
    def the_state_validates(self) -> None:
        self.state.validate_state()
        self.state.rows()

    def teardown(self) -> None:
        try:
            if getattr(self, "state", None) is not None:  # not when start() itself failed
                self.run_to_its_end()
        finally:
            scheduler_steps.HELD_MINI_BATCHES = HELD_MINI_BATCHES


QUICK = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

TestSchedulerState = SchedulerMachine.TestCase
TestSchedulerState.settings = QUICK


@pytest.mark.slow
@pytest.mark.many_examples
def test_ten_thousand_runs_of_the_scheduler_state_keep_every_invariant():
    # Minutes: left out of the default run (see pyproject's addopts). Random, not the quick
    # run's fixed examples, so that each run tries new orders of events.
    many = settings(QUICK, max_examples=10_000, derandomize=False)
    run_state_machine_as_test(SchedulerMachine, settings=many)
