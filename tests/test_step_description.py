"""The step description made at submit(): a JSON round trip, its version, and old runs.

``tests/data/plan_before_v1.json`` holds the records of a two-step run as main stored them
before descriptions had a version (written by that code, paths replaced by ``{root}``): such a
run still resumes, and one that cannot be converted says why.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT, file_dataset, submit_step

from jupyter_parallelrun import ParallelRunConfig, Run, Workspace
from jupyter_parallelrun.engine.runner_start import start_runner
from jupyter_parallelrun.step_description import (
    DescriptionError,
    InputSpec,
    PipelineDescription,
    StepDescription,
)
from jupyter_parallelrun.store_lease import claim

OLD_PLAN = Path(__file__).parent / "data" / "plan_before_v1.json"


def _wait_final(run, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while run.get_status() not in ("Completed", "Failed", "Canceled"):
        assert time.monotonic() < deadline, f"run still {run.get_status()}"
        time.sleep(0.1)
    return run.get_status()


def test_a_submitted_run_is_stored_as_a_description_that_round_trips(ws, write_script, files):
    run = submit_step(ws, write_script(ECHO_SCRIPT), file_dataset(files(3)), mini_batch_size=2)
    stored = ws.store.get_run(run.id)["spec"]
    described = PipelineDescription.from_json(stored)
    assert described.to_json() == stored
    assert PipelineDescription.from_json(json.loads(json.dumps(stored))) == described
    (step,) = described.steps
    assert StepDescription.from_json(ws.store.get_run(step.run_id)["spec"]) == step
    # Settings parsed once, the output's location resolved once, at submit.
    assert step.mini_batch_size_parsed == 2
    assert step.settings.heartbeat_timeout == 60 and step.settings.logging_level == "INFO"
    folder = ws.get_default_datastore().local_path(step.output.path_on_datastore)
    assert step.output.folder == str(folder)
    assert step.output.append_row_file == str(folder / "parallel_run_step.txt")
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.run_id = "other"  # type: ignore[misc]
    assert _wait_final(run) == "Completed"


def test_a_description_of_another_version_is_refused_clearly():
    plan = {"run_id": "r", "experiment": "e", "parameters": {}, "steps": []}
    with pytest.raises(DescriptionError, match="before versioned descriptions.*resume"):
        PipelineDescription.from_json(plan)
    with pytest.raises(DescriptionError, match="version 7.*reads version 1"):
        PipelineDescription.from_json({**plan, "version": 7, "submitted_by": None})
    with pytest.raises(DescriptionError, match=r"lacks \['submitted_by'\]"):
        PipelineDescription.from_json({**plan, "version": 1})
    with pytest.raises(DescriptionError, match="a dataset or a producer"):
        InputSpec("items")


def _store_old_run(ws: Workspace, root: Path, first_status: str) -> str:
    """Store the old-format run of ``OLD_PLAN`` in ``ws``: its first step ``first_status``
    (Completed with its output written, or Failed), the second one Failed; returns its id."""
    src, inputs = root / "src", root / "inputs"
    src.mkdir()
    (src / "score.py").write_text(ECHO_SCRIPT)
    inputs.mkdir()
    for i in range(5):
        (inputs / f"item_{i:03d}.txt").write_text(str(i))
    records = json.loads(OLD_PLAN.read_text().replace("{root}", str(root)))
    pipeline, *steps = records
    for record, status in zip(steps, [first_status, "Failed"], strict=True):
        shutil.copytree(src, record["spec"]["snapshot"])
        ws.store.create_run(
            id=record["id"],
            parent_id=pipeline["id"],
            experiment="oldplan",
            name=record["name"],
            kind="step",
            status=status,
            spec=record["spec"],
        )
    if first_status == "Completed":
        output = steps[0]["spec"]["output"]
        folder = ws.get_default_datastore().local_path(output["path_on_datastore"])
        folder.mkdir(parents=True)
        (folder / "parallel_run_step.txt").write_text("".join(f"{i}\n" for i in range(5)))
    ws.store.create_run(
        id=pipeline["id"], experiment="oldplan", kind="pipeline", status="Failed",
        spec=pipeline["spec"], tags={},
    )  # fmt: skip
    return pipeline["id"]


@pytest.mark.parametrize("first_status", ["Completed", "Failed"])
def test_a_run_stored_in_the_old_plan_format_resumes(tmp_path, first_status):
    ws = Workspace.create("old", path=tmp_path / "ws")
    run = Run.get(ws, _store_old_run(ws, tmp_path, first_status)).resume()
    assert _wait_final(run) == "Completed", run.get_details().get("error")
    # Converted once, at resume: every record is a description now.
    PipelineDescription.from_json(ws.store.get_run(run.id)["spec"])
    first, second = run.get_steps()
    assert first.get_status() == second.get_status() == "Completed"
    # The second step read the first one's output folder: one file, one row (its newlines
    # escaped, as append_row writes them).
    first_rows, second_rows = (
        Path(StepDescription.from_json(step._record["spec"]).output.append_row_file).read_text()
        for step in (first, second)
    )
    escaped = first_rows.replace("\n", "\\n")
    assert second_rows.splitlines() == [f"parallel_run_step.txt {escaped}"]


def test_an_old_run_whose_output_datastore_is_gone_says_why_it_cannot_resume(tmp_path):
    ws = Workspace.create("old", path=tmp_path / "ws")
    run_id = _store_old_run(ws, tmp_path, "Completed")
    for record in [ws.store.get_run(run_id), *ws.store.list_runs(parent_id=run_id)]:
        text = json.dumps(record["spec"]).replace('"workspaceblobstore"', '"removed_store"')
        ws.store.update_run(record["id"], spec=json.loads(text))
    run = Run.get(ws, run_id)
    for _ in range(2):  # the refused resume let its claim go: the second says the same
        with pytest.raises(
            ValueError, match="cannot be resumed.*'removed_store' is not registered"
        ):
            run.resume()
    assert run.get_status() == "Failed"
    assert "version" not in ws.store.get_run(run_id)["spec"]


def test_reading_a_stored_step_parses_its_settings_as_the_front_doors_do(ws, write_script, files):
    run = submit_step(ws, write_script(ECHO_SCRIPT), file_dataset(files(2)))
    assert _wait_final(run) == "Completed"
    (step,) = ws.store.list_runs(parent_id=run.id)
    stored = json.loads(json.dumps(step["spec"]))
    stored["config"]["heartbeat_timeout"] = 0
    with pytest.raises(ValueError) as by_config:
        ParallelRunConfig(entry_script="score.py", heartbeat_timeout=0)
    with pytest.raises(ValueError) as by_engine:
        StepDescription.from_json(stored)
    assert str(by_engine.value) == str(by_config.value)
    stored["config"]["heartbeat_timeout"] = 60
    stored["config"]["mini_batch_size"] = "10MB"  # a size in bytes, for file input
    with pytest.raises(ValueError, match="mini_batch_size"):
        StepDescription.from_json(stored)


def test_a_runner_started_on_an_unconverted_old_run_says_why_it_cannot_run_it(tmp_path):
    ws = Workspace.create("old", path=tmp_path / "ws")
    run_id = _store_old_run(ws, tmp_path, "Failed")
    with ws.store.transaction() as db:  # started by hand, not by resume(): nothing converted
        ws.store.update_run(run_id, db=db, status="NotStarted")
        token = claim(db, run_id, 60)
    start_runner(ws.store, ws.path, run_id, token)
    run = Run.get(ws, run_id)
    assert _wait_final(run) == "Failed"
    error = ws.store.get_run(run_id)["error"]
    assert "plan format of before versioned descriptions" in error, error
    assert "PipelineRun.resume() converts it" in error, error
