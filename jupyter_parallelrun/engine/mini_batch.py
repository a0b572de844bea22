"""One mini-batch as the worker sees it: its record, its size setting, and loading it.

:func:`load_mini_batch` turns a spec that :mod:`.partition` made into what
``run(mini_batch)`` receives. The worker imports only this side of partitioning: reading a
spec needs the file formats, not the datasets it was made from.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..records import read_records
from .key_partitions import load_partition_files

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_FILES = 10
DEFAULT_BYTES = "1MB"
_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?B)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class MiniBatch:
    """One mini-batch: its id, its JSON-able spec, and its item count when known before loading.

    ``n_items`` is None for byte ranges of delimited and JSON-lines files, whose records are
    only counted once loaded.
    """

    id: int
    spec: dict
    n_items: int | None


def parse_mini_batch_size(value: Any, tabular: bool) -> int:
    """The mini-batch size as a number of files (file input) or of bytes (tabular input).

    Parameters
    ----------
    value : int, str or None
        File input: a positive int or digit string (default 10). Tabular input: bytes as an
        int or a string such as ``"1024"``, ``"1024KB"``, ``"10MB"``, ``"1GB"`` (1024-based,
        any case, optional space; default ``"1MB"``).
    tabular : bool
        Whether the input is a tabular dataset.

    Examples
    --------
    >>> parse_mini_batch_size("5", tabular=False)
    5
    >>> parse_mini_batch_size("10 mb", tabular=True)
    10485760
    """
    if value is None:
        value = DEFAULT_BYTES if tabular else DEFAULT_FILES
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    if tabular:
        allowed = 'a positive int or a size like "10MB" for tabular input'
    else:
        allowed = 'a positive number of files (an int or a digit string like "5") for file input'
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        found = _SIZE.match(value)
        if found and (tabular or not found.group(2)):
            number = int(found.group(1)) * _UNITS[(found.group(2) or "").upper()]
    if number is None or number < 1:
        raise ValueError(f"mini_batch_size must be {allowed}; got {shown}")
    return number


def load_mini_batch(spec: dict[str, Any]) -> list[str] | pd.DataFrame:
    """What ``run(mini_batch)`` receives for ``spec``: file paths, or a DataFrame."""
    kind = spec.get("kind")
    if kind == "files":
        return list(spec["paths"])
    if kind in ("delimited", "json_lines"):
        return read_records(
            spec["path"], kind, spec["options"], start=spec["start"], end=spec["end"]
        )
    if kind == "parquet":
        return read_records(spec["path"], kind, spec["options"], row_groups=spec["row_groups"])
    if kind == "partition":
        import pandas as pd

        return pd.read_parquet(spec["path"])
    if kind == "partition_files":
        return load_partition_files(spec)
    raise ValueError(
        'spec["kind"] must be "files", "delimited", "json_lines", "parquet", "partition" or '
        f'"partition_files"; got {kind!r}'
    )


def mini_batch_context(spec: dict[str, Any]) -> dict[str, Any]:
    """``{"partition_key_value": {column: value}}`` for a partition mini-batch, else ``{}``."""
    if "keys" in spec:
        return {"partition_key_value": dict(spec["keys"])}
    return {}


def describe(spec: dict[str, Any]) -> str:
    """A short human description of a mini-batch, for logs and error messages."""
    kind = spec.get("kind")
    if kind in ("files", "partition_files"):
        paths = spec["paths"]
        names = ", ".join(os.path.basename(p) for p in paths[:3])
        more = ", …" if len(paths) > 3 else ""
        keys = "".join(f"{k}={v!r}, " for k, v in spec.get("keys", {}).items())
        return f"{keys}{len(paths)} file{'s' if len(paths) != 1 else ''}: {names}{more}"
    if kind in ("delimited", "json_lines"):
        return f"{os.path.basename(spec['path'])} bytes {spec['start']}–{spec['end']}"
    if kind == "parquet" and spec["row_groups"] is None:
        return f"{os.path.basename(spec['path'])} (unreadable Parquet file)"
    if kind == "parquet":
        groups = spec["row_groups"]
        span = str(groups[0]) if len(groups) == 1 else f"{groups[0]}–{groups[-1]}"
        return f"{os.path.basename(spec['path'])} row group{'s' if len(groups) > 1 else ''} {span}"
    if kind == "partition":
        return "partition " + ", ".join(f"{k}={v!r}" for k, v in spec["keys"].items())
    return repr(spec)
