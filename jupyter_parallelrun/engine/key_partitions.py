"""Mini-batches by ``partition_keys`` taken from file paths, and each mini-batch's dataset.

A dataset made with a ``partition_format`` (``Dataset.File.from_files(...,
partition_format="{user}/{season}/{genres}.wav")``, or a table written by
``TabularDataset.partition_by``) carries its key values in its file paths. When every one of
a step's ``partition_keys`` is such a key, the files are grouped by those values without
reading them: one mini-batch per distinct combination, its files in sorted order, the
combinations in sorted order (as Azure's per-folder partitioning). ``partition.py`` uses this
(and falls back to grouping a loaded table for keys that are plain columns); it hands over
plain paths and read options, so this module knows nothing of the dataset classes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..records import partition_values


def path_partition_batches(
    paths: Iterator[str],
    partition_format: str,
    keys: list[str],
    table: dict[str, Any] | None,
    extra: dict[str, Any] | None = None,
) -> Iterator[tuple[dict, int | None]]:
    """``(spec, n_items)`` for each combination of ``keys`` found in ``paths``.

    ``table`` is None for file input, else ``{"format": ..., "options": ...}`` of the table
    the files hold (its read options, as ``TabularDataset.read_options``). ``extra`` goes
    into each file mini-batch's spec: for blob files, the ``storage`` options the worker
    downloads them with and the ``datastores`` its dataset names them on.
    """
    groups: dict[tuple[str, ...], list[str]] = {}
    for path in paths:
        values = partition_values(path, partition_format)
        groups.setdefault(tuple(values[key] for key in keys), []).append(path)
    for combination in sorted(groups):
        key_values = dict(zip(keys, combination, strict=True))
        files = groups[combination]
        if table is None:
            yield {"kind": "files", "paths": files, "keys": key_values, **(extra or {})}, len(files)
            continue
        spec = {"kind": "partition_files", "format": table["format"], "paths": files,
                "keys": key_values, "options": table["options"]}  # fmt: skip
        rows = _parquet_rows(files, table["options"]) if table["format"] == "parquet" else None
        yield spec, rows


def _parquet_rows(paths: list[str], options: dict[str, Any]) -> int:
    import pyarrow.parquet as pq

    from ..storage import open_file

    rows = 0
    for path in paths:
        with open_file(path, options.get("storage")) as handle:
            rows += pq.ParquetFile(handle).metadata.num_rows
    return rows


def load_partition_files(spec: dict[str, Any]) -> Any:
    """The table of a ``partition_files`` mini-batch: its files read and put together."""
    import pandas as pd

    from ..records import read_records

    frames = [read_records(path, spec["format"], spec["options"]) for path in spec["paths"]]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
