"""One grammar per setting of a ParallelRunConfig: its parser, its default, and how text reads.

Every front door reads a setting through this module, so a value is accepted or refused alike,
with the same message, wherever it is given: ``ParallelRunConfig`` checks what it is given with
:func:`parse`; the ``parallelrun`` command line and the ``%parallelrun`` magics turn a flag's
text into a value with :func:`from_text` and hand it to ``ParallelRunConfig``; submit and the
engine read a step's stored settings back with :meth:`Settings.from_mapping`, and the engine
sizes mini-batches with :func:`mini_batch_size_for`.

Each parser takes the parameter's name and value and returns the value to keep, or raises
TypeError or ValueError with a message that names the parameter, the value and what is allowed.

``mini_batch_size`` follows Azure's grammar. Azure's ParallelRunConfig documents "1024, 1024KB,
10MB, and 1GB" and checks the text against ``^\\d+([kKmMgG][bB])*$``, reading the units as
multiples of 1024. So here: a positive int, or digits with an optional unit of KB, MB or GB in
any case, 1024-based; spaces around the number and the unit are let through, as
``ParallelRunConfig`` always has. ``"512B"`` and ``"1TB"`` are refused, as Azure refuses them
(the engine's own parser used to take both). File input takes a count of files, so a unit there
is refused when the step is submitted; tabular input reads a bare number as bytes.

This module imports nothing from the package: the API, the views and the engine all use it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

OUTPUT_ACTIONS = ("append_row", "summary_only")
LOGGING_LEVELS = ("WARNING", "INFO", "DEBUG", "ERROR", "CRITICAL")

DEFAULT_MINI_BATCH_FILES = 10
DEFAULT_MINI_BATCH_BYTES = "1MB"
DEFAULT_ERROR_THRESHOLD = -1
DEFAULT_OUTPUT_ACTION = "append_row"
DEFAULT_APPEND_ROW_FILE_NAME = "parallel_run_step.txt"
DEFAULT_NODE_COUNT = 1
DEFAULT_PROCESS_COUNT_PER_NODE = 1
DEFAULT_LOGGING_LEVEL = "INFO"
DEFAULT_RUN_INVOCATION_TIMEOUT = 60
DEFAULT_RUN_MAX_TRY = 3
#: As Azure's: no worker done with init() after this many seconds fails the step.
DEFAULT_FIRST_TASK_CREATION_TIMEOUT = 600
DEFAULT_RESOURCE_MONITOR_INTERVAL = 5
DEFAULT_HEARTBEAT_TIMEOUT = 60
#: Workers beat every heartbeat_timeout / 4 seconds (at most 5) and the runner looks every
#: 50 ms; below a second a worker busy starting or a loaded machine reads as a dead worker.
MIN_HEARTBEAT_TIMEOUT = 1
#: The longest file name most filesystems take (ext4, XFS, NTFS), in bytes.
MAX_FILE_NAME_BYTES = 255

_SIZE = re.compile(r"^\s*(\d+)\s*(KB|MB|GB)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return value


def check_number(name: str, value: Any, minimum: float, *, inclusive: bool) -> float:
    """``value`` as a finite number > ``minimum`` (>= when ``inclusive``).

    NaN compares false with everything, so a NaN timeout would never expire; infinity is
    refused too (the optional timeouts take None for "no limit")."""
    rule = f"a finite number {'>=' if inclusive else '>'} {minimum:g}"
    if not _is_number(value):
        raise TypeError(f"{name} must be {rule}; got {value!r}")
    if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
        raise ValueError(f"{name} must be {rule}; got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...], *, upper: bool) -> str:
    """``value`` as one of ``choices``, compared without regard to case."""
    allowed = ", ".join(map(repr, choices))
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {allowed}; got {value!r}")
    normal = value.upper() if upper else value.lower()
    if normal not in choices:
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    return normal


def check_percent(name: str, value: Any) -> float:
    """``value`` as a number in [0, 100]."""
    if not _is_number(value):
        raise TypeError(f"{name} must be a number from 0 to 100; got {value!r}")
    if not 0 <= value <= 100:
        raise ValueError(f"{name} must be a number from 0 to 100; got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` as True or False (not 0, 1 or text)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return value


def check_file_name(name: str, value: Any) -> str:
    """``value`` as a bare file name: no folder part, no NUL, at most 255 bytes in UTF-8."""
    rule = (
        f"{name} must be a bare file name (no '/', '\\\\' or NUL, not '.' or '..', "
        f"at most {MAX_FILE_NAME_BYTES} bytes)"
    )
    if not isinstance(value, str):
        raise TypeError(f"{rule}; got {value!r}")
    shown = repr(value) if len(value) <= 80 else f"{value[:40]!r}... ({len(value)} characters)"
    if (
        not value.strip()
        or any(c in value for c in "/\\\0")
        or value in (".", "..")
        or len(value.encode("utf-8", "surrogatepass")) > MAX_FILE_NAME_BYTES
    ):
        raise ValueError(f"{rule}; got {shown}")
    return value


def check_entry_script(name: str, value: Any, source_directory: Any) -> str:
    """``value`` as the path of a ``.py`` file, relative to ``source_directory`` when given."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be the path of a .py file; got {value!r}")
    if not value.endswith(".py") or value == ".py":
        raise ValueError(f"{name} must be the path of a .py file; got {value!r}")
    if source_directory is not None and os.path.isabs(value):
        raise ValueError(
            f"{name} must be relative to source_directory={str(source_directory)!r}; got {value!r}"
        )
    if source_directory is not None and ".." in value.replace("\\", "/").split("/"):
        # The snapshot holds source_directory only: a script outside it would not be there.
        raise ValueError(
            f"{name} must be a path inside source_directory={str(source_directory)!r}, "
            f"without '..'; got {value!r}"
        )
    return value


