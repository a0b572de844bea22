"""ParallelRunConfig: every setting's good and bad values, v2 names, and PipelineParameters."""

from __future__ import annotations

import json
import os

import pytest

from jupyter_parallelrun import (
    AmlCompute,
    ComputeTarget,
    CondaDependencies,
    Environment,
    ParallelRunConfig,
    PipelineParameter,
)


def make(**settings):
    settings.setdefault("entry_script", "score.py")
    return ParallelRunConfig(**settings)


def test_defaults_as_azure():
    config = make()
    assert config.error_threshold == -1
    assert config.output_action == "append_row"
    assert config.node_count == 1
    assert config.process_count_per_node == 1
    assert config.mini_batch_size is None
    assert config.logging_level == "INFO"
    assert config.run_invocation_timeout == 60
    assert config.run_max_try == 3
    assert config.append_row_file_name == "parallel_run_step.txt"
    assert config.allowed_failed_count is None
    assert config.allowed_failed_percent is None
    assert config.partition_keys is None
    assert config.environment_variables == {}
    assert config.resource_monitor_interval == 5
    assert config.pipeline_parameters() == []


@pytest.mark.parametrize(
    ("setting", "given", "kept"),
    [
        ("error_threshold", 10, 10),
        ("error_threshold", 0, 0),
        ("output_action", "SUMMARY_ONLY", "summary_only"),
        ("node_count", 3, 3),
        ("process_count_per_node", 4, 4),
        ("mini_batch_size", 1, 1),
        ("mini_batch_size", "5", "5"),
        ("mini_batch_size", "10MB", "10MB"),
        ("mini_batch_size", "1024kb", "1024kb"),
        ("mini_batch_size", " 1GB ", "1GB"),
        ("logging_level", "debug", "DEBUG"),
        ("logging_level", "WARNING", "WARNING"),
        ("logging_level", "error", "ERROR"),
        ("run_invocation_timeout", 0.5, 0.5),
        ("run_max_try", 1, 1),
        ("append_row_file_name", "rows.csv", "rows.csv"),
        ("allowed_failed_count", -1, -1),
        ("allowed_failed_count", 2, 2),
        ("allowed_failed_percent", 0, 0),
        ("allowed_failed_percent", 12.5, 12.5),
        ("partition_keys", ("region", "day"), ["region", "day"]),
        ("environment_variables", {"A": "1"}, {"A": "1"}),
        ("description", "scores", "scores"),
        ("progress_update_timeout", 30, 30),
        ("first_task_creation_timeout", 1.5, 1.5),
        ("task_overhead_timeout", 2, 2),
        ("resource_monitor_interval", 0, 0),
        ("heartbeat_timeout", 1, 1),
    ],
)
def test_good_values(setting, given, kept):
    assert getattr(make(**{setting: given}), setting) == kept


