"""Run.get_context() and metrics in entry scripts; get_details() with Azure's keys; the HTML a
notebook shows for a run object."""

from __future__ import annotations

import getpass

import numpy as np
import pytest
from conftest import file_dataset, submit_step

from jupyter_parallelrun import AmlCompute, ComputeTarget, Run
from jupyter_parallelrun.cli import logs_text
from jupyter_parallelrun.metrics import OfflineRun
from jupyter_parallelrun.workspace import RUN_ID_ENV

LOGGING_SCRIPT = """
import os
from jupyter_parallelrun import Run

def init():
    Run.get_context().log("init", 1)

def run(mini_batch):
    context = Run.get_context()
    context.log("files", len(mini_batch))
    context.log_row("sizes", first=os.path.basename(mini_batch[0]), count=len(mini_batch))
    context.log_list("names", sorted(os.path.basename(p) for p in mini_batch))
    return [f"{os.path.basename(p)} {type(context).__name__} {context.id}" for p in mini_batch]
"""


def test_offline_run_outside_a_run(monkeypatch):
    monkeypatch.delenv(RUN_ID_ENV, raising=False)
    run = Run.get_context()
    assert isinstance(run, OfflineRun) and run.id.startswith("OfflineRun_")
    run.log("accuracy", np.float32(0.5))
    run.log("accuracy", 0.75)
    run.log("name", "digits")
    run.log_list("losses", np.array([3, 2, 1]))
    run.log_row("epoch", n=1, loss=0.5)
    run.log_row("epoch", n=2, loss=0.25)
    assert run.get_metrics() == {
        "accuracy": [0.5, 0.75],
        "name": "digits",
        "losses": [3, 2, 1],
        "epoch": {"n": [1, 2], "loss": [0.5, 0.25]},
    }
    with pytest.raises(RuntimeError, match=r"allow_offline=False\): this code is not running"):
        Run.get_context(allow_offline=False)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.log("x", object()), "value must be a number, a string or a bool; got object"),
        (lambda r: r.log("x", None), "value must be a number, a string or a bool; got NoneType"),
        (lambda r: r.log("", 1), "name must be a non-empty string; got ''"),
        (lambda r: r.log_list("x", "abc"), "value must be a list of numbers or strings"),
        (lambda r: r.log_list("x", [1, {}]), r"value\[1\] must be a number"),
        (lambda r: r.log_row("x"), "log_row needs at least one column"),
    ],
)
def test_metric_values_are_checked(call, message):
    with pytest.raises((TypeError, ValueError), match=message):
        call(OfflineRun())


@pytest.fixture
def logged_run(ws, write_script, files):
    compute = ComputeTarget.create(ws, "cpu-cluster", AmlCompute.provisioning_configuration())
    run = submit_step(
        ws, write_script(LOGGING_SCRIPT), file_dataset(files(6)), mini_batch_size=2,
        compute_target=compute, step_kwargs={"arguments": ["--model_name", "m"]},
    )  # fmt: skip
    assert run.wait_for_completion() == "Completed"
    return run


def test_entry_script_logs_to_its_step_run(logged_run):
    step = logged_run.find_step_run("score-step")[0]
    rows = step.get_output_data("scores")
    path = rows.datastore.local_path(rows.path_on_datastore) / "parallel_run_step.txt"
    lines = path.read_text().splitlines()
    assert len(lines) == 6 and all(line.split()[1:] == ["StepRun", step.id] for line in lines)
    metrics = step.get_metrics()
    assert metrics["init"] in (1, [1, 1])  # once per worker process that started
    assert metrics["files"] == [2, 2, 2]
    assert sorted(metrics["sizes"]["first"]) == ["item_000.txt", "item_002.txt", "item_004.txt"]
    assert metrics["sizes"]["count"] == [2, 2, 2]
    assert metrics["names"] in (["item_000.txt", "item_001.txt"], ["item_002.txt", "item_003.txt"],
                                ["item_004.txt", "item_005.txt"])  # fmt: skip
    # The counters are still there, and the pipeline run shows its steps' metrics too.
    assert metrics["items_done"] == 6
    pipeline = logged_run.get_metrics()
    assert pipeline["files"] == [2, 2, 2] and pipeline["items_done"] == 6
    # What the widget reads: the store's read-only view of the same metrics.
    store = logged_run.experiment.workspace.store
    assert store.run_metrics(logged_run.id)["sizes"] == metrics["sizes"]


def test_get_details_has_azures_keys(logged_run):
    step = logged_run.find_step_run("score-step")[0]
    details = step.get_details()
    keys = ["runId", "status", "startTimeUtc", "endTimeUtc", "properties", "inputDatasets",
            "outputDatasets", "runDefinition", "submittedBy", "target", "logFiles"]  # fmt: skip
    assert set(keys) <= set(details), set(keys) - set(details)
    assert details["runId"] == step.id and details["status"] == "Completed"
    assert details["target"] == "cpu-cluster"
    assert details["submittedBy"] == getpass.getuser()
    assert details["properties"]["azureml.runsource"] == "azureml.StepRun"
    assert details["inputDatasets"] == [
        {
            "dataset": {"name": None, "version": None, "id": None},
            "consumptionDetails": {
                "type": "RunInput",
                "inputName": "items",
                "mechanism": "Direct",
            },  # fmt: skip
        }
    ]
    (output,) = details["outputDatasets"]
    assert output["outputDetails"] == {"outputName": "scores"}
    assert output["identifier"]["pathOnDatastore"].endswith(f"{step.id}/scores")
    definition = details["runDefinition"]
    assert definition["script"] == "score.py" and definition["target"] == "cpu-cluster"
    assert definition["arguments"] == ["--model_name", "m"]
    assert definition["parallelRunConfig"]["mini_batch_size"] == 2
    assert any(name.startswith("logs/") for name in details["logFiles"])
    pipeline = logged_run.get_details()
    assert pipeline["target"] == "cpu-cluster" and pipeline["submittedBy"] == getpass.getuser()
    assert pipeline["runDefinition"]["steps"] == ["score-step"]
    assert pipeline["inputDatasets"] == details["inputDatasets"]


def test_run_object_shows_an_azure_like_table(logged_run):
    page = logged_run._repr_html_()
    for header in ("Experiment", "Id", "Type", "Status", "Details Page"):
        assert f"<th>{header}</th>" in page
    assert f"<td>{logged_run.id}</td>" in page and "<td>azureml.PipelineRun</td>" in page
    assert "<td>Completed</td>" in page and "<td>tests</td>" in page
    folder = logged_run.experiment.workspace.path / "runs" / logged_run.id
    # Where the details are, as text a browser cannot fail to open, and how to read them.
    assert "file://" not in page and "<a " not in page
    assert f"<code>{folder}</code>" in page
    assert f"<code>parallelrun logs {logged_run.id}</code>" in page
    assert "== score-step: job_result.txt ==" in logs_text(
        logged_run.experiment.workspace, logged_run.id
    )
    step = logged_run.find_step_run("score-step")[0]
    assert f"<code>{folder.parent / step.id / 'logs'}</code>" in step._repr_html_()
    assert "<td>azureml.StepRun</td>" in step._repr_html_()
