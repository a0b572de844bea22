"""What a run handle reports about itself: ``get_details()`` with Azure's keys, and the HTML
table a notebook shows for a run object (Azure's ``_repr_html_``).

Everything is read from the run's store record and its plan (the JSON the submission was
checked into), so a handle made anywhere reports the same.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from .store import RunStore


def utc(timestamp: float | None) -> str | None:
    """``timestamp`` as Azure writes times: ``2024-01-31T12:00:00.123Z``."""
    if timestamp is None:
        return None
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))
        + f".{int(timestamp % 1 * 1e3):03d}Z"
    )


def _worker_details(step: str, worker: dict[str, Any]) -> dict[str, Any]:
    return {
        "step": step,
        "process": worker["name"],
        "node": worker["node_id"],
        "pid": worker["pid"],
        "state": worker["state"],
        "miniBatchesDone": worker["done"],
        "miniBatchesFailed": worker["failed"],
        "retries": worker["retries"],
        "restarts": worker["restarts"],
        "exitCode": worker["exit_code"],
        "error": worker["error"],
        "rssBytes": worker["rss"],
        "cpuSeconds": worker["cpu"],
        "lastHeartbeatUtc": utc(worker["heartbeat"]),
    }


def _error_details(step: str, error: dict[str, Any]) -> dict[str, Any]:
    code = error["exit_code"]
    return {
        "step": step,
        "miniBatch": error["mb_id"],
        "try": error["try"],
        "item": error["item"],
        "process": error["worker"],
        "pid": error["pid"],
        "exception": error["exception"],
        "exitCode": code,
        "signal": -code if code is not None and code < 0 else None,
        "traceback": error["traceback"],
        "timeUtc": utc(error["time"]),
    }


def _steps(store: RunStore, record: dict[str, Any]) -> list[dict[str, Any]]:
    return store.list_runs(parent_id=record["id"]) if record["kind"] != "step" else [record]


def _target(steps: list[dict[str, Any]]) -> str:
    """The compute target's name (Azure's ``target``); ``"local"`` for the default one."""
    names = sorted({(s["spec"] or {}).get("config", {}).get("compute_target") or "local"
                    for s in steps})  # fmt: skip
    return ", ".join(names) or "local"


def _input_datasets(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for step in steps:
        plan = (step["spec"] or {}).get("input") or {}
        dataset = plan.get("dataset")
        if dataset is None:
            continue
        name, version = dataset.get("name"), dataset.get("version")
        found.append(
            {
                "dataset": {
                    "name": name,
                    "version": version,
                    "id": f"{name}:{version}" if name else None,
                },  # fmt: skip
                "consumptionDetails": {
                    "type": "RunInput",
                    "inputName": plan.get("name"),
                    "mechanism": str(plan.get("mode") or "direct").capitalize(),
                },
            }
        )
    return found


def _output_datasets(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for step in steps:
        output = (step["spec"] or {}).get("output")
        if output:
            found.append(
                {
                    "identifier": {
                        "datastoreName": output["datastore"],
                        "pathOnDatastore": output["path_on_datastore"],
                    },  # fmt: skip
                    "outputType": "RunOutput",
                    "outputDetails": {"outputName": output["name"]},
                }
            )
    return found


def _run_definition(record: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    if record["kind"] != "step":
        plan = record["spec"] or {}
        return {"steps": [s["name"] for s in steps], "parameters": plan.get("parameters", {})}
    plan = record["spec"] or {}
    config = plan.get("config", {})
    environment = config.get("environment") or {}
    return {
        "script": config.get("entry_script"),
        "sourceDirectory": config.get("source_directory"),
        "snapshot": plan.get("snapshot"),
        "arguments": plan.get("arguments", []),
        "target": config.get("compute_target") or "local",
        "nodeCount": config.get("node_count"),
        "processCountPerNode": config.get("process_count_per_node"),
        "environment": {"name": environment.get("name")},
        "parallelRunConfig": config,
    }


def run_details(
    store: RunStore, record: dict[str, Any], folder: Path, file_names: list[str]
) -> dict[str, Any]:
    """See :meth:`Run.get_details`."""
    steps = _steps(store, record)
    parent = store.get_run(record["parent_id"]) if record["parent_id"] else record
    properties = {"azureml.runsource": "azureml.StepRun" if record["kind"] == "step"
                  else "azureml.PipelineRun"}  # fmt: skip
    if record["reused_from"]:
        properties["reusedFrom"] = record["reused_from"]
    details: dict[str, Any] = {
        "runId": record["id"],
        "experiment": record["experiment"],
        "target": _target(steps),
        "status": record["status"],
        "startTimeUtc": utc(record["started"]),
        "endTimeUtc": utc(record["ended"]),
        "properties": properties,
        "tags": record["tags"] or {},
        "inputDatasets": _input_datasets(steps),
        "outputDatasets": _output_datasets(steps),
        "runDefinition": _run_definition(record, steps),
        "submittedBy": ((parent or {}).get("spec") or {}).get("submitted_by"),
        "logFiles": {name: str(folder / name) for name in file_names},
    }
    if record["error"]:
        details["error"] = {"message": record["error"]}
    details["workers"] = [
        _worker_details(step["name"], worker)
        for step in steps
        for worker in store.workers(step["id"])
    ]
    details["errors"] = [
        _error_details(step["name"], error) for step in steps for error in store.errors(step["id"])
    ]
    # As Azure's: what was noted at submit, here the environment's pins, unapplied settings
    details["warnings"] = [
        {"source": "environment", "step": step["name"], "message": message}
        for step in steps
        for message in (step["spec"] or {}).get("warnings", [])
    ]
    return details


def run_html(record: dict[str, Any], folder: Path) -> str:
    """Azure's table for a run object in a notebook: Experiment, Id, Type, Status, and where
    its details are (here the run's folder and its logs, which RunDetails shows live).

    The folder is given as text with the command that prints its logs, not as a link: a
    browser does not open a ``file://`` link from a page JupyterLab serves, and a Jupyter
    server with its default settings does not serve the hidden ``.parallelrun`` folder."""
    kind = "azureml.StepRun" if record["kind"] == "step" else "azureml.PipelineRun"
    logs = folder / "logs" if record["kind"] == "step" else folder
    cells = [
        record["experiment"],
        record["id"],
        kind,
        record["status"],
        f"<code>{html.escape(str(logs))}</code> (a folder on the kernel's machine; "
        f"<code>parallelrun logs {html.escape(record['id'])}</code> prints its logs)",
        "<code>RunDetails(run).show()</code>",
    ]
    headers = ["Experiment", "Id", "Type", "Status", "Details Page", "Live view"]
    escaped = [html.escape(str(c)) for c in cells[:4]] + cells[4:]
    return (
        '<table style="width:100%"><tr>'
        + "".join(f"<th>{h}</th>" for h in headers)
        + "</tr><tr>"
        + "".join(f"<td>{c}</td>" for c in escaped)
        + "</tr></table>"
    )
