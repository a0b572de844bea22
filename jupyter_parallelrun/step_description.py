"""The plain, versioned description of a submitted pipeline run: all the engine reads of it.

``step_plan.make_plan`` makes it once, at ``submit()``, from the API's objects: the inputs as
specs, the output's resolved location and every setting already parsed (``settings.py``'s
:class:`~.settings.Settings`, which reading it back parses again, so a stored value no front
door would take is refused with their message). It is stored in the
run store as JSON (:meth:`PipelineDescription.to_json`) and read back by the runner
(:meth:`PipelineDescription.from_json`), so the engine needs neither the API's objects nor the
workspace. Each step run's record holds its own :class:`StepDescription`.

The JSON keeps the names the run views read (``config``, ``input``, ``output``, ...). A run
stored before the description had a version (the plan of plain dicts) has no ``version``:
:meth:`PipelineDescription.from_json` refuses it with :class:`DescriptionError`, and
``PipelineRun.resume()`` converts it first (``step_plan.upgrade_plan``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from .settings import Settings

#: The description's format; :meth:`PipelineDescription.from_json` reads this one only.
VERSION = 1


class DescriptionError(ValueError):
    """A stored description that this version cannot read (older, newer, or incomplete)."""


def _check(kind: str, data: Any, names: set[str]) -> None:
    if not isinstance(data, dict):
        raise DescriptionError(f"a {kind} must be a JSON object; got {type(data).__name__}")
    missing = names - set(data)
    unknown = set(data) - names
    if missing or unknown:
        raise DescriptionError(
            f"a {kind} has the keys {sorted(names)}; this one "
            + (f"lacks {sorted(missing)}" if missing else "")
            + (" and " if missing and unknown else "")
            + (f"has the unknown {sorted(unknown)}" if unknown else "")
        )


def _check_version(kind: str, data: dict[str, Any]) -> None:
    version = data.get("version")
    if version == VERSION:
        return
    if version is None:
        raise DescriptionError(
            f"this {kind} was stored in the plan format of before versioned descriptions "
            '(it has no "version"); PipelineRun.resume() converts it'
        )
    raise DescriptionError(
        f"this {kind} has version {version!r}; this jupyter_parallelrun reads version "
        f"{VERSION} only (a newer one wrote it?)"
    )


@dataclass(frozen=True)
class InputSpec:
    """One input of a step: a dataset (its spec), or the output of an earlier step.

    Parameters
    ----------
    name : str
        The input's name, as the entry script sees it.
    dataset : dict, optional
        ``Dataset.to_spec()`` of a dataset input (its datastores inside).
    mode : str
        ``"direct"``, ``"mount"`` or ``"download"``, for a dataset input.
    pipeline_data : str, optional
        The name of the PipelineData an earlier step produces.
    producer : str, optional
        The step run id of that earlier step: its output's folder is this input.
    """

    name: str
    dataset: dict[str, Any] | None = None
    mode: str = "direct"
    pipeline_data: str | None = None
    producer: str | None = None

    def __post_init__(self) -> None:
        if (self.dataset is None) == (self.producer is None):
            raise DescriptionError(
                f"input {self.name!r} must have a dataset or a producer, and not both"
            )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict: ``{name, dataset, mode}`` or ``{name, pipeline_data, producer}``."""
        if self.dataset is not None:
            return {"name": self.name, "dataset": self.dataset, "mode": self.mode}
        return {"name": self.name, "pipeline_data": self.pipeline_data, "producer": self.producer}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputSpec:
        """The input :meth:`to_json` wrote."""
        if isinstance(data, dict) and "dataset" in data:
            _check("dataset input", data, {"name", "dataset", "mode"})
        else:
            _check("step output input", data, {"name", "pipeline_data", "producer"})
        return cls(**data)


@dataclass(frozen=True)
class OutputLocation:
    """Where a step's output goes, resolved once at submit (``step_plan.output_location``).

    Parameters
    ----------
    name : str
        The output's name (its PipelineData's, else ``"output"``).
    datastore : str
        The name of the datastore it belongs to.
    datastore_type : str
        ``"Local"`` or ``"AzureBlob"``.
    path_on_datastore : str
        Its path on that datastore.
    folder : str
        The local folder the rows are committed into: the datastore's own folder, or for a
        blob datastore the workspace's staging folder, uploaded once the step completes.
    append_row_file : str, optional
        The ``append_row`` file in ``folder``; None for ``summary_only``.
    """

    name: str
    datastore: str
    datastore_type: str
    path_on_datastore: str
    folder: str
    append_row_file: str | None

    @property
    def uploaded(self) -> bool:
        """Whether the committed folder is copied to a blob container at the end."""
        return self.datastore_type != "Local"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict of the fields."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutputLocation:
        """The location :meth:`to_json` wrote."""
        _check("step output", data, {f.name for f in fields(cls)})
        return cls(**data)


#: The keys of a step's ``config`` besides its settings: what it runs, and where.
_RUN_KEYS = ("entry_script", "source_directory", "description", "environment", "compute_target")
#: Written for the views; worked out again when read (``StepDescription.mini_batch_size_parsed``).
_DERIVED_KEYS = ("mini_batch_size_parsed",)