@pytest.mark.parametrize(
    ("setting", "value", "error", "message"),
    [
        ("entry_script", None, TypeError, "entry_script must be the path of a .py file; got None"),
        ("entry_script", "score.txt", ValueError, "entry_script must be .*got 'score.txt'"),
        ("entry_script", 3, TypeError, "entry_script must be .*got 3"),
        ("error_threshold", -2, ValueError, "error_threshold must be an int >= -1; got -2"),
        ("error_threshold", 1.5, TypeError, "error_threshold must be an int >= -1; got 1.5"),
        ("error_threshold", True, TypeError, "error_threshold must be an int >= -1; got True"),
        ("output_action", "append", ValueError, "output_action must be one of 'append_row', "),
        ("output_action", 1, TypeError, "output_action must be one of .*got 1"),
        ("node_count", 0, ValueError, "node_count must be an int >= 1; got 0"),
        ("node_count", "2", TypeError, "node_count must be an int >= 1; got '2'"),
        ("process_count_per_node", 0, ValueError, "process_count_per_node must be an int >= 1"),
        ("mini_batch_size", "abc", ValueError, 'mini_batch_size must be a positive int or a size like "10MB" for tabular input; got "abc"'),  # noqa: E501
        ("mini_batch_size", "", ValueError, 'mini_batch_size must be .*; got ""'),
        ("mini_batch_size", "0", ValueError, 'mini_batch_size must be .*; got "0"'),
        ("mini_batch_size", "10TB", ValueError, 'mini_batch_size must be .*; got "10TB"'),
        ("mini_batch_size", 0, ValueError, "mini_batch_size must be .*; got 0"),
        ("mini_batch_size", 2.5, TypeError, "mini_batch_size must be .*; got 2.5"),
        ("logging_level", "LOUD", ValueError, "logging_level must be one of 'WARN.*got 'LOUD'"),
        ("run_invocation_timeout", 0, ValueError, "run_invocation_timeout must be a finite number > 0; got 0"),  # noqa: E501
        ("run_invocation_timeout", "60", TypeError, "run_invocation_timeout must be a finite number > 0"),  # noqa: E501
        ("run_max_try", 0, ValueError, "run_max_try must be an int >= 1; got 0"),
        ("append_row_file_name", "out/rows.txt", ValueError, "append_row_file_name must be a bare file name.*got 'out/rows.txt'"),  # noqa: E501
        ("append_row_file_name", "a\\b.txt", ValueError, "append_row_file_name must be a bare"),
        ("append_row_file_name", "..", ValueError, "append_row_file_name must be a bare.*got '..'"),
        ("allowed_failed_count", -2, ValueError, "allowed_failed_count must be an int >= -1; got -2"),  # noqa: E501
        ("allowed_failed_percent", 101, ValueError, "allowed_failed_percent must be a number from 0 to 100; got 101"),  # noqa: E501
        ("allowed_failed_percent", "5", TypeError, "allowed_failed_percent must be a number"),
        ("partition_keys", "region", TypeError, "partition_keys must be a list of non-empty strings; got 'region'"),  # noqa: E501
        ("partition_keys", ["region", ""], ValueError, "partition_keys must be a list of non"),
        ("partition_keys", [], ValueError, "partition_keys must be a list of non-empty .*got"),
        ("environment_variables", {"A": 1}, TypeError, "environment_variables must be a dict of strings to strings (a name not empty, without '='; no NUL); got {'A': 1}"),  # noqa: E501
        ("environment_variables", ["A"], TypeError, "environment_variables must be a dict"),
        ("progress_update_timeout", -1, ValueError, "progress_update_timeout must be a finite number > 0; got -1"),  # noqa: E501
        ("first_task_creation_timeout", 0, ValueError, "first_task_creation_timeout must be a finite number > 0"),  # noqa: E501
        ("task_overhead_timeout", "1", TypeError, "task_overhead_timeout must be a finite number > 0"),  # noqa: E501
        ("resource_monitor_interval", -1, ValueError, "resource_monitor_interval must be a finite number >= 0; got -1"),  # noqa: E501
        ("heartbeat_timeout", 0, ValueError, "heartbeat_timeout must be a finite number >= 1; got 0"),  # noqa: E501
        ("environment", "env", TypeError, "environment must be an Environment or None; got str"),
        ("compute_target", 3, TypeError, "compute_target must be a ComputeTarget, a compute"),
        ("compute_target", "", ValueError, "compute_target must be a compute target's name"),
        ("source_directory", 3, TypeError, "source_directory must be a path or None; got 3"),
    ],
)  # fmt: skip
def test_bad_values(setting, value, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        make(**{setting: value})


def test_absolute_entry_script_needs_no_source_directory(tmp_path):
    script = str(tmp_path / "score.py")
    assert make(entry_script=script).entry_script == script
    with pytest.raises(ValueError, match="entry_script must be relative to source_directory"):
        make(entry_script=script, source_directory=str(tmp_path))


def test_v2_names_map_onto_v1():
    config = make(
        max_concurrency_per_instance=3,
        instance_count=2,
        mini_batch_error_threshold=5,
        retry_settings={"max_retries": 4, "timeout": 30},
    )
    assert (config.process_count_per_node, config.node_count) == (3, 2)
    assert (config.max_concurrency_per_instance, config.instance_count) == (3, 2)
    assert config.allowed_failed_count == config.mini_batch_error_threshold == 5
    assert (config.run_max_try, config.run_invocation_timeout) == (4, 30)


def test_retry_settings_as_an_object():
    class RetrySettings:
        max_retries = 2
        timeout = 10

    config = make(retry_settings=RetrySettings())
    assert (config.run_max_try, config.run_invocation_timeout) == (2, 10)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"node_count": 2, "instance_count": 3}, "node_count=2 and instance_count=3"),
        (
            {"process_count_per_node": 2, "max_concurrency_per_instance": 4},
            "process_count_per_node=2 and max_concurrency_per_instance=4",
        ),
        (
            {"allowed_failed_count": 1, "mini_batch_error_threshold": 2},
            "allowed_failed_count=1 and mini_batch_error_threshold=2",
        ),
        ({"run_max_try": 5, "retry_settings": {"max_retries": 2}}, "run_max_try=5"),
    ],
)
def test_v1_and_v2_names_that_disagree(settings, message):
    with pytest.raises(ValueError, match=message):
        make(**settings)


