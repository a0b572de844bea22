"""The watcher every view reads, and the widget's state on real runs: truthful status, a lost
runner seen without writing, reuse, grouped errors, the timeline and a bounded poll."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT, file_dataset, submit_step

from jupyter_parallelrun import ActivityFailedException, Run, RunDetails
from jupyter_parallelrun.progress import RunWatcher, summary_text
from jupyter_parallelrun.widget_state import ChangedRows, error_groups, widget_state

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

SLOW = """
import os, time

def init():
    pass

def run(mini_batch):
    time.sleep(0.3)
    if any("item_002" in p or "item_005" in p for p in mini_batch):
        raise KeyError("missing column")
    return [os.path.basename(p) for p in mini_batch]
"""


def _wait_for(condition, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_lost_runner_is_seen_without_writing(ws, write_script, files):
    run = submit_step(ws, write_script(SLOW), file_dataset(files(30)), mini_batch_size=1)
    watcher = RunWatcher(ws.store, run.id)
    _wait_for(lambda: watcher.state()["steps"][0]["mb_done"] >= 1)
    os.kill(ws.store.get_run(run.id)["runner_pid"], signal.SIGKILL)
    _wait_for(lambda: watcher.state()["final"], timeout=30)  # once its lease lapsed
    state = watcher.state()
    assert state["status"] == "Failed" and state["lost_runner"]
    assert state["headline"] == "Failed (lost runner)"
    assert "ended without finishing the run" in state["error"]
    assert state["steps"][0]["headline"] == "Failed (lost runner)"
    # The watcher only read: the store still says Running until the API records it.
    assert ws.store.get_run(run.id)["status"] == "Running"
    with pytest.raises(ActivityFailedException, match="runner process .* ended"):
        run.wait_for_completion(timeout_seconds=30)
    assert ws.store.get_run(run.id)["status"] == "Failed"


def test_status_headlines_failed_items_and_reuse(ws, write_script, files):
    source, inputs = write_script(SLOW), file_dataset(files(6))
    reuse = {"step_kwargs": {"allow_reuse": True}, "mini_batch_size": 1}
    first = submit_step(ws, source, inputs, **reuse)
    first.wait_for_completion()
    state = RunWatcher(ws.store, first.id).state()
    assert state["headline"] == "Completed with 2 failed items" and state["tone"] == "warn"
    assert summary_text(state).startswith(f"Run {first.id} (tests): Completed with 2 failed items")

    second = submit_step(ws, source, inputs, **reuse)
    second.wait_for_completion()
    state = RunWatcher(ws.store, second.id).state()
    assert state["headline"] == f"Reused the outputs of run {first.id}"
    (step,) = state["steps"]
    assert step["headline"] == f"Reused the outputs of run {first.id}"
    assert f"reused the outputs of run {first.id}" in summary_text(state)


def test_errors_group_by_exception_and_the_timeline_counts_each_process(ws, write_script, files):
    run = submit_step(ws, write_script(SLOW), file_dataset(files(10)), mini_batch_size=1)
    run.wait_for_completion()
    state, errors = widget_state(run)
    (step,) = state["steps"]
    (group,) = errors[step["id"]]["groups"]
    assert group["exception"] == "KeyError: 'missing column'"
    # Three tries of each of two mini-batches.
    assert (group["count"], group["mini_batches"]) == (6, 2)
    assert group["first"] <= group["last"] and "Traceback" in group["traceback"]
    assert sorted(e["mb_id"] for e in group["latest"]) == [2, 2, 2, 5, 5, 5]
    assert "item_002.txt" in " ".join(e["item"] for e in group["latest"])

    lanes = {lane["name"]: lane for lane in step["timeline"]["lanes"]}
    per_worker: dict[str, int] = {}
    for mb in ws.store.mini_batches(step["id"]):
        per_worker[mb["worker"]] = per_worker.get(mb["worker"], 0) + 1
    assert sorted(lanes) == ["process000", "process001"]
    assert {name: lane["count"] for name, lane in lanes.items()} == per_worker
    assert sum(len(lane["blocks"]) for lane in lanes.values()) >= 2
    rates = step["throughput_chart"]["rates"]
    assert sum(rates) * step["throughput_chart"]["width"] == pytest.approx(10, rel=0.01)
    assert step["properties"]["entry_script"] == "score.py"
    assert step["properties"]["nodes_processes"] == "1 node(s) × 2 process(es)"
    assert step["links"]["output"].endswith("parallel_run_step.txt")
    assert state["can_resume"] is False and state["can_cancel"] is False


def test_the_text_fallback_shows_the_state_at_display_time(ws, write_script, files):
    run = submit_step(ws, write_script(ECHO_SCRIPT), file_dataset(files(3)))
    run.wait_for_completion()
    bundle = RunDetails(run)._repr_mimebundle_()[0]
    assert f"Run {run.id} (tests): Completed after" in bundle["text/plain"]
    assert "score-step: Completed 1/1 mini-batches, 3 items done" in bundle["text/plain"]
    assert bundle["text/html"].startswith("<pre>Run ")


@pytest.fixture
def big_run(monkeypatch):
    """The benchmarks' synthetic big run (workload V): rows as a big run leaves them."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import v_view_poll

    return v_view_poll


