"""The pipeline graph: ParallelRunStep and Pipeline, with the SDK v1 names and arguments, and
the values of a pipeline's parameters at submission.

These objects only describe what to run. They are checked when made; ``Experiment.submit``
turns a Pipeline into its description (``step_plan.py``) with the values that
:func:`resolve_parameters` gives its parameters. What the steps read and pass on
(PipelineParameter, DatasetConsumptionConfig, PipelineData) is in ``pipeline_inputs.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .config import ParallelRunConfig
from .pipeline_inputs import (
    SCALARS,
    DatasetConsumptionConfig,
    PipelineData,
    PipelineParameter,
    is_dataset,
    require_type,
)
from .workspace import Workspace

_STEP_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _check_input(value: Any, what: str) -> Any:
    if isinstance(value, DatasetConsumptionConfig | PipelineData) or is_dataset(value):
        return value
    if isinstance(value, PipelineParameter) and value.holds_dataset:
        return value
    raise TypeError(
        f"{what} must be a Dataset, a DatasetConsumptionConfig, a PipelineParameter holding a "
        f"Dataset, or a PipelineData; got {value!r}"
    )


def _check_list(value: Any, what: str) -> list[Any]:
    return [] if value is None else list(require_type(value, list | tuple, what, "a list"))


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
        require_type(name, str, "name", "a string")
        if not (3 <= len(name) <= 32 and _STEP_NAME.match(name)):
            raise ValueError(
                "name must be 3 to 32 lower-case letters, digits and '-', starting with a letter "
                f"and not ending with '-' (^[a-z]([-a-z0-9]*[a-z0-9])?$); got {name!r}"
            )
        require_type(
            parallel_run_config, ParallelRunConfig, "parallel_run_config", "a ParallelRunConfig"
        )
        inputs = _check_list(inputs, "inputs")
        if len(inputs) != 1:
            raise ValueError(
                "inputs must hold exactly one data input (a ParallelRunStep splits one input "
                f"into mini-batches; give the others as side_inputs); got {len(inputs)}"
            )
        _check_input(inputs[0], "inputs[0]")
        require_type(output, PipelineData | None, "output", "a PipelineData or None")
        side_inputs = _check_list(side_inputs, "side_inputs")
        for i, side_input in enumerate(side_inputs):
            _check_input(side_input, f"side_inputs[{i}]")
        arguments = _check_list(arguments, "arguments")
        for i, argument in enumerate(arguments):
            if not isinstance(argument, SCALARS | PipelineParameter):
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
        yield from (a for a in self.arguments if not isinstance(a, SCALARS))

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
    return a is b or (isinstance(a, SCALARS) and type(a) is type(b) and a == b)


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
        require_type(workspace, Workspace, "workspace", "a Workspace")
        steps = _check_list(steps, "steps")
        if not steps:
            raise ValueError("steps must hold at least one ParallelRunStep; got []")
        for i, step in enumerate(steps):
            require_type(step, ParallelRunStep, f"steps[{i}]", "a ParallelRunStep")
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
    require_type(overrides, dict, "pipeline_parameters", "a dict of values by parameter name")
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
            isinstance(value, DatasetConsumptionConfig) or is_dataset(value)
        ):
            raise TypeError(
                f"pipeline_parameters: {name!r} must be of the kind of its default "
                f"({default!r}); got {value!r}"
            )
    return {name: overrides.get(name, p.default_value) for name, p in known.items()}
