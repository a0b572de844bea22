"""The pipeline graph: PipelineParameter, DatasetConsumptionConfig, PipelineData,
ParallelRunStep and Pipeline, with the SDK v1 names and arguments.

These objects only describe what to run. They are checked when made; ``Experiment.submit``
turns a Pipeline into a run plan (``engine/plan.py``) with the values that
:func:`resolve_parameters` gives its parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .workspace import Workspace

if TYPE_CHECKING:
    from .config import ParallelRunConfig

_PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_DATA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STEP_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_SCALARS = str | int | float | bool


def _is_dataset(value: Any) -> bool:
    from .dataset import FileDataset, TabularDataset

    return isinstance(value, FileDataset | TabularDataset)


def _require(value: Any, kinds: Any, what: str, expected: str) -> Any:
    """``value``, or a TypeError saying that ``what`` must be ``expected``."""
    if not isinstance(value, kinds):
        raise TypeError(f"{what} must be {expected}; got {type(value).__name__}")
    return value


def _check_data_name(value: Any, what: str = "name") -> str:
    if not _DATA_NAME.match(_require(value, str, what, "a string")):
        raise ValueError(
            f"{what} must be letters, digits and '_', starting with a letter or '_'; got {value!r}"
        )
    return value


class PipelineParameter:
    """A named value of a pipeline, overridable at ``submit(..., pipeline_parameters=...)``.

    Parameters
    ----------
    name : str
        Letters, digits, ``_``, ``-`` and ``.``, starting with a letter or ``_``.
    default_value : str, int, float, bool, Dataset or DatasetConsumptionConfig
        The value used when a submission does not override it.

    Examples
    --------
    >>> batch_size = PipelineParameter(name="batch_size_param", default_value="5")
    >>> batch_size.name, batch_size.default_value
    ('batch_size_param', '5')
    """

    def __init__(self, name: str, default_value: Any) -> None:
        if not _PARAMETER_NAME.match(_require(name, str, "name", "a string")):
            raise ValueError(
                "name must be letters, digits, '_', '-' and '.', starting with a letter or '_'; "
                f"got {name!r}"
            )
        if not (
            isinstance(default_value, _SCALARS | DatasetConsumptionConfig)
            or _is_dataset(default_value)
        ):
            raise TypeError(
                f"default_value of PipelineParameter {name!r} must be a str, int, float, bool, "
                f"Dataset or DatasetConsumptionConfig; got {type(default_value).__name__}"
            )
        self.name = name
        self.default_value = default_value

    @property
    def holds_dataset(self) -> bool:
        """Whether the default is a Dataset (or a DatasetConsumptionConfig of one)."""
        return isinstance(self.default_value, DatasetConsumptionConfig) or _is_dataset(
            self.default_value
        )

    def __repr__(self) -> str:
        return f"PipelineParameter(name={self.name!r}, default_value={self.default_value!r})"


class DatasetConsumptionConfig:
    """How a step consumes a dataset: the input's name and its mode.

    Parameters
    ----------
    name : str
        The input's name: letters, digits and ``_``, starting with a letter or ``_``.
    dataset_or_pipeline_parameter : Dataset or PipelineParameter
        The dataset, or a PipelineParameter whose default value is a dataset.
    mode : {"direct", "mount", "download"}
        Recorded as Azure records it; locally every mode reads the files in place.
    path_on_compute : str, optional
        Recorded; inputs are read where their datastore keeps them.
    """

    MODES = ("direct", "mount", "download")

    def __init__(
        self,
        name: str,
        dataset_or_pipeline_parameter: Any,
        mode: str = "direct",
        path_on_compute: str | None = None,
    ) -> None:
        self.name = _check_data_name(name)
        source = dataset_or_pipeline_parameter
        if isinstance(source, PipelineParameter):
            if not source.holds_dataset:
                raise TypeError(
                    "dataset_or_pipeline_parameter must be a Dataset or a PipelineParameter whose "
                    f"default_value is a Dataset; PipelineParameter {source.name!r} holds "
                    f"{source.default_value!r}"
                )
        elif not _is_dataset(source):
            raise TypeError(
                "dataset_or_pipeline_parameter must be a Dataset or a PipelineParameter; "
                f"got {type(source).__name__}"
            )
        if mode not in self.MODES:
            raise ValueError(
                f"mode must be one of {', '.join(map(repr, self.MODES))}; got {mode!r}"
            )
        _require(path_on_compute, str | None, "path_on_compute", "a string or None")
        self.dataset = source
        self.mode = mode
        self.path_on_compute = path_on_compute

    def as_mount(self, path_on_compute: str | None = None) -> DatasetConsumptionConfig:
        """The same input in ``mount`` mode."""
        return DatasetConsumptionConfig(self.name, self.dataset, "mount", path_on_compute)

    def as_download(self, path_on_compute: str | None = None) -> DatasetConsumptionConfig:
        """The same input in ``download`` mode."""
        return DatasetConsumptionConfig(self.name, self.dataset, "download", path_on_compute)

    def __repr__(self) -> str:
        return f"DatasetConsumptionConfig(name={self.name!r}, mode={self.mode!r})"


class PipelineData:
    """An output of one step, which a later step may take as an input.

    Parameters
    ----------
    name : str
        Letters, digits and ``_``, starting with a letter or ``_``; unique in a pipeline.
    datastore : Datastore, optional
        Where the output is written; the workspace's default datastore when None.
    output_path_on_compute : str, optional
        Recorded as Azure records it.
    output_name, output_mode, output_overwrite, data_type, is_directory
        Accepted as Azure accepts them and recorded.
    """

    OUTPUT_MODES = ("mount", "upload")

    def __init__(
        self,
        name: str,
        datastore: Any = None,
        output_name: str | None = None,
        output_mode: str = "mount",
        output_path_on_compute: str | None = None,
        output_overwrite: bool | None = None,
        data_type: str | None = None,
        is_directory: bool | None = None,
    ) -> None:
        self.name = _check_data_name(name)
        if datastore is not None and not isinstance(getattr(datastore, "name", None), str):
            raise TypeError(
                f"datastore must be a Datastore or None; got {type(datastore).__name__}"
            )
        if output_mode not in self.OUTPUT_MODES:
            raise ValueError(
                f"output_mode must be one of {', '.join(map(repr, self.OUTPUT_MODES))}; "
                f"got {output_mode!r}"
            )
        self.datastore = datastore
        self.output_name = output_name or name
        self.output_mode = output_mode
        self.output_path_on_compute = output_path_on_compute
        self.output_overwrite = output_overwrite
        self.data_type = data_type
        self.is_directory = is_directory

    def as_dataset(self) -> PipelineData:
        """This output, to be consumed as a dataset by a later step."""
        return self

    def as_input(self, input_name: str | None = None) -> PipelineData:
        """This output, to be consumed as an input by a later step."""
        return self

    def __repr__(self) -> str:
        return f"PipelineData(name={self.name!r})"


def _check_input(value: Any, what: str) -> Any:
    if isinstance(value, DatasetConsumptionConfig | PipelineData) or _is_dataset(value):
        return value
    if isinstance(value, PipelineParameter) and value.holds_dataset:
        return value
    raise TypeError(
        f"{what} must be a Dataset, a DatasetConsumptionConfig, a PipelineParameter holding a "
        f"Dataset, or a PipelineData; got {value!r}"
    )


def _check_list(value: Any, what: str) -> list[Any]:
    return [] if value is None else list(_require(value, list | tuple, what, "a list"))


class ParallelRunStep:
    """A step that runs an entry script over one input, in parallel mini-batches.

    Parameters
    ----------
    name : str
        3 to 32 characters matching ``^[a-z]([-a-z0-9]*[a-z0-9])?$``; unique in a pipeline.
    parallel_run_config : ParallelRunConfig
        The script, its environment and how to run it.
    inputs : list
        One data input (a Dataset, a DatasetConsumptionConfig, a PipelineParameter holding a
        Dataset, or the PipelineData output of another step), split into mini-batches.
    output : PipelineData, optional
        Where the step's outputs (the append_row file) go.
    side_inputs : list, optional
        Inputs given whole to every worker (their local paths reach the script's argv when
        listed in ``arguments``).
    arguments : list, optional
        Values for the script's argv: str, numbers, PipelineParameters, or inputs.
    allow_reuse : bool
        Return the earlier result when script, config, inputs and parameters are unchanged.

    Examples
    --------
    >>> step = ParallelRunStep(name="predict-digits-mnist", parallel_run_config=config,
    ...                        inputs=[mnist_input], output=inferences)  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str,
        parallel_run_config: ParallelRunConfig,
        inputs: list[Any],
        output: PipelineData | None = None,
        side_inputs: list[Any] | None = None,
        arguments: list[Any] | None = None,
        allow_reuse: bool = True,
    ) -> None:
        from .config import ParallelRunConfig

        _require(name, str, "name", "a string")
        if not (3 <= len(name) <= 32 and _STEP_NAME.match(name)):
            raise ValueError(
                "name must be 3 to 32 lower-case letters, digits and '-', starting with a letter "
                f"and not ending with '-' (^[a-z]([-a-z0-9]*[a-z0-9])?$); got {name!r}"
            )
        _require(
            parallel_run_config, ParallelRunConfig, "parallel_run_config", "a ParallelRunConfig"
        )
        inputs = _check_list(inputs, "inputs")
        if len(inputs) != 1:
            raise ValueError(
                "inputs must hold exactly one data input (a ParallelRunStep splits one input "
                f"into mini-batches; give the others as side_inputs); got {len(inputs)}"
            )
        _check_input(inputs[0], "inputs[0]")
        _require(output, PipelineData | None, "output", "a PipelineData or None")
        side_inputs = _check_list(side_inputs, "side_inputs")
        for i, side_input in enumerate(side_inputs):
            _check_input(side_input, f"side_inputs[{i}]")
        arguments = _check_list(arguments, "arguments")
        for i, argument in enumerate(arguments):
            if not isinstance(argument, _SCALARS | PipelineParameter):
                _check_input(argument, f"arguments[{i}]")
        if not isinstance(allow_reuse, bool):
            raise TypeError(f"allow_reuse must be True or False; got {allow_reuse!r}")
        self.name = name
        self.parallel_run_config = parallel_run_config
        self.inputs = inputs
        self.output = output
        self.side_inputs = side_inputs
        self.arguments = arguments
        self.allow_reuse = allow_reuse

    def consumed(self) -> Iterator[Any]:
        """Everything the step reads: its input, side inputs and input-valued arguments."""
        yield from self.inputs
        yield from self.side_inputs
        yield from (a for a in self.arguments if not isinstance(a, _SCALARS))

    def pipeline_parameters(self) -> list[PipelineParameter]:
        """The PipelineParameters this step refers to, its configuration's first."""
        found = list(self.parallel_run_config.pipeline_parameters())
        for item in self.consumed():
            if isinstance(item, DatasetConsumptionConfig):
                item = item.dataset
            if isinstance(item, PipelineParameter):
                found.append(item)
        return found

    def __repr__(self) -> str:
        return f"ParallelRunStep(name={self.name!r})"