@dataclass(frozen=True)
class StepDescription:
    """One step run of a pipeline run, as the runner carries it out.

    ``settings`` are the ParallelRunConfig's settings, parsed; ``entry_script`` and
    ``source_directory`` (absolute, or None) what it runs, ``environment`` the Environment's
    spec, and ``compute_target`` a name (None for this machine). ``arguments`` are the
    entry script's arguments: text, or inputs whose local paths the script gets.
    ``worker_variables`` are the environment variables every worker process gets besides the
    user's (the workspace and run of ``Run.get_context()``, and what the environment's pins
    need). ``warnings`` are what was noted about the environment at submit.
    """

    run_id: str
    name: str
    settings: Settings
    entry_script: str
    source_directory: str | None
    description: str | None
    environment: dict[str, Any] | None
    compute_target: str | None
    input: InputSpec
    side_inputs: tuple[InputSpec, ...]
    arguments: tuple[str | InputSpec, ...]
    output: OutputLocation
    allow_reuse: bool
    snapshot: str
    warnings: tuple[str, ...] = ()
    worker_variables: dict[str, str] = field(default_factory=dict)
    version: int = VERSION

    @property
    def mini_batch_size_parsed(self) -> int:
        """The mini-batch size in files (file input) or bytes (tabular input)."""
        dataset = self.input.dataset
        return self.settings.mini_batch_size_for((dataset or {}).get("type") == "tabular")

    def with_output(self, output: OutputLocation) -> StepDescription:
        """This step with another output: an earlier identical run's, when it is reused."""
        return replace(self, output=output)

    def config(self) -> dict[str, Any]:
        """The settings with what the step runs, as one JSON-able dict (the record's
        ``config``: its keys are ParallelRunConfig's names)."""
        run = {key: getattr(self, key) for key in _RUN_KEYS + _DERIVED_KEYS}
        return {**self.settings.to_dict(), **run}

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict; its keys are the ones the run views read."""
        return {
            "version": self.version,
            "run_id": self.run_id,
            "name": self.name,
            "config": self.config(),
            "input": self.input.to_json(),
            "side_inputs": [item.to_json() for item in self.side_inputs],
            "arguments": [a if isinstance(a, str) else a.to_json() for a in self.arguments],
            "output": self.output.to_json(),
            "allow_reuse": self.allow_reuse,
            "snapshot": self.snapshot,
            "warnings": list(self.warnings),
            "worker_variables": dict(self.worker_variables),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepDescription:
        """The step :meth:`to_json` wrote; raises :class:`DescriptionError` for another format,
        and the settings' own error for a setting no front door would take."""
        if not isinstance(data, dict):
            raise DescriptionError(f"a step must be a JSON object; got {type(data).__name__}")
        _check_version("step", data)
        keys = {"version", "run_id", "name", "config", "input", "side_inputs", "arguments"}
        keys |= {"output", "allow_reuse", "snapshot", "warnings", "worker_variables"}
        _check("step", data, keys)
        config = data["config"]
        names = {f.name for f in fields(Settings)} | {*_RUN_KEYS, *_DERIVED_KEYS}
        _check("step's config", config, names)
        described = cls(
            run_id=data["run_id"],
            name=data["name"],
            settings=Settings.from_mapping(config),
            **{key: config[key] for key in _RUN_KEYS},
            input=InputSpec.from_json(data["input"]),
            side_inputs=tuple(InputSpec.from_json(item) for item in data["side_inputs"]),
            arguments=tuple(
                a if isinstance(a, str) else InputSpec.from_json(a) for a in data["arguments"]
            ),
            output=OutputLocation.from_json(data["output"]),
            allow_reuse=bool(data["allow_reuse"]),
            snapshot=data["snapshot"],
            warnings=tuple(data["warnings"]),
            worker_variables=dict(data["worker_variables"]),
        )
        described.mini_batch_size_parsed  # noqa: B018 - refused now, not in the runner later
        return described


@dataclass(frozen=True)
class PipelineDescription:
    """A submitted pipeline run: its steps in order, and what it was submitted with.

    Examples
    --------
    >>> described = PipelineDescription("exp_1", "exp", {}, (), "me")
    >>> PipelineDescription.from_json(described.to_json()) == described
    True
    """

    run_id: str
    experiment: str
    parameters: dict[str, Any]
    steps: tuple[StepDescription, ...]
    submitted_by: str | None = None
    version: int = VERSION

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict, as the pipeline run's record stores it."""
        return {
            "version": self.version,
            "run_id": self.run_id,
            "experiment": self.experiment,
            "parameters": dict(self.parameters),
            "steps": [step.to_json() for step in self.steps],
            "submitted_by": self.submitted_by,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PipelineDescription:
        """The run :meth:`to_json` wrote; raises :class:`DescriptionError` for another format."""
        if not isinstance(data, dict):
            raise DescriptionError(f"a run plan must be a JSON object; got {type(data).__name__}")
        _check_version("run plan", data)
        keys = {"version", "run_id", "experiment", "parameters", "steps", "submitted_by"}
        _check("run plan", data, keys)
        return cls(
            run_id=data["run_id"],
            experiment=data["experiment"],
            parameters=dict(data["parameters"]),
            steps=tuple(StepDescription.from_json(step) for step in data["steps"]),
            submitted_by=data["submitted_by"],
        )