def test_the_state_sent_per_poll_is_bounded(ws, big_run):
    run = Run.get(ws, big_run.synthetic_run(ws, errors=10_000, mini_batches=100_000))
    state, errors = widget_state(run)
    size = len(json.dumps(state)) + len(json.dumps(errors))
    assert size < 200_000, size
    (step,) = state["steps"]
    assert sum(lane["count"] for lane in step["timeline"]["lanes"]) == 100_000
    assert len(step["timeline"]["lanes"]) == 8
    groups = errors[step["id"]]
    assert groups["groups_total"] == 50 and len(groups["groups"]) == 20
    assert sum(g["count"] for g in groups["groups"]) == 20 * 200
    assert all(g["traceback"].startswith("[") for g in groups["groups"])
    assert all(len(g["latest"]) == 10 for g in groups["groups"])


def test_a_poll_reads_what_changed_and_sees_what_a_fresh_read_sees(ws, big_run):
    run_id = big_run.synthetic_run(ws, errors=300, mini_batches=2_000)
    run = Run.get(ws, run_id)
    watcher, groups = RunWatcher(ws.store, run_id), ChangedRows(ws.store, "errors", error_groups)
    widget_state(run, "", watcher, groups)
    big_run._more(ws, 150, 2_000, error=True)
    # The same mini-batch written again (a resumed run's retry) replaces its record.
    big_run._more(ws, 1, 10, error=False)
    polled_state, polled_errors = widget_state(run, "", watcher, groups)
    fresh_state, fresh_errors = widget_state(run)
    polled, fresh = polled_state["steps"][0], fresh_state["steps"][0]
    assert sum(lane["count"] for lane in polled["timeline"]["lanes"]) == 2_150
    # The two reads differ only in the moment they were made (the clock moves the bins).
    fresh_counts = {lane["name"]: lane["count"] for lane in fresh["timeline"]["lanes"]}
    assert {lane["name"]: lane["count"] for lane in polled["timeline"]["lanes"]} == fresh_counts
    for step in (polled, fresh):
        chart = step["throughput_chart"]
        assert sum(chart["rates"]) * chart["width"] == pytest.approx(2_150 * 10, rel=1e-4)
    assert polled_errors == fresh_errors
    assert polled_errors[polled["id"]]["groups"][0]["count"] == 7


LOGGING = """
import os
from jupyter_parallelrun import Run

def init():
    Run.get_context().log("model", "digits-v1")

def run(mini_batch):
    context = Run.get_context()
    context.log("batch_size", len(mini_batch))
    for path in mini_batch:
        context.log_row("scores", item=os.path.basename(path), score=0.5)
    return mini_batch
"""