def check_str_list(name: str, value: Any) -> list[str]:
    """``value`` as a non-empty list of non-empty strings."""
    rule = f"{name} must be a list of non-empty strings"
    if not isinstance(value, list | tuple):
        raise TypeError(f"{rule}; got {value!r}")
    if not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{rule}; got {value!r}")
    return list(value)


def check_variables(name: str, value: Any) -> dict[str, str]:
    """``value`` as environment variables: a dict of strings to strings that a process's
    environment can hold (a name not empty, no '=' in a name, no NUL anywhere), so a name the
    worker's start would refuse is refused before any worker starts."""
    rule = f"{name} must be a dict of strings to strings (a name not empty, without '='; no NUL)"
    if not isinstance(value, Mapping):
        raise TypeError(f"{rule}; got {value!r}")
    wrong = {k: v for k, v in value.items() if not (isinstance(k, str) and isinstance(v, str))}
    if wrong:
        raise TypeError(f"{rule}; got {wrong!r}")
    wrong = {k: v for k, v in value.items() if not k or "=" in k or "\0" in k + v}
    if wrong:
        raise ValueError(f"{rule}; got {wrong!r}")
    return dict(value)


def _shown(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def check_mini_batch_size(name: str, value: Any) -> int | str | None:
    """None (the input's default), a positive int, or a count or size text (``"5"``,
    ``"1024KB"``, ``"10MB"``, ``"1GB"``), kept as given without its outer spaces."""
    rule = f'{name} must be a positive int or a size like "10MB" for tabular input'
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"{rule}; got {_shown(value)}")
        return value
    if not isinstance(value, str):
        raise TypeError(f"{rule}; got {_shown(value)}")
    match = _SIZE.match(value)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"{rule}; got {_shown(value)}")
    return value.strip()


def mini_batch_size_for(value: Any, tabular: bool) -> int:
    """The mini-batch size as a number of files (file input) or of bytes (tabular input).

    Parameters
    ----------
    value : int, str or None
        A value :func:`check_mini_batch_size` takes. File input: a count of files, as an int
        or digits (default 10). Tabular input: bytes, as an int or digits with an optional
        KB, MB or GB (1024-based, any case; default ``"1MB"``).
    tabular : bool
        Whether the input is a tabular dataset.

    Examples
    --------
    >>> mini_batch_size_for("5", tabular=False)
    5
    >>> mini_batch_size_for("10 mb", tabular=True)
    10485760
    """
    value = check_mini_batch_size("mini_batch_size", value)
    if value is None:
        value = DEFAULT_MINI_BATCH_BYTES if tabular else DEFAULT_MINI_BATCH_FILES
    if isinstance(value, int):
        return value
    number, unit = _SIZE.match(value).groups()
    if unit and not tabular:
        raise ValueError(
            "mini_batch_size must be a positive number of files (an int or a digit string "
            f'like "5") for file input; got {_shown(value)}'
        )
    return int(number) * _UNITS[(unit or "").upper()]


def _int_at_least(minimum: int) -> Callable[[str, Any], int]:
    return lambda name, value: check_int(name, value, minimum)


def _seconds(minimum: float, *, inclusive: bool, optional: bool = False) -> Callable:
    def check(name: str, value: Any) -> float | None:
        if optional and value is None:  # None: no limit
            return None
        return check_number(name, value, minimum, inclusive=inclusive)

    return check


def _default_for_none(check: Callable[[str, Any], Any], default: Any) -> Callable:
    # Documented as "optional, default ...": None asks for the default.
    return lambda name, value: check(name, default if value is None else value)


def _optional(check: Callable[[str, Any], Any]) -> Callable:
    return lambda name, value: None if value is None else check(name, value)