def test_v2_values_are_validated():
    with pytest.raises(ValueError, match="process_count_per_node must be an int >= 1; got 0"):
        make(max_concurrency_per_instance=0)
    with pytest.raises(ValueError, match="retry_settings takes the keys"):
        make(retry_settings={"retries": 2})
    with pytest.raises(ValueError, match="run_max_try must be an int >= 1; got 0"):
        make(retry_settings={"max_retries": 0})


def test_pipeline_parameters_are_checked_through_their_default():
    with pytest.raises(
        ValueError, match="process_count_per_node must be an int >= 1; got 0 .*'pc'"
    ):
        make(process_count_per_node=PipelineParameter("pc", 0))
    with pytest.raises(ValueError, match="mini_batch_size .*got \"abc\" .*'size'"):
        make(mini_batch_size=PipelineParameter("size", "abc"))


def test_resolved_replaces_parameters(tmp_path):
    size = PipelineParameter(name="batch_size_param", default_value="5")
    processes = PipelineParameter(name="process_count_param", default_value=2)
    level = PipelineParameter(name="level", default_value="info")
    config = make(
        source_directory=str(tmp_path),
        mini_batch_size=size,
        process_count_per_node=processes,
        logging_level=level,
        run_max_try=PipelineParameter(name="tries", default_value=2),
        environment_variables={"A": "1"},
    )
    assert config.pipeline_parameters() == [size, processes, level, config.run_max_try]
    defaults = config.resolved({})
    assert defaults["mini_batch_size"] == "5"
    assert defaults["process_count_per_node"] == 2
    assert defaults["logging_level"] == "INFO"
    assert defaults["run_max_try"] == 2
    assert defaults["source_directory"] == os.path.abspath(tmp_path)
    assert defaults["environment"] is None and defaults["compute_target"] is None
    json.dumps(defaults)
    overridden = config.resolved({"batch_size_param": "1", "process_count_param": 1})
    assert (overridden["mini_batch_size"], overridden["process_count_per_node"]) == ("1", 1)


def test_resolved_takes_numbers_given_as_text():
    config = make(
        node_count=PipelineParameter("nodes", 1),
        run_invocation_timeout=PipelineParameter("timeout", 60),
    )
    resolved = config.resolved({"nodes": "2", "timeout": "1.5"})
    assert (resolved["node_count"], resolved["run_invocation_timeout"]) == (2, 1.5)


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ({"process_count_param": 0}, ValueError, "process_count_per_node must be an int >= 1; got 0"),  # noqa: E501
        ({"process_count_param": "two"}, TypeError, "process_count_per_node must be an int >= 1"),
        ({"batch_size_param": "abc"}, ValueError, 'mini_batch_size must be .*got "abc"'),
    ],
)  # fmt: skip
def test_resolved_checks_overrides(override, error, message):
    config = make(
        mini_batch_size=PipelineParameter("batch_size_param", "5"),
        process_count_per_node=PipelineParameter("process_count_param", 2),
    )
    name = next(iter(override))
    with pytest.raises(error, match=f"{message}.*pipeline parameter '{name}'"):
        config.resolved(override)