def test_the_metrics_a_script_logs_are_shown_bounded(ws, write_script, files):
    run = submit_step(ws, write_script(LOGGING), file_dataset(files(30)), mini_batch_size=1)
    run.wait_for_completion()
    state, _ = widget_state(run)
    logged = state["steps"][0]["metrics"]
    # Each process that got to run init() logged it once (one may be stopped before).
    assert logged["model"] in ({"value": "digits-v1"}, {"list": ["digits-v1"] * 2, "count": 2})
    assert logged["batch_size"] == {"list": ["1"] * 20, "count": 30}
    assert logged["scores"]["rows"] == 30 and len(logged["scores"]["table"]["item"]) == 20


SLOW_INIT = """
import time

def init():
    time.sleep(2)

def run(mini_batch):
    time.sleep(0.5)
    return mini_batch
"""


def test_starting_workers_show_in_init_and_a_canceled_run_has_no_busy_worker(
    ws, write_script, files
):
    run = submit_step(ws, write_script(SLOW_INIT), file_dataset(files(20)), mini_batch_size=1)
    _wait_for(lambda: widget_state(run)[0]["steps"][0]["workers"])
    (step,) = widget_state(run)[0]["steps"]
    # Each process is shown from its start, in init() before its first mini-batch.
    assert {w["state"] for w in step["workers"]} == {"starting"}
    assert all(
        lane["init"] is not None and lane["count"] == 0 for lane in step["timeline"]["lanes"]
    )
    _wait_for(
        lambda: any(w["current_mb"] is not None for w in run.get_state()["steps"][0]["workers"])
    )
    run.cancel()
    assert run.wait_for_completion(raise_on_error=False) == "Canceled"
    state, _ = widget_state(run)
    assert all(w["current_mb"] is None for w in state["steps"][0]["workers"])
    assert state["headline"] == "Canceled" and state["can_resume"] and not state["can_cancel"]
    # The reason is said once: by the run, which names the step.
    assert state["error"] == "step 'score-step' canceled: canceled on request"
    assert state["steps"][0]["error"] is None
    assert summary_text(run.get_state()).count("canceled on request") == 1


DIES_ONCE = """
import os, time

def init():
    pass

def run(mini_batch):
    time.sleep(0.2)
    marker = os.path.join(os.path.dirname(mini_batch[0]), "..", "died")
    if any("item_005" in p for p in mini_batch) and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    return mini_batch
"""


def test_a_restarted_process_starts_again_mid_lane(ws, write_script, files):
    run = submit_step(
        ws, write_script(DIES_ONCE), file_dataset(files(12)), mini_batch_size=1, run_max_try=2
    )
    assert run.wait_for_completion() == "Completed"
    (step,) = widget_state(run)[0]["steps"]
    (lane,) = [lane for lane in step["timeline"]["lanes"] if lane["restarts"]]
    assert lane["restarts"] == 1
    # Its latest start-up comes after mini-batches of its first incarnation.
    assert lane["blocks"][0][0] < lane["init"]
    assert sum(lane["count"] for lane in step["timeline"]["lanes"]) == 12


def test_wait_for_completion_prints_each_failed_try_as_follow_does(ws, write_script, files, capsys):
    run = submit_step(
        ws, write_script(SLOW), file_dataset(files(6)), mini_batch_size=1, run_max_try=2
    )
    assert run.wait_for_completion(show_output=True, raise_on_error=False) == "Completed"
    printed = capsys.readouterr().out
    (step,) = ws.store.list_runs(parent_id=run.id)
    for mb_id in (2, 5):
        for attempt, then in ((1, "will retry"), (2, "no tries left")):
            line = f"score-step: mini-batch {mb_id}, try {attempt} of 2 failed on process"
            (found,) = [row for row in printed.splitlines() if line in row]
            assert found.endswith(f"KeyError: 'missing column' ({then})"), found
    assert "score-step: Completed 6/6 mini-batches" in printed
    assert f"read the logs:       parallelrun logs {run.id}" in printed
