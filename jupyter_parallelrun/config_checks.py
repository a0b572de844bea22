"""The validators of ParallelRunConfig's settings (and of compute targets' counts).

Each takes the parameter's name and value and returns the value to keep, or raises TypeError or
ValueError with a message that names the parameter, the value and what is allowed. The config
runs them when it is made, and again on the values of a submission for the settings given as a
PipelineParameter, so both say the same.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

_SIZE = re.compile(r"^\s*(\d+)\s*(KB|MB|GB)?\s*$", re.IGNORECASE)


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


def check_optional(check: Callable[..., Any], name: str, value: Any, *args: Any, **kw: Any) -> Any:
    """``check(name, value, ...)``, letting None through."""
    return None if value is None else check(name, value, *args, **kw)


def check_choice(name: str, value: Any, choices: tuple[str, ...], *, upper: bool) -> str:
    """``value`` as one of ``choices``, compared without regard to case."""
    allowed = ", ".join(map(repr, choices))
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {allowed}; got {value!r}")
    normal = value.upper() if upper else value.lower()
    if normal not in choices:
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    return normal


def check_mini_batch_size(name: str, value: Any) -> int | str | None:
    """None, a positive int, or a count or size text (``"5"``, ``"1024KB"``, ``"10MB"``)."""
    rule = f'{name} must be a positive int or a size like "10MB" for tabular input'
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"{rule}; got {shown}")
        return value
    if not isinstance(value, str):
        raise TypeError(f"{rule}; got {shown}")
    match = _SIZE.match(value)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"{rule}; got {shown}")
    return value.strip()


def check_percent(name: str, value: Any) -> float:
    """``value`` as a number in [0, 100]."""
    if not _is_number(value):
        raise TypeError(f"{name} must be a number from 0 to 100; got {value!r}")
    if not 0 <= value <= 100:
        raise ValueError(f"{name} must be a number from 0 to 100; got {value!r}")
    return value


#: The longest file name most filesystems take (ext4, XFS, NTFS), in bytes.
MAX_FILE_NAME_BYTES = 255


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


def check_str_dict(name: str, value: Any) -> dict[str, str]:
    """``value`` as a dict of strings to strings."""
    rule = f"{name} must be a dict of strings to strings"
    if not isinstance(value, Mapping):
        raise TypeError(f"{rule}; got {value!r}")
    wrong = {k: v for k, v in value.items() if not (isinstance(k, str) and isinstance(v, str))}
    if wrong:
        raise TypeError(f"{rule}; got {wrong!r}")
    return dict(value)
