"""RunDetails' Python side: the state it is given on real runs, polling, the text fallback."""

from __future__ import annotations

import time

from conftest import file_dataset, submit_step

from jupyter_parallelrun import RunDetails

SCRIPT = """
import os, time

def init():
    pass

def run(mini_batch):
    time.sleep(0.2)
    if any("item_004" in p for p in mini_batch):
        raise ValueError("bad <b>input</b>")
    return [f"{os.path.basename(p)} ok" for p in mini_batch]
"""


def test_state_of_a_running_then_finished_run(ws, write_script, files):
    run = submit_step(
        ws, write_script(SCRIPT), file_dataset(files(12)), mini_batch_size=1, run_max_try=1
    )
    widget = RunDetails(run)
    assert widget.polling
    run.wait_for_completion()
    deadline = time.time() + 10
    while widget.polling and time.time() < deadline:
        time.sleep(0.1)
    assert not widget.polling
    state = widget.state
    assert state["status"] == "Completed" and state["final"]
    (step,) = state["steps"]
    assert (step["items_done"], step["items_failed"], step["mb_total"]) == (11, 1, 12)
    assert [w["name"] for w in step["workers"]] == ["process000", "process001"]
    (error,) = step["errors"]
    assert (
        error["exception"] == "ValueError: bad <b>input</b>" and "Traceback" in error["traceback"]
    )
    assert len(step["preview"]) == 10 and step["preview"][0].endswith(" ok")
    assert "job_result.txt" in step["logs"]
    widget.selected_log = "job_result.txt"
    assert widget.state["steps"][0]["log_text"].startswith("Completed")
    assert "score-step: Completed 12/12 mini-batches" in widget._repr_mimebundle_()[0]["text/plain"]


def test_a_finished_run_does_not_poll(ws, write_script, files):
    run = submit_step(ws, write_script(SCRIPT), file_dataset(files(2)))
    run.wait_for_completion()
    widget = RunDetails(run)
    assert not widget.polling and widget.state["final"]
    widget.close()
