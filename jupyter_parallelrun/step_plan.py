"""Turning a submitted Pipeline into a run plan, checking everything that can be checked first.

API code: it reads the API's objects, and the engine gets only the plan it writes.

``make_plan`` runs in the notebook at ``submit()``: it resolves the pipeline parameters,
re-validates every step's configuration with them, checks the entry scripts, the inputs and the
environments, takes a snapshot of each step's source directory, and writes down everything the
runner needs as one JSON document. Whatever is wrong with the submission is raised here, before
any process starts.
"""

from __future__ import annotations

import ast
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .blob_storage import check_container
from .compute import ComputeTarget
from .dataset import TabularDataset
from .engine.step_input import output_datastore
from .environment import check_environment
from .environment_check import worker_variables
from .pipeline import resolve_parameters
from .pipeline_inputs import DatasetConsumptionConfig, PipelineData, PipelineParameter
from .settings import mini_batch_size_for
from .workspace import DATA_FOLDER, DEFAULT_DATASTORE

if TYPE_CHECKING:
    from .pipeline import Pipeline
    from .workspace import Workspace

SNAPSHOT_IGNORE = shutil.ignore_patterns(
    ".git", "__pycache__", "*.pyc", ".ipynb_checkpoints", DATA_FOLDER
)


def check_entry_script(source_directory: str | None, entry_script: str) -> Path:
    """The entry script's path; raises when it is missing, does not parse, or lacks init/run."""
    folder = Path(source_directory) if source_directory else Path.cwd()
    path = (folder / entry_script).resolve()
    where = f"entry_script={entry_script!r}" + (
        f" in source_directory={source_directory!r}" if source_directory else ""
    )
    if not path.is_file():
        raise FileNotFoundError(f"{where}: no such file ({path})")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as error:
        raise SyntaxError(f"{where} does not parse: {error.msg} (line {error.lineno})") from error
    defined = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            defined.update(alias.asname or alias.name for alias in node.names)
    missing = [name for name in ("init", "run") if name not in defined]
    if missing:
        raise ValueError(
            f"{where} must define init() and run(mini_batch); it lacks {' and '.join(missing)}()"
        )
    return path


def _dataset_of(item: Any, values: dict[str, Any]) -> Any:
    """The Dataset behind an input: a DatasetConsumptionConfig, a PipelineParameter, or itself."""

    if isinstance(item, DatasetConsumptionConfig):
        item = item.dataset
    if isinstance(item, PipelineParameter):
        item = values.get(item.name, item.default_value)
        if isinstance(item, DatasetConsumptionConfig):
            item = item.dataset
    return item


def _input_plan(item: Any, values: dict[str, Any], producers: dict[str, str]) -> dict[str, Any]:

    name = getattr(item, "name", None)
    if isinstance(item, PipelineData):
        if item.name not in producers:
            raise ValueError(f"input {item.name!r} is a PipelineData that no step produces")
        return {"name": item.name, "pipeline_data": item.name, "producer": producers[item.name]}
    dataset = _dataset_of(item, values)
    if not hasattr(dataset, "to_spec"):
        raise TypeError(
            f"input {name!r} must be a Dataset, a DatasetConsumptionConfig, a PipelineParameter "
            f"holding a Dataset, or a PipelineData; got {type(dataset).__name__}"
        )
    if isinstance(item, DatasetConsumptionConfig):
        name = item.name
    mode = getattr(item, "mode", None) or "direct"
    return {"name": name or dataset.name or "input", "dataset": dataset.to_spec(), "mode": mode}


def _argument_plan(arg: Any, values: dict[str, Any], producers: dict[str, str]) -> Any:

    if isinstance(arg, PipelineParameter) and not hasattr(
        values.get(arg.name, arg.default_value), "to_spec"
    ):
        return str(values.get(arg.name, arg.default_value))
    if isinstance(arg, DatasetConsumptionConfig | PipelineData | PipelineParameter) or hasattr(
        arg, "to_spec"
    ):
        return _input_plan(arg, values, producers)
    return str(arg)


def check_links(source_directory: str) -> None:
    """Raise for a symbolic link in ``source_directory`` that points outside it (or nowhere).

    The snapshot copies what a link points to; a link that leaves the folder (to ``/etc``,
    to a home directory) would copy that into every run's snapshot, so it is refused. Links
    inside the folder are copied as what they point to, which the snapshot holds anyway.
    """
    root = os.path.realpath(source_directory)
    for folder, dirs, names in os.walk(root):
        ignored = SNAPSHOT_IGNORE(folder, dirs + names)
        dirs[:] = [d for d in dirs if d not in ignored]
        for name in dirs + names:
            path = os.path.join(folder, name)
            if name in ignored or not os.path.islink(path):
                continue
            target = os.path.realpath(path)
            if os.path.commonpath([root, target]) != root or not os.path.exists(target):
                shown = os.path.relpath(path, root).encode("utf-8", "backslashreplace").decode()
                raise ValueError(
                    f"source_directory={source_directory!r} holds the symbolic link {shown!r} "
                    f"to {os.readlink(path)!r}, which is "
                    f"{'outside the folder' if os.path.exists(target) else 'missing'}; the "
                    "snapshot takes only what is inside source_directory: copy the file in, "
                    "or remove the link"
                )