def test_resolved_environment_and_compute(ws):
    env = Environment("batch_environment")
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=["pandas"])
    compute = ComputeTarget.create(ws, "cpucluster", AmlCompute.provisioning_configuration())
    resolved = make(environment=env, compute_target=compute).resolved({})
    assert resolved["environment"]["name"] == "batch_environment"
    assert resolved["environment"]["python"]["conda_dependencies"]["pip_packages"] == ["pandas"]
    assert resolved["compute_target"] == "cpucluster"
    assert make(compute_target="other").resolved({})["compute_target"] == "other"
    json.dumps(resolved)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("run_invocation_timeout", float("nan"), "run_invocation_timeout must be a finite number > 0; got nan"),  # noqa: E501
        ("run_invocation_timeout", float("inf"), "run_invocation_timeout must be a finite number > 0; got inf"),  # noqa: E501
        ("progress_update_timeout", float("nan"), "progress_update_timeout must be a finite number > 0; got nan"),  # noqa: E501
        ("first_task_creation_timeout", float("inf"), "first_task_creation_timeout must be a finite number > 0; got inf"),  # noqa: E501
        ("task_overhead_timeout", float("-inf"), "task_overhead_timeout must be a finite number > 0; got -inf"),  # noqa: E501
        ("resource_monitor_interval", float("nan"), "resource_monitor_interval must be a finite number >= 0; got nan"),  # noqa: E501
        ("heartbeat_timeout", 1e-9, "heartbeat_timeout must be a finite number >= 1; got 1e-09"),
        ("heartbeat_timeout", float("nan"), "heartbeat_timeout must be a finite number >= 1; got nan"),  # noqa: E501
        ("allowed_failed_percent", float("nan"), "allowed_failed_percent must be a number from 0 to 100; got nan"),  # noqa: E501
        ("append_row_file_name", "rows\0.txt", "append_row_file_name must be a bare file name (no '/', '\\\\' or NUL, not '.' or '..', at most 255 bytes); got 'rows\\x00.txt'"),  # noqa: E501
        ("append_row_file_name", "r" * 300, f"at most 255 bytes); got {'r' * 40!r}... (300 characters)"),  # noqa: E501
        ("append_row_file_name", "é" * 128, "append_row_file_name must be a bare file name"),
    ],
)  # fmt: skip
def test_values_that_would_disable_a_limit_or_break_a_file_are_refused(setting, value, message):
    # NaN compares false with everything: a NaN timeout would never expire.
    with pytest.raises(ValueError) as refused:
        make(**{setting: value})
    assert message in str(refused.value)


@pytest.mark.parametrize("script", ["../x.py", "sub/../../x.py", "sub\\..\\..\\x.py"])
def test_entry_script_must_stay_inside_source_directory(tmp_path, script):
    with pytest.raises(
        ValueError,
        match=f"entry_script must be a path inside source_directory='{tmp_path}', without "
        f"'..'; got {script!r}".replace("\\", "\\\\")
        .replace("(", r"\(")
        .replace(")", r"\)"),
    ):
        make(entry_script=script, source_directory=str(tmp_path))
    assert make(entry_script="sub/x.py", source_directory=str(tmp_path)).entry_script == "sub/x.py"


def test_node_count_above_a_given_targets_max_nodes_is_refused_at_once(ws):
    compute = ComputeTarget.create(ws, "local4", AmlCompute.provisioning_configuration(max_nodes=4))
    with pytest.raises(
        ValueError, match="node_count=1000000 exceeds max_nodes=4 of compute target 'local4'"
    ):
        make(compute_target=compute, node_count=1_000_000)
    assert make(compute_target=compute, node_count=4).node_count == 4
