"""RunDetails' Python side: the state it is given on real runs, polling, the text fallback."""

from __future__ import annotations

import time

from conftest import ECHO_SCRIPT, file_dataset, submit_step

from jupyter_parallelrun import (
    Experiment,
    ParallelRunConfig,
    ParallelRunStep,
    Pipeline,
    PipelineData,
    RunDetails,
)

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
    assert step["headline"] == "Completed with 1 failed item" and step["tone"] == "warn"
    (group,) = widget.errors[step["id"]]["groups"]
    assert group["exception"] == "ValueError: bad <b>input</b>" and group["count"] == 1
    assert "Traceback" in group["traceback"] and group["latest"][0]["mb_id"] == 4
    assert len(step["preview"]) == 10 and step["preview"][0].endswith(" ok")
    assert "job_result.txt" in step["files"]["logs"]
    assert step["files"]["output"] == ["parallel_run_step.txt"]
    assert "score.py" in step["files"]["snapshot"]
    widget.selected_file = f"{step['id']}/logs/job_result.txt"
    assert widget.state["steps"][0]["file_text"].startswith("Completed")
    widget.selected_file = f"{step['id']}/snapshot/score.py"
    assert "def run(mini_batch):" in widget.state["steps"][0]["file_text"]
    # Only a file the view lists is read: nothing outside the step's folders.
    widget.selected_file = f"{step['id']}/snapshot/../../../../config.json"
    assert "file_text" not in widget.state["steps"][0]
    assert "score-step: Completed 12/12 mini-batches" in widget._repr_mimebundle_()[0]["text/plain"]


def test_a_finished_run_does_not_poll(ws, write_script, files):
    run = submit_step(ws, write_script(SCRIPT), file_dataset(files(2)))
    run.wait_for_completion()
    widget = RunDetails(run)
    assert not widget.polling and widget.state["final"]
    widget.close()


def test_state_of_a_failed_run_names_the_budget(ws, write_script, files):
    run = submit_step(
        ws,
        write_script(SCRIPT),
        file_dataset(files(12)),
        mini_batch_size=1,
        run_max_try=1,
        allowed_failed_count=0,
    )
    assert run.wait_for_completion(raise_on_error=False) == "Failed"
    state = RunDetails(run).state
    assert state["final"] and state["status"] == "Failed"
    assert "allowed_failed_count=0 exceeded: 1 mini-batches failed" in state["error"]
    (step,) = state["steps"]
    assert step["status"] == "Failed" and step["mb_failed"] == 1
    (group,) = RunDetails(run).errors[step["id"]]["groups"]
    assert group["exception"] == "ValueError: bad <b>input</b>"


def test_state_of_a_pipeline_has_a_row_per_step(ws, write_script, files):
    echo = write_script(ECHO_SCRIPT)
    middle = PipelineData(name="echoed", datastore=ws.get_default_datastore())
    steps = [
        ParallelRunStep(
            name=name,
            inputs=[source],
            output=output,
            parallel_run_config=ParallelRunConfig(
                source_directory=str(echo), entry_script="score.py", mini_batch_size=2
            ),
        )
        for name, source, output in [
            ("echo", file_dataset(files(6)).as_named_input("items"), middle),
            (
                "echo-again",
                middle,
                PipelineData(name="again", datastore=ws.get_default_datastore()),
            ),
        ]
    ]
    run = Experiment(ws, "two-steps").submit(Pipeline(workspace=ws, steps=steps))
    widget = RunDetails(run)
    assert run.wait_for_completion() == "Completed"
    deadline = time.time() + 10
    while widget.polling and time.time() < deadline:
        time.sleep(0.1)
    first, second = widget.state["steps"]
    assert (first["name"], first["status"], first["items_done"]) == ("echo", "Completed", 6)
    assert (second["name"], second["status"], second["items_done"]) == (
        "echo-again",
        "Completed",
        1,
    )
    assert len(first["preview"]) == 6
    assert second["preview"][0].startswith("parallel_run_step.txt item_")
    assert len(first["workers"]) == len(second["workers"]) == 1
    # Each step's row says what it read and wrote.
    assert (
        first["properties"]["input"].startswith("items: ")
        and first["properties"]["output"] == "echoed"
    )
    assert second["properties"]["input"] == "echoed (from step echo)"
    assert second["properties"]["output"] == "again"
