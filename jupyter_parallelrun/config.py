"""ParallelRunConfig: how a ParallelRunStep runs its entry script, and its validation.

Every setting is checked when the config is made. Settings given as a PipelineParameter are
checked through the parameter's default, then again by :meth:`ParallelRunConfig.resolved` with
the values of a submission. Every check is a setting's one parser in :mod:`.settings`, which
the command line, the magics and the engine use too, so all of them say the same.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .compute import ComputeTarget, check_node_count
from .environment import Environment
from .pipeline_inputs import PipelineParameter
from .settings import (
    DEFAULT_ERROR_THRESHOLD,
    DEFAULT_FIRST_TASK_CREATION_TIMEOUT,
    DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_LOGGING_LEVEL,
    DEFAULT_NODE_COUNT,
    DEFAULT_OUTPUT_ACTION,
    DEFAULT_RESOURCE_MONITOR_INTERVAL,
    DEFAULT_RUN_INVOCATION_TIMEOUT,
    DEFAULT_RUN_MAX_TRY,
    check_entry_script,
    check_together,
    from_text,
    parse,
)

#: The settings a PipelineParameter may give: checked through its default, and again with
#: the value of each submission.
PARAMETERISED = (
    "mini_batch_size",
    "node_count",
    "process_count_per_node",
    "logging_level",
    "run_invocation_timeout",
    "run_max_try",
)


def _check_field(field: str, value: Any) -> Any:
    """A parameterisable setting; a PipelineParameter is checked through its default."""
    if isinstance(value, PipelineParameter):
        try:
            parse(field, from_text(field, value.default_value))
        except (TypeError, ValueError) as error:
            raise type(error)(
                f"{error} (default_value of PipelineParameter {value.name!r})"
            ) from None
        return value
    return parse(field, value)


def _merge(v1_name: str, v1_value: Any, v1_default: Any, v2_name: str, v2_value: Any) -> Any:
    """The value of a setting with an SDK v1 and an SDK v2 name (v1 at its default yields)."""
    if v2_value is None:
        return v1_value
    if v1_value != v1_default and v1_value != v2_value:
        raise ValueError(
            f"{v1_name}={v1_value!r} and {v2_name}={v2_value!r} set the same thing; give one"
        )
    return v2_value


def _retry(retry_settings: Any) -> tuple[Any, Any]:
    """``(max_retries, timeout)`` of a dict or an object with those attributes."""
    if retry_settings is None:
        return None, None
    if isinstance(retry_settings, Mapping):
        unknown = set(retry_settings) - {"max_retries", "timeout"}
        if unknown:
            raise ValueError(
                "retry_settings takes the keys 'max_retries' and 'timeout'; "
                f"got {sorted(unknown)!r}"
            )
        return retry_settings.get("max_retries"), retry_settings.get("timeout")
    if not (hasattr(retry_settings, "max_retries") or hasattr(retry_settings, "timeout")):
        raise TypeError(
            "retry_settings must be a dict or an object with max_retries and timeout; "
            f"got {retry_settings!r}"
        )
    return getattr(retry_settings, "max_retries", None), getattr(retry_settings, "timeout", None)


class ParallelRunConfig:
    """How a ParallelRunStep runs: the entry script, its environment, and the parallelism,
    timeouts, retries and error budget.

    Parameters
    ----------
    environment : Environment, optional
        Checked against the workers' Python before any worker starts.
    entry_script : str
        The script defining ``init()`` and ``run(mini_batch)``; relative to source_directory.
    error_threshold : int
        Failed items (files or records) tolerated over the whole input; -1 ignores all.
    output_action : {"append_row", "summary_only"}
        Whether rows returned by ``run()`` are appended to one file or only counted.
    compute_target : ComputeTarget or str, optional
        The compute target, or its name.
    node_count : int or PipelineParameter
        Nodes used (<= the compute target's max_nodes).
    process_count_per_node : int or PipelineParameter, optional
        Worker processes per node (default 1).
    mini_batch_size : int, str or PipelineParameter, optional
        Files per mini-batch for file input (default 10); bytes for tabular input (``"1024"``,
        ``"1024KB"``, ``"10MB"``, ``"1GB"``; default ``"1MB"``).
    source_directory : str, optional
        The folder with the script and what it imports; the workers' working directory.
    description : str, optional
        Shown with the step's runs.
    logging_level : str or PipelineParameter
        ``"WARNING"``, ``"INFO"`` or ``"DEBUG"`` (also ``"ERROR"``, ``"CRITICAL"``).
    run_invocation_timeout : int, float or PipelineParameter
        Seconds one ``run()`` call may take.
    run_max_try : int or PipelineParameter
        Tries of one mini-batch; a raise or a timeout is a failed try.
    append_row_file_name : str, optional
        The append_row output file; a bare file name, without NUL, of at most 255 bytes
        (default ``"parallel_run_step.txt"``).
    allowed_failed_count, allowed_failed_percent : optional
        Failed mini-batches tolerated, as a count (-1: all) or a percent of all.
    partition_keys : list of str, optional
        Tabular input: one mini-batch per group of these columns' values.
    environment_variables : dict, optional
        Variables set for the workers.
    mini_batch_error_threshold, max_concurrency_per_instance, instance_count : optional
        SDK v2 names for allowed_failed_count, process_count_per_node and node_count.
    retry_settings : dict or object, optional
        SDK v2: ``max_retries`` is taken as the number of tries (as Azure passes it on to
        run_max_try) and ``timeout`` as run_invocation_timeout.
    progress_update_timeout, first_task_creation_timeout, task_overhead_timeout : optional
        Seconds. No mini-batch finished for progress_update_timeout means a stuck job; no worker
        done with init() after first_task_creation_timeout (default 600, as Azure's; None: wait
        for ever) fails the step; task_overhead_timeout is added to each call's limit for
        loading its mini-batch's input.
    resource_monitor_interval : int or float, optional
        Seconds between CPU and memory samples per process (default 5; 0 turns it off).
    heartbeat_timeout : int or float, optional
        Seconds a worker process may go without a heartbeat while it is not inside ``run()``
        (starting, in ``init()``, or waiting for work) before it is treated as dead, killed
        and replaced (default 60, at least 1; a new process gets at least 30 s to connect).
        Inside ``run()``, run_invocation_timeout applies instead.
    preserve_order : bool, optional
        ``append_row`` only: write the rows in the order of the input (mini-batch by
        mini-batch, each mini-batch's rows as ``run()`` returned them) instead of the order
        the mini-batches finish in (default False). Rows that finish early wait in the runner
        for the ones before them; while too many wait, no new mini-batch starts, so a slow
        mini-batch holds the run back.

    Examples
    --------
    >>> config = ParallelRunConfig(source_directory="scripts",
    ...     entry_script="digit_identification.py", mini_batch_size="5", error_threshold=10,
    ...     output_action="append_row", environment=env, compute_target=compute,
    ...     node_count=2)                                                   # doctest: +SKIP
    """

    def __init__(
        self,
        environment: Environment | None = None,
        entry_script: str | None = None,
        error_threshold: int = DEFAULT_ERROR_THRESHOLD,
        output_action: str = DEFAULT_OUTPUT_ACTION,
        compute_target: ComputeTarget | str | None = None,
        node_count: int | PipelineParameter = DEFAULT_NODE_COUNT,
        process_count_per_node: int | PipelineParameter | None = None,
        mini_batch_size: int | str | PipelineParameter | None = None,
        source_directory: str | os.PathLike | None = None,
        description: str | None = None,
        logging_level: str | PipelineParameter = DEFAULT_LOGGING_LEVEL,
        run_invocation_timeout: float | PipelineParameter = DEFAULT_RUN_INVOCATION_TIMEOUT,
        run_max_try: int | PipelineParameter = DEFAULT_RUN_MAX_TRY,
        append_row_file_name: str | None = None,
        allowed_failed_count: int | None = None,
        allowed_failed_percent: float | None = None,
        partition_keys: list[str] | None = None,
        environment_variables: dict[str, str] | None = None,
        *,
        mini_batch_error_threshold: int | None = None,
        max_concurrency_per_instance: int | PipelineParameter | None = None,
        instance_count: int | PipelineParameter | None = None,
        retry_settings: Any = None,
        progress_update_timeout: float | None = None,
        first_task_creation_timeout: float | None = DEFAULT_FIRST_TASK_CREATION_TIMEOUT,
        task_overhead_timeout: float | None = None,
        resource_monitor_interval: float = DEFAULT_RESOURCE_MONITOR_INTERVAL,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        preserve_order: bool = False,
    ) -> None:
        if environment is not None and not isinstance(environment, Environment):
            raise TypeError(
                f"environment must be an Environment or None; got {type(environment).__name__}"
            )
        if compute_target is not None and not isinstance(compute_target, ComputeTarget | str):
            raise TypeError(
                "compute_target must be a ComputeTarget, a compute target's name, or None; "
                f"got {type(compute_target).__name__}"
            )
        if isinstance(compute_target, str) and not compute_target:
            raise ValueError("compute_target must be a compute target's name; got ''")
        if source_directory is not None and not isinstance(source_directory, str | os.PathLike):
            raise TypeError(f"source_directory must be a path or None; got {source_directory!r}")
        max_retries, timeout = _retry(retry_settings)

        self.environment = environment
        self.compute_target = compute_target
        self.source_directory = source_directory
        self._source_path = None if source_directory is None else os.path.abspath(source_directory)
        self.entry_script = check_entry_script("entry_script", entry_script, source_directory)
        self.description = description
        self.error_threshold = parse("error_threshold", error_threshold)
        self.output_action = parse("output_action", output_action)
        self.node_count = _check_field(
            "node_count",
            _merge("node_count", node_count, DEFAULT_NODE_COUNT, "instance_count", instance_count),
        )
        if isinstance(compute_target, ComputeTarget) and not isinstance(
            self.node_count, PipelineParameter
        ):
            # A target given by name, or a node_count given as a parameter, is checked at
            # submit(), where the target is looked up and the parameter has its value.
            check_node_count(compute_target.to_spec(), self.node_count)
        self.process_count_per_node = _check_field(
            "process_count_per_node",
            _merge(
                "process_count_per_node",
                process_count_per_node,
                None,
                "max_concurrency_per_instance",
                max_concurrency_per_instance,
            ),
        )
        self.mini_batch_size = _check_field("mini_batch_size", mini_batch_size)
        self.logging_level = _check_field("logging_level", logging_level)
        self.run_invocation_timeout = _check_field(
            "run_invocation_timeout",
            _merge(
                "run_invocation_timeout",
                run_invocation_timeout,
                DEFAULT_RUN_INVOCATION_TIMEOUT,
                "retry_settings",
                timeout,
            ),
        )
        self.run_max_try = _check_field(
            "run_max_try",
            _merge("run_max_try", run_max_try, DEFAULT_RUN_MAX_TRY, "retry_settings", max_retries),
        )
        self.append_row_file_name = parse("append_row_file_name", append_row_file_name)
        self.allowed_failed_count = parse(
            "allowed_failed_count",
            _merge(
                "allowed_failed_count",
                allowed_failed_count,
                None,
                "mini_batch_error_threshold",
                mini_batch_error_threshold,
            ),
        )
        self.allowed_failed_percent = parse("allowed_failed_percent", allowed_failed_percent)
        self.partition_keys = parse("partition_keys", partition_keys)
        self.environment_variables = parse("environment_variables", environment_variables)
        self.progress_update_timeout = parse("progress_update_timeout", progress_update_timeout)
        self.first_task_creation_timeout = parse(
            "first_task_creation_timeout", first_task_creation_timeout
        )
        self.task_overhead_timeout = parse("task_overhead_timeout", task_overhead_timeout)
        self.resource_monitor_interval = parse(
            "resource_monitor_interval", resource_monitor_interval
        )
        self.heartbeat_timeout = parse("heartbeat_timeout", heartbeat_timeout)
        self.preserve_order = parse("preserve_order", preserve_order)
        check_together(self.output_action, self.preserve_order)

    # SDK v2 names of the same settings.
    max_concurrency_per_instance = property(lambda self: self.process_count_per_node)
    instance_count = property(lambda self: self.node_count)
    mini_batch_error_threshold = property(lambda self: self.allowed_failed_count)

    def pipeline_parameters(self) -> list[PipelineParameter]:
        """The PipelineParameters among the settings."""
        values = (getattr(self, field) for field in PARAMETERISED)
        return [value for value in values if isinstance(value, PipelineParameter)]

    def resolved(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The concrete settings of a submission, as a JSON-able dict.

        Parameters
        ----------
        values : Mapping
            Values by PipelineParameter name; a parameter not in it takes its default.

        Returns
        -------
        dict
            Every setting, each PipelineParameter replaced by its value and checked again;
            ``environment`` as the Environment's spec, ``compute_target`` as a name and
            ``source_directory`` as an absolute path (or None).
        """
        settings: dict[str, Any] = {}
        for field in PARAMETERISED:
            value = getattr(self, field)
            if isinstance(value, PipelineParameter):
                parameter = value
                value = from_text(field, values.get(parameter.name, parameter.default_value))
                try:
                    value = parse(field, value)
                except (TypeError, ValueError) as error:
                    raise type(error)(
                        f"{error} (the value of pipeline parameter {parameter.name!r})"
                    ) from None
            settings[field] = value
        compute = self.compute_target
        return {
            "entry_script": self.entry_script,
            "source_directory": self._source_path,
            "description": self.description,
            "error_threshold": self.error_threshold,
            "output_action": self.output_action,
            **settings,
            "append_row_file_name": self.append_row_file_name,
            "allowed_failed_count": self.allowed_failed_count,
            "allowed_failed_percent": self.allowed_failed_percent,
            "partition_keys": self.partition_keys,
            "environment_variables": dict(self.environment_variables),
            "progress_update_timeout": self.progress_update_timeout,
            "first_task_creation_timeout": self.first_task_creation_timeout,
            "task_overhead_timeout": self.task_overhead_timeout,
            "resource_monitor_interval": self.resource_monitor_interval,
            "heartbeat_timeout": self.heartbeat_timeout,
            "preserve_order": self.preserve_order,
            "environment": None if self.environment is None else self.environment.to_spec(),
            "compute_target": compute.name if isinstance(compute, ComputeTarget) else compute,
        }

    def __repr__(self) -> str:
        return (
            f"ParallelRunConfig(entry_script={self.entry_script!r}, "
            f"source_directory={self.source_directory!r}, node_count={self.node_count!r}, "
            f"process_count_per_node={self.process_count_per_node!r})"
        )