def _same_default(a: Any, b: Any) -> bool:
    return a is b or (isinstance(a, _SCALARS) and type(a) is type(b) and a == b)


class Pipeline:
    """Steps to run together, in the order their PipelineData outputs and inputs require.

    Parameters
    ----------
    workspace : Workspace
        The workspace the pipeline runs in.
    steps : list of ParallelRunStep
        The steps; a step reading another's PipelineData output runs after it.
    description : str, optional
        Shown with the pipeline's runs.
    default_source_directory : str, optional
        Recorded; each step's ParallelRunConfig names its own source_directory.

    Examples
    --------
    >>> pipeline = Pipeline(workspace=ws, steps=[step])                  # doctest: +SKIP
    >>> run = Experiment(ws, "digit_identification").submit(pipeline)      # doctest: +SKIP
    """

    def __init__(
        self,
        workspace: Workspace,
        steps: list[ParallelRunStep],
        description: str | None = None,
        default_source_directory: str | None = None,
    ) -> None:
        _require(workspace, Workspace, "workspace", "a Workspace")
        steps = _check_list(steps, "steps")
        if not steps:
            raise ValueError("steps must hold at least one ParallelRunStep; got []")
        for i, step in enumerate(steps):
            _require(step, ParallelRunStep, f"steps[{i}]", "a ParallelRunStep")
        self.workspace = workspace
        self.description = description
        self.default_source_directory = default_source_directory
        self.steps = _in_dependency_order(steps)
        self._parameters = _collect_parameters(self.steps)

    def parameters(self) -> dict[str, PipelineParameter]:
        """Every PipelineParameter of the pipeline, by name."""
        return dict(self._parameters)

    def validate(self) -> list[str]:
        """The problems found in the pipeline: none, since it is checked when made (Azure API)."""
        return []

    def __repr__(self) -> str:
        return f"Pipeline(steps={[step.name for step in self.steps]!r})"


