"""The settings' one grammar: parsers, defaults, text, and mini_batch_size as Azure reads it."""

from __future__ import annotations

from dataclasses import fields

import pytest

from jupyter_parallelrun import settings
from jupyter_parallelrun.settings import Settings, from_text, mini_batch_size_for, parse


def test_every_setting_has_one_parser_and_one_default():
    assert {f.name for f in fields(Settings)} == set(settings.PARSERS)
    assert settings.TEXT_SETTINGS.issubset(settings.PARSERS)
    # Each default is a value its own parser keeps as it is.
    for name in settings.PARSERS:
        assert parse(name, Settings.default(name)) == Settings.default(name), name


def test_the_defaults_are_azures():
    assert Settings().to_dict() == {
        "mini_batch_size": None,
        "error_threshold": -1,
        "output_action": "append_row",
        "append_row_file_name": "parallel_run_step.txt",
        "node_count": 1,
        "process_count_per_node": 1,
        "logging_level": "INFO",
        "run_invocation_timeout": 60,
        "run_max_try": 3,
        "allowed_failed_count": None,
        "allowed_failed_percent": None,
        "partition_keys": None,
        "environment_variables": {},
        "progress_update_timeout": None,
        "first_task_creation_timeout": 600,
        "task_overhead_timeout": None,
        "resource_monitor_interval": 5,
        "heartbeat_timeout": 60,
        "preserve_order": False,
    }


@pytest.mark.parametrize(
    ("value", "tabular", "size"),
    [
        (None, False, 10),
        (5, False, 5),
        ("5", False, 5),
        (" 12 ", False, 12),
        (None, True, 1024**2),
        (1024, True, 1024),
        ("1024", True, 1024),
        ("1024KB", True, 1024**2),
        ("10MB", True, 10 * 1024**2),
        ("10 mb", True, 10 * 1024**2),
        ("1GB", True, 1024**3),
        ("1gB", True, 1024**3),
    ],
)
def test_mini_batch_size_in_files_and_bytes(value, tabular, size):
    assert mini_batch_size_for(value, tabular) == size
    assert Settings.from_mapping({"mini_batch_size": value}).mini_batch_size_for(tabular) == size


@pytest.mark.parametrize(
    ("value", "tabular", "error", "message"),
    [
        # Azure's check is ^\d+([kKmMgG][bB])*$: bytes and terabytes are not among its units.
        ("512B", True, ValueError, 'a size like "10MB" for tabular input; got "512B"'),
        ("1TB", True, ValueError, 'a size like "10MB" for tabular input; got "1TB"'),
        ("10XB", True, ValueError, 'got "10XB"'),
        ("abc", True, ValueError, 'got "abc"'),
        ("1.5MB", True, ValueError, 'got "1.5MB"'),
        ("-1", True, ValueError, 'got "-1"'),
        (0, True, ValueError, "got 0"),
        (1.5, True, TypeError, "got 1.5"),
        (True, True, TypeError, "got True"),
        ("10MB", False, ValueError, 'a positive number of files (an int or a digit string like '
         '"5") for file input; got "10MB"'),
        ("512B", False, ValueError, 'for tabular input; got "512B"'),
        (0, False, ValueError, "got 0"),
        (-3, False, ValueError, "got -3"),
    ],
)  # fmt: skip
def test_mini_batch_size_refused(value, tabular, error, message):
    with pytest.raises(error) as raised:
        mini_batch_size_for(value, tabular)
    assert str(raised.value).startswith("mini_batch_size must be ")
    assert str(raised.value).endswith(message)


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("node_count", "3", 3),
        ("node_count", "3.0", 3.0),
        ("node_count", "three", "three"),
        ("run_invocation_timeout", "0.5", 0.5),
        ("run_invocation_timeout", "nan", float("nan")),
        ("error_threshold", "-1", -1),
        ("mini_batch_size", "5", "5"),
        ("logging_level", "10", "10"),
        ("output_action", "append_row", "append_row"),
        ("node_count", 3, 3),
    ],
)
def test_text_reads_as_the_setting_reads_it(name, text, value):
    got = from_text(name, text)
    assert type(got) is type(value)
    assert got == value or (got != got and value != value)  # NaN is not equal to itself


def test_a_stored_mapping_is_parsed_and_checked_as_a_whole():
    stored = {"logging_level": "debug", "process_count_per_node": None, "other": "ignored"}
    read = Settings.from_mapping(stored)
    assert (read.logging_level, read.process_count_per_node) == ("DEBUG", 1)
    assert Settings.from_mapping(read.to_dict()) == read
    with pytest.raises(ValueError, match="run_max_try must be an int >= 1; got 0"):
        Settings.from_mapping({"run_max_try": 0})
    with pytest.raises(ValueError, match="preserve_order=True orders the append_row file's rows"):
        Settings.from_mapping({"preserve_order": True, "output_action": "summary_only"})


@pytest.mark.parametrize("size", ["512B", "1TB"])
def test_the_partitioner_refuses_what_parallel_run_config_refuses(tmp_path, size):
    from jupyter_parallelrun import Dataset, ParallelRunConfig
    from jupyter_parallelrun.engine.partition import iter_mini_batches

    (tmp_path / "rows.csv").write_text("a\n1\n")
    table = Dataset.Tabular.from_delimited_files(str(tmp_path / "rows.csv"))
    with pytest.raises(ValueError) as by_config:
        ParallelRunConfig(entry_script="score.py", mini_batch_size=size)
    with pytest.raises(ValueError) as by_engine:
        list(iter_mini_batches(table, size))
    assert str(by_engine.value) == str(by_config.value)
    assert str(by_engine.value).endswith(f'for tabular input; got "{size}"')


def _literal_defaults(names: set[str]) -> list[str]:
    """Where the package's code writes a default of these settings as a literal: a parameter
    or field default, ``.get(name, literal)`` or ``.get(name) or literal``."""
    import ast
    from pathlib import Path

    import jupyter_parallelrun

    package = Path(jupyter_parallelrun.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "settings.py" and path.parent == package:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            pairs: list[tuple[str, ast.AST]] = []
            if isinstance(node, ast.arguments):
                positional = node.posonlyargs + node.args
                pairs += zip(
                    [a.arg for a in positional[len(positional) - len(node.defaults) :]],
                    node.defaults,
                    strict=True,
                )
                pairs += [
                    (a.arg, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True) if d
                ]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                pairs.append((node.target.id, node.value))
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get":
                key = node.args[0] if node.args else None
                if isinstance(key, ast.Constant) and len(node.args) == 2:
                    pairs.append((key.value, node.args[1]))
            elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
                first = node.values[0]
                if isinstance(first, ast.Call) and getattr(first.func, "attr", None) == "get":
                    key = first.args[0] if first.args else None
                    if isinstance(key, ast.Constant):
                        pairs += [(key.value, v) for v in node.values[1:]]
            found += [
                f"{path.relative_to(package)}:{value.lineno} {name}={value.value!r}"
                for name, value in pairs
                if name in names and isinstance(value, ast.Constant) and value.value is not None
            ]
    return found


def test_the_settings_defaults_are_written_in_one_place():
    # heartbeat_timeout's and logging_level's were written three times each (config, runner,
    # scheduler or worker); now settings.py holds them, and the rest import its DEFAULT_*.
    # Left out: preserve_order's False, and defaults that mean something else where they are
    # (a worker spec without resource_monitor_interval samples nothing).
    names = {"heartbeat_timeout", "logging_level", "run_max_try", "run_invocation_timeout"}
    names |= {"first_task_creation_timeout", "error_threshold", "append_row_file_name"}
    assert _literal_defaults(names) == []
