"""Turning a submitted Pipeline into its description, checking everything that can be checked.

API code: it reads the API's objects, and the engine gets only the description it makes.

``make_plan`` runs in the notebook at ``submit()``: it resolves the pipeline parameters,
re-validates every step's configuration with them, checks the entry scripts, the inputs and the
environments, takes a snapshot of each step's source directory, and describes everything the
runner needs as a :class:`~.step_description.PipelineDescription`: settings parsed, inputs as
specs, each output's location resolved (:func:`output_location`, the one place that does).
Whatever is wrong with the submission is raised here, before any process starts.
:func:`upgrade_plan` turns a plan stored before descriptions had a version into one.
"""

from __future__ import annotations

import ast
import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .blob_storage import check_container
from .compute import check_where_it_runs
from .dataset import TabularDataset
from .datastore import Datastore
from .environment_check import worker_variables
from .pipeline import resolve_parameters
from .pipeline_inputs import DatasetConsumptionConfig, PipelineData, PipelineParameter
from .settings import Settings
from .step_description import (
    VERSION,
    DescriptionError,
    InputSpec,
    OutputLocation,
    PipelineDescription,
    StepDescription,
)
from .workspace import DATA_FOLDER, DEFAULT_DATASTORE, RUN_ID_ENV, WORKSPACE_ENV

if TYPE_CHECKING:
    from .pipeline import Pipeline
    from .workspace import Workspace

#: Where outputs to blob datastores are committed, in the workspace, before they are uploaded.
BLOB_OUTPUTS = "blob_outputs"
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


def _input_plan(item: Any, values: dict[str, Any], producers: dict[str, str]) -> InputSpec:

    name = getattr(item, "name", None)
    if isinstance(item, PipelineData):
        if item.name not in producers:
            raise ValueError(f"input {item.name!r} is a PipelineData that no step produces")
        return InputSpec(item.name, pipeline_data=item.name, producer=producers[item.name])
    dataset = _dataset_of(item, values)
    if not hasattr(dataset, "to_spec"):
        raise TypeError(
            f"input {name!r} must be a Dataset, a DatasetConsumptionConfig, a PipelineParameter "
            f"holding a Dataset, or a PipelineData; got {type(dataset).__name__}"
        )
    if isinstance(item, DatasetConsumptionConfig):
        name = item.name
    mode = getattr(item, "mode", None) or "direct"
    return InputSpec(name or dataset.name or "input", dataset=dataset.to_spec(), mode=mode)


def _argument_plan(arg: Any, values: dict[str, Any], producers: dict[str, str]) -> str | InputSpec:

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


def output_location(
    ws: Workspace, name: str, datastore_name: str, path_on_datastore: str, settings: dict
) -> OutputLocation:
    """Where a step's output goes: the one place that works it out (at submit, and when an
    older run is resumed). A blob datastore's output is committed in the workspace's staging
    folder first, and uploaded when the step completes.

    Raises ValueError when ``datastore_name`` is not registered (the default one is
    registered when first used, as ``Workspace.get_default_datastore`` does).
    """
    if datastore_name == DEFAULT_DATASTORE:
        datastore = ws.get_default_datastore()
    else:
        datastore = Datastore.get(ws, datastore_name)
    if datastore.datastore_type == "Local":
        folder = datastore.local_path(path_on_datastore)
    else:
        folder = ws.path / BLOB_OUTPUTS / datastore.name / path_on_datastore
    append_row = settings["output_action"] == "append_row"
    return OutputLocation(
        name=name,
        datastore=datastore.name,
        datastore_type=datastore.datastore_type,
        path_on_datastore=path_on_datastore,
        folder=str(folder),
        append_row_file=str(folder / settings["append_row_file_name"]) if append_row else None,
    )


def check_blob_datastores(ws: Workspace, step: StepDescription, checked: set[str]) -> None:
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

    described = step.to_json()
    walk([described["input"], described["side_inputs"], described["arguments"]])
    if step.output.uploaded:
        found.setdefault(step.output.datastore, Datastore.get(ws, step.output.datastore).to_spec())
    for name, spec in found.items():
        if name not in checked:
            check_container(name, spec)
            checked.add(name)


def _settings(step_name: str, config: dict[str, Any], dataset: Any) -> dict[str, Any]:
    """The step's settings and what it runs, parsed (``settings.py``), as
    :class:`StepDescription`'s fields: checks that need the input are made here."""
    tabular = isinstance(dataset, TabularDataset)
    keys = config.get("partition_keys")
    if keys and not tabular and not set(keys) <= set(getattr(dataset, "partition_keys", [])):
        raise ValueError(
            f"step {step_name!r}: partition_keys={keys!r} on a FileDataset must be keys "
            f"of its partition_format; its keys are {getattr(dataset, 'partition_keys', [])} "
            '(made with Dataset.File.from_files(..., partition_format="{key}/..."))'
        )
    settings = Settings.from_mapping(config)
    settings.mini_batch_size_for(tabular)  # the one check that needs the input's kind
    return {
        "settings": settings,
        "entry_script": config["entry_script"],
        "source_directory": config["source_directory"],
        "description": config["description"],
        "environment": config["environment"],
        "compute_target": config["compute_target"],
    }