def _snapshot(ws: Workspace, step_run_id: str, source_directory: str | None, script: Path) -> str:
    target = ws.path / "runs" / step_run_id / "snapshot"
    if source_directory:
        shutil.copytree(source_directory, target, ignore=SNAPSHOT_IGNORE)
    else:
        target.mkdir(parents=True)
        shutil.copy2(script, target / script.name)
    return str(target)


def check_blob_datastores(ws: Workspace, step: dict[str, Any], checked: set[str]) -> None:
    """Check that every blob container a planned step reads or writes can be listed now, with
    its credentials, so that a wrong key, a missing container, an unreachable account or a
    missing adlfs is an error at submit() rather than in every worker."""

    found: dict[str, dict] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("datastore_type") == "AzureBlob":
                found.setdefault(value["name"], value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk([step["input"], step["side_inputs"], step["arguments"]])
    output = output_datastore(ws, step["output"]).to_spec()
    if output["datastore_type"] == "AzureBlob":
        found.setdefault(output["name"], output)
    for name, spec in found.items():
        if name not in checked:
            check_container(name, spec)
            checked.add(name)


def make_plan(
    ws: Workspace,
    pipeline: Pipeline,
    pipeline_parameters: dict[str, Any] | None,
    pipeline_run_id: str,
    experiment: str,
) -> dict[str, Any]:
    """Validate a submission and describe it as a JSON-able plan for the runner."""

    values = resolve_parameters(pipeline, pipeline_parameters)
    producers: dict[str, str] = {}
    steps = []
    checked: set[str] = set()
    for step in pipeline.steps:
        step_run_id = str(uuid.uuid4())
        config = step.parallel_run_config.resolved(values)
        script = check_entry_script(config["source_directory"], config["entry_script"])
        if config["source_directory"]:
            check_links(config["source_directory"])
        if config["source_directory"] is None:
            config["entry_script"] = script.name
        input_plan = _input_plan(step.inputs[0], values, producers)
        dataset = _dataset_of(step.inputs[0], values)
        tabular = isinstance(dataset, TabularDataset)
        config["mini_batch_size_parsed"] = mini_batch_size_for(config["mini_batch_size"], tabular)
        keys = config.get("partition_keys")
        if keys and not tabular and not set(keys) <= set(getattr(dataset, "partition_keys", [])):
            raise ValueError(
                f"step {step.name!r}: partition_keys={keys!r} on a FileDataset must be keys "
                f"of its partition_format; its keys are {getattr(dataset, 'partition_keys', [])} "
                '(made with Dataset.File.from_files(..., partition_format="{key}/..."))'
            )
        if config.get("compute_target"):
            # On a Dask cluster this checks every Dask worker: reachable, enough of them, the
            # environment installed, the workspace visible.
            compute = ComputeTarget(ws, config["compute_target"])
            warnings = compute.check_step(config["node_count"], config.get("environment"))
        else:
            warnings = check_environment(config.get("environment"))
        output = step.output
        output_name = output.name if output is not None else "output"
        datastore = getattr(output, "datastore", None)
        steps.append(
            {
                "run_id": step_run_id,
                "name": step.name,
                "config": config,
                "input": input_plan,
                "side_inputs": [_input_plan(s, values, producers) for s in step.side_inputs],
                "arguments": [_argument_plan(a, values, producers) for a in step.arguments],
                "output": {
                    "name": output_name,
                    "datastore": datastore.name if datastore is not None else DEFAULT_DATASTORE,
                    "path_on_datastore": f"azureml/{step_run_id}/{output_name}",
                },
                "allow_reuse": bool(step.allow_reuse),
                "snapshot": None,
                # Environment warnings (strings): shown at submit, stored with the run
                # (get_details()["warnings"], RunDetails) and written to logs/runner.txt.
                "warnings": warnings,
                "worker_variables": worker_variables(config.get("environment")),
            }
        )
        check_blob_datastores(ws, steps[-1], checked)
        steps[-1]["snapshot"] = _snapshot(ws, step_run_id, config["source_directory"], script)
        producers[output_name] = step_run_id
    return {
        "run_id": pipeline_run_id,
        "experiment": experiment,
        "parameters": {k: v for k, v in values.items() if not hasattr(v, "to_spec")},
        "steps": steps,
    }