def _in_dependency_order(steps: list[ParallelRunStep]) -> list[ParallelRunStep]:
    """The steps, each after those producing its PipelineData inputs (else as given)."""
    producer: dict[str, str] = {}
    for i, step in enumerate(steps):
        if any(other.name == step.name for other in steps[:i]):
            raise ValueError(f"steps: two steps are named {step.name!r}; step names must be unique")
        if step.output is not None:
            if step.output.name in producer:
                raise ValueError(
                    f"steps: {producer[step.output.name]!r} and {step.name!r} both write the "
                    f"PipelineData {step.output.name!r}; each output needs its own name"
                )
            producer[step.output.name] = step.name
    needs: dict[str, set[str]] = {step.name: set() for step in steps}
    for step in steps:
        for data in (item for item in step.consumed() if isinstance(item, PipelineData)):
            if data.name not in producer:
                raise ValueError(
                    f"step {step.name!r} reads PipelineData {data.name!r}, which no step of the "
                    "pipeline produces"
                )
            needs[step.name].add(producer[data.name])
    ordered: list[ParallelRunStep] = []
    placed: set[str] = set()
    while len(ordered) < len(steps):
        ready = [s for s in steps if s.name not in placed and needs[s.name] <= placed]
        if not ready:
            stuck = sorted(s.name for s in steps if s.name not in placed)
            raise ValueError(
                f"steps: {', '.join(map(repr, stuck))} depend on each other's PipelineData in a "
                "cycle"
            )
        ordered.append(ready[0])
        placed.add(ready[0].name)
    return ordered


