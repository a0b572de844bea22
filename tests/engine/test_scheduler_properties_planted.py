"""Bugs planted in the scheduler's pure state, on purpose: the property test must catch each.

Every case patches one small mistake into :class:`SchedulerState` (a mini-batch sent again
after it was recorded, one try too many, failed items left uncounted, preserve_order
forgotten, a replaced process listened to, a run that never ends) and runs
``test_scheduler_properties.py``'s machine until it fails, without shrinking. Each must
fail on the machine's own ledger, with its message: ``validate_state()`` cannot see most of
these, as the state's records agree with themselves.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from jupyter_parallelrun.engine.scheduler_events import Send
from jupyter_parallelrun.engine.scheduler_records import READY
from jupyter_parallelrun.engine.scheduler_state import SchedulerState
from jupyter_parallelrun.engine.scheduler_steps import SchedulerSteps

from .test_scheduler_properties import QUICK, SchedulerMachine

#: Until the first failure, not shrunk: a planted bug only has to be found.
HUNT = settings(QUICK, max_examples=1000, phases=[Phase.generate], report_multiple_bugs=False)


def resend_what_was_recorded(monkeypatch) -> None:
    done = SchedulerState._done

    def done_then_send_again(self, worker, message, now, out):
        head = worker.queue[0].mini_batch if worker.queue else None
        done(self, worker, message, now, out)
        finished = head is not None and self.mini_batches.get(head.id) == "finished"
        if finished and worker.state in READY and self.outcome is None:
            out.append(Send(worker.name, worker.restarts, head))

    monkeypatch.setattr(SchedulerState, "_done", done_then_send_again)


def one_try_too_many(monkeypatch) -> None:
    init = SchedulerSteps.__init__

    def init_with_one_more(self, settings):
        init(self, settings)
        self.max_try += 1

    monkeypatch.setattr(SchedulerSteps, "__init__", init_with_one_more)


def forget_failed_items(monkeypatch) -> None:
    result = SchedulerSteps._result

    def result_without_failed_items(self, record, payload, now, out):
        result(self, record, payload, now, out)
        if record["status"] == "done":
            self.counters["items_failed"] -= record["failed"]

    monkeypatch.setattr(SchedulerSteps, "_result", result_without_failed_items)


def forget_preserve_order(monkeypatch) -> None:
    init = SchedulerSteps.__init__

    def init_unordered(self, settings):
        init(self, replace(settings, preserve_order=False))

    monkeypatch.setattr(SchedulerSteps, "__init__", init_unordered)


def listen_to_replaced_processes(monkeypatch) -> None:
    monkeypatch.setattr(SchedulerSteps, "_current", lambda self, event: self.workers[event.worker])


def never_complete(monkeypatch) -> None:
    monkeypatch.setattr(SchedulerSteps, "finished", property(lambda self: False))


@pytest.mark.parametrize(
    ("plant", "caught_by"),
    [
        pytest.param(plant, caught_by, id=plant.__name__)
        for plant, caught_by in [
            (resend_what_was_recorded, "recorded mini-batch .* sent again"),
            (one_try_too_many, "sent for try"),
            (forget_failed_items, "counters .* outcomes"),
            (forget_preserve_order, "is not the prefix"),
            (listen_to_replaced_processes, "late .* (acted on|changed the state)"),
            (never_complete, "the run did not end"),
        ]
    ],
)
def test_the_property_test_catches_a_planted_bug(monkeypatch, plant, caught_by):
    plant(monkeypatch)
    with pytest.raises(AssertionError, match=caught_by):
        run_state_machine_as_test(SchedulerMachine, settings=HUNT)