def _worker_variables(ws: Workspace, step_run_id: str, environment: Any) -> dict[str, str]:
    """What every worker of the step gets besides the user's variables: where its workspace
    and run are (``Run.get_context()``, ``Model.get_model_path()``) and what the
    environment's pins need (pandas' string option, ...)."""
    return {
        WORKSPACE_ENV: str(ws.config_file.parent),
        RUN_ID_ENV: step_run_id,
        **worker_variables(environment),
    }


def _describe_step(
    ws: Workspace, step: Any, values: dict[str, Any], producers: dict[str, str]
) -> tuple[StepDescription, Path]:
    """One step's description (its snapshot not taken yet), and its entry script's path."""
    step_run_id = str(uuid.uuid4())
    config = step.parallel_run_config.resolved(values)
    script = check_entry_script(config["source_directory"], config["entry_script"])
    if config["source_directory"]:
        check_links(config["source_directory"])
    else:
        config["entry_script"] = script.name
    described = _settings(step.name, config, _dataset_of(step.inputs[0], values))
    # On a Dask cluster this checks every Dask worker: reachable, enough of them, the
    # environment installed, the workspace visible.
    warnings = check_where_it_runs(
        ws, config["compute_target"], described["settings"].node_count, config["environment"]
    )
    output_name = step.output.name if step.output is not None else "output"
    datastore = getattr(step.output, "datastore", None)
    output = output_location(
        ws,
        output_name,
        datastore.name if datastore is not None else DEFAULT_DATASTORE,
        f"azureml/{step_run_id}/{output_name}",
        config,
    )
    described = StepDescription(
        run_id=step_run_id,
        name=step.name,
        **described,
        input=_input_plan(step.inputs[0], values, producers),
        side_inputs=tuple(_input_plan(s, values, producers) for s in step.side_inputs),
        arguments=tuple(_argument_plan(a, values, producers) for a in step.arguments),
        output=output,
        allow_reuse=bool(step.allow_reuse),
        snapshot="",
        # Environment warnings: shown at submit, stored with the run (get_details()["warnings"],
        # RunDetails) and written to logs/runner.txt.
        warnings=tuple(warnings),
        worker_variables=_worker_variables(ws, step_run_id, config["environment"]),
    )
    return described, script


def make_plan(
    ws: Workspace,
    pipeline: Pipeline,
    pipeline_parameters: dict[str, Any] | None,
    pipeline_run_id: str,
    experiment: str,
    submitted_by: str | None = None,
) -> PipelineDescription:
    """Validate a submission and describe it for the runner (see ``step_description.py``)."""

    values = resolve_parameters(pipeline, pipeline_parameters)
    producers: dict[str, str] = {}
    steps = []
    checked: set[str] = set()
    for step in pipeline.steps:
        described, script = _describe_step(ws, step, values, producers)
        check_blob_datastores(ws, described, checked)
        source = described.source_directory
        steps.append(replace(described, snapshot=_snapshot(ws, described.run_id, source, script)))
        producers[described.output.name] = described.run_id
    return PipelineDescription(
        run_id=pipeline_run_id,
        experiment=experiment,
        parameters={k: v for k, v in values.items() if not hasattr(v, "to_spec")},
        steps=tuple(steps),
        submitted_by=submitted_by,
    )


def upgrade_plan(ws: Workspace, plan: dict[str, Any]) -> PipelineDescription:
    """A run plan stored before descriptions had a version (plain dicts, as ``make_plan``
    wrote them until then), as a description: its output locations resolved now.

    Raises
    ------
    DescriptionError
        The plan lacks something the description needs, or its output's datastore is no
        longer registered; the message says which.
    """
    steps = [upgrade_step(ws, step).to_json() for step in plan.get("steps", [])]
    try:
        upgraded = {**plan, "version": VERSION, "steps": steps}
        return PipelineDescription.from_json({"submitted_by": None, **upgraded})
    except (KeyError, TypeError) as error:
        raise DescriptionError(f"its stored plan lacks {error}") from None


def upgrade_step(ws: Workspace, step: dict[str, Any]) -> StepDescription:
    """One step of :func:`upgrade_plan` (a step run's record holds it too)."""
    if step.get("version") is not None:
        return StepDescription.from_json(step)
    try:
        config, output = step["config"], step["output"]
        location = output_location(
            ws, output["name"], output["datastore"], output["path_on_datastore"], config
        )
        variables = _worker_variables(ws, step["run_id"], None) | step["worker_variables"]
        upgraded = {**step, "version": VERSION, "output": location.to_json()}
        return StepDescription.from_json({**upgraded, "worker_variables": variables})
    except KeyError as error:
        raise DescriptionError(f"its stored step {step.get('name')!r} lacks {error}") from None
    except ValueError as error:  # the output's datastore is gone, or another format
        raise DescriptionError(f"step {step.get('name')!r}: {error}") from None