def _collect_parameters(steps: list[ParallelRunStep]) -> dict[str, PipelineParameter]:
    found: dict[str, PipelineParameter] = {}
    for step in steps:
        for parameter in step.pipeline_parameters():
            known = found.setdefault(parameter.name, parameter)
            if known is not parameter and not _same_default(
                known.default_value, parameter.default_value
            ):
                raise ValueError(
                    f"two PipelineParameters are named {parameter.name!r} with different "
                    f"defaults ({known.default_value!r} and {parameter.default_value!r}); "
                    "use one PipelineParameter object or different names"
                )
    return found


def resolve_parameters(pipeline: Pipeline, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The value of every parameter of ``pipeline``: its override, else its default.

    Parameters
    ----------
    pipeline : Pipeline
        The pipeline being submitted.
    overrides : dict, optional
        ``pipeline_parameters`` given to ``submit``: values by parameter name.

    Returns
    -------
    dict
        Parameter name to value.
    """
    overrides = {} if overrides is None else overrides
    _require(overrides, dict, "pipeline_parameters", "a dict of values by parameter name")
    known = pipeline.parameters()
    for name, value in overrides.items():
        if name not in known:
            listed = ", ".join(sorted(known)) or "(none)"
            raise ValueError(
                f"pipeline_parameters: unknown parameter {name!r}; "
                f"the pipeline's parameters are: {listed}"
            )
        default = known[name].default_value
        if known[name].holds_dataset != (
            isinstance(value, DatasetConsumptionConfig) or _is_dataset(value)
        ):
            raise TypeError(
                f"pipeline_parameters: {name!r} must be of the kind of its default "
                f"({default!r}); got {value!r}"
            )
    return {name: overrides.get(name, p.default_value) for name, p in known.items()}
