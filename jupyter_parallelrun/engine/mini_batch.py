"""One mini-batch as the worker sees it: its record, and loading it.

:func:`load_mini_batch` turns a spec that :mod:`.partition` made into what
``run(mini_batch)`` receives. The worker imports only this side of partitioning: reading a
spec needs the file formats, not the datasets it was made from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..input_data import InputData
from ..records import read_records
from .key_partitions import load_partition_files

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class MiniBatch:
    """One mini-batch: its id, its JSON-able spec, and its item count when known before loading.

    ``n_items`` is None for byte ranges of delimited and JSON-lines files, whose records are
    only counted once loaded.
    """

    id: int
    spec: dict
    n_items: int | None


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


def mini_batch_dataset(spec: dict[str, Any]) -> InputData | None:
    """``mini_batch_context.dataset``: a partition mini-batch's part of the input, its files or
    its rows, read as a dataset is (``iter_files``, ``to_path``, ``to_pandas_dataframe``...);
    None for a mini-batch that is not a partition. Made from the spec alone."""
    kind = spec.get("kind")
    if kind == "files" and "keys" in spec:
        sources = [_file_source(path, spec.get("datastores", [])) for path in spec["paths"]]
        return InputData({"type": "file", "sources": sources, "partition_format": None,
                          "transforms": []})  # fmt: skip
    if kind == "partition":
        table = {"format": "parquet", "sources": [{"path": spec["path"]}], "options": {}}
    elif kind == "partition_files":
        # The input's read options (column types, separator, storage) apply as they are.
        options = dict(spec["options"])
        partition_format = options.pop("partition_format", None)
        sources = [{"path": path} for path in spec["paths"]]
        table = {"format": spec["format"], "sources": sources, "options": options,
                 "partition_format": partition_format}  # fmt: skip
    else:
        return None
    options = {"include_path": False, "set_column_types": {}, **table["options"]}
    return InputData({"type": "tabular", "partition_format": None, "transforms": [],
                      **table, "options": options})  # fmt: skip


def _file_source(path: str, datastores: list[dict[str, Any]]) -> dict[str, Any]:
    """A dataset source for one file: on its blob datastore (credentials and all), or local."""
    for datastore in datastores:
        if path.startswith(datastore["root"] + "/"):
            return {"datastore": datastore, "path": path[len(datastore["root"]) + 1 :]}
    return {"path": path}