#: Each setting's parser: ``parser(name, value)`` returns the value to keep, or raises.
PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "mini_batch_size": check_mini_batch_size,
    "error_threshold": _int_at_least(-1),
    "output_action": lambda n, v: check_choice(n, v, OUTPUT_ACTIONS, upper=False),
    # As ever, an empty name asks for the default too.
    "append_row_file_name": lambda n, v: check_file_name(
        n, DEFAULT_APPEND_ROW_FILE_NAME if v in (None, "") else v
    ),
    "node_count": _int_at_least(1),
    "process_count_per_node": _default_for_none(_int_at_least(1), DEFAULT_PROCESS_COUNT_PER_NODE),
    "logging_level": lambda n, v: check_choice(n, v, LOGGING_LEVELS, upper=True),
    "run_invocation_timeout": _seconds(0, inclusive=False),
    "run_max_try": _int_at_least(1),
    "allowed_failed_count": _optional(_int_at_least(-1)),
    "allowed_failed_percent": _optional(check_percent),
    "partition_keys": _optional(check_str_list),
    "environment_variables": _default_for_none(check_variables, {}),
    "progress_update_timeout": _seconds(0, inclusive=False, optional=True),
    "first_task_creation_timeout": _seconds(0, inclusive=False, optional=True),
    "task_overhead_timeout": _seconds(0, inclusive=False, optional=True),
    "resource_monitor_interval": _seconds(0, inclusive=True),
    "heartbeat_timeout": _seconds(MIN_HEARTBEAT_TIMEOUT, inclusive=True),
    "preserve_order": check_bool,
}
#: The settings whose text is kept as text; the others' text is read as the number it spells.
TEXT_SETTINGS = frozenset(
    {"mini_batch_size", "output_action", "append_row_file_name", "logging_level"}
)


def parse(name: str, value: Any) -> Any:
    """``value`` of the setting ``name``, checked: the value to keep.

    Raises
    ------
    TypeError, ValueError
        With a message that names the setting, the value and what is allowed.

    Examples
    --------
    >>> parse("logging_level", "debug")
    'DEBUG'
    >>> parse("run_max_try", 0)
    Traceback (most recent call last):
    ValueError: run_max_try must be an int >= 1; got 0
    """
    return PARSERS[name](name, value)


def from_text(name: str, value: Any) -> Any:
    """A setting given as text (a command line, a PipelineParameter's value) as the value it
    spells: the int or float of a numeric setting's number, else the text itself, for
    :func:`parse` to accept or name (``mini_batch_size`` and the other settings of
    :data:`TEXT_SETTINGS` stay text). Values that are not text pass unchanged.

    >>> from_text("node_count", "3"), from_text("run_invocation_timeout", "1.5")
    (3, 1.5)
    >>> from_text("node_count", "three"), from_text("mini_batch_size", "5")
    ('three', '5')
    """
    if not isinstance(value, str) or name in TEXT_SETTINGS:
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def check_together(output_action: str, preserve_order: bool) -> None:
    """The rule between settings: preserve_order orders the append_row file's rows."""
    if preserve_order and output_action != "append_row":
        raise ValueError(
            "preserve_order=True orders the append_row file's rows, so it needs "
            f"output_action='append_row'; got output_action={output_action!r}"
        )


@dataclass(frozen=True)
class Settings:
    """Every setting of a step, parsed, as submit stores them and the engine reads them.

    Build it with :meth:`from_mapping`, which runs every setting's parser and fills in the
    defaults, so a stored step that holds a value no front door would take is refused with
    the message the front doors give. Its field defaults are the settings' defaults.
    ``mini_batch_size`` is kept as given; the input's kind turns it into files or bytes
    (:meth:`mini_batch_size_for`).
    """

    mini_batch_size: int | str | None = None
    error_threshold: int = DEFAULT_ERROR_THRESHOLD
    output_action: str = DEFAULT_OUTPUT_ACTION
    append_row_file_name: str = DEFAULT_APPEND_ROW_FILE_NAME
    node_count: int = DEFAULT_NODE_COUNT
    process_count_per_node: int = DEFAULT_PROCESS_COUNT_PER_NODE
    logging_level: str = DEFAULT_LOGGING_LEVEL
    run_invocation_timeout: float = DEFAULT_RUN_INVOCATION_TIMEOUT
    run_max_try: int = DEFAULT_RUN_MAX_TRY
    allowed_failed_count: int | None = None
    allowed_failed_percent: float | None = None
    partition_keys: list[str] | None = None
    environment_variables: dict[str, str] = field(default_factory=dict)
    progress_update_timeout: float | None = None
    first_task_creation_timeout: float | None = DEFAULT_FIRST_TASK_CREATION_TIMEOUT
    task_overhead_timeout: float | None = None
    resource_monitor_interval: float = DEFAULT_RESOURCE_MONITOR_INTERVAL
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT
    preserve_order: bool = False

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """The settings in ``values`` (other keys are ignored), each parsed; the rest default.

        >>> Settings.from_mapping({"logging_level": "debug"}).logging_level
        'DEBUG'
        """
        parsed = {f.name: parse(f.name, values[f.name]) for f in fields(cls) if f.name in values}
        settings = cls(**parsed)
        check_together(settings.output_action, settings.preserve_order)
        return settings

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of the setting ``name``.

        >>> Settings.default("heartbeat_timeout")
        60
        """
        found = {f.name: f for f in fields(cls)}[name]
        return found.default_factory() if found.default is MISSING else found.default

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-able dict; :meth:`from_mapping` reads it back."""
        return asdict(self)

    def mini_batch_size_for(self, tabular: bool) -> int:
        """The mini-batch size in files (file input) or bytes (tabular input)."""
        return mini_batch_size_for(self.mini_batch_size, tabular)
