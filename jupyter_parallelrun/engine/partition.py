"""Partitioning: splitting a step's input into mini-batches.

The runner calls :func:`iter_mini_batches` to describe every mini-batch as a small JSON-able
spec; a worker loads a spec with :mod:`.mini_batch`'s ``load_mini_batch``, without importing
this module or the datasets. Splitting streams: files are listed lazily and tabular files are
cut by seeking, so neither a huge file list nor a huge file is ever held in memory (except
when ``partition_keys`` or take/skip/sample need the whole table, which is then loaded once).
"""

from __future__ import annotations

import codecs
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..input_data import InputData
from ..settings import mini_batch_size_for
from ..storage import open_file
from .credentials import without_credentials
from .key_partitions import path_partition_batches
from .mini_batch import MiniBatch

if TYPE_CHECKING:
    import pandas as pd

_READ_CHUNK = 64 * 1024
# Byte splitting looks for b"\n"; in these encodings a newline is not that single byte.
_WIDE_ENCODINGS = ("utf-16", "utf-32")


def iter_mini_batches(
    dataset: Any,
    mini_batch_size: Any,
    *,
    partition_keys: list[str] | None = None,
    scratch_dir: str | Path | None = None,
) -> Iterator[MiniBatch]:
    """Stream the mini-batches of ``dataset``, with ids 0, 1, 2, ... (the same every time).

    Parameters
    ----------
    dataset : InputData, or a FileDataset or TabularDataset (read through its spec)
    mini_batch_size : int, str or None
        Files or bytes per mini-batch, in the setting's one grammar
        (:func:`jupyter_parallelrun.settings.mini_batch_size_for`).
    partition_keys : list of str, optional
        One mini-batch per distinct combination of these keys' values, in sorted order: keys
        of the dataset's ``partition_format`` (file or tabular input; the files are grouped by
        their paths, see ``key_partitions.py``), or columns of a table.
    scratch_dir : str or Path, optional
        Where tables that must be rewritten go (partition groups, and tables with take, skip
        or sample applied); required in those cases.

    Notes
    -----
    File input: consecutive groups of ``mini_batch_size`` files.

    Delimited and JSON-lines input: byte ranges of about ``mini_batch_size`` bytes, cut after a
    newline and never crossing a file boundary. A delimited file's header line is left out of
    the ranges and put back when loading. A quoted field holding a newline would be cut in
    two: pass ``support_multi_line=True`` to the dataset to keep each such file whole (files
    in UTF-16 or UTF-32 are always kept whole).

    Parquet input: runs of row groups of up to ``mini_batch_size`` compressed bytes; a row
    group larger than that is a mini-batch of its own.
    """
    if not hasattr(dataset, "to_spec"):
        raise ValueError(f"dataset must be a FileDataset or a TabularDataset; got {dataset!r}")
    dataset = InputData.of(dataset)
    size = mini_batch_size_for(mini_batch_size, dataset.tabular)
    by_path = isinstance(partition_keys, (list, tuple)) and bool(partition_keys)
    if by_path and set(partition_keys) <= set(dataset.partition_keys):
        batches = _path_partition_batches(dataset, list(partition_keys))
    elif partition_keys is not None:
        if not dataset.tabular:
            raise ValueError(
                f"partition_keys={partition_keys!r} on a FileDataset must be keys of its "
                f"partition_format; its keys are {dataset.partition_keys}"
            )
        batches = _partition_batches(dataset, partition_keys, _scratch(scratch_dir, "partition"))
    elif not dataset.tabular:
        batches = _file_batches(dataset, size)
    elif dataset.transforms:
        batches = _rewritten_batches(dataset, size, _scratch(scratch_dir, "take/skip/sample"))
    else:
        batches = _tabular_batches(dataset, size)
    for mb_id, (spec, n_items) in enumerate(batches):
        # Specs are stored and logged for good: credentials go to the workers once instead.
        yield MiniBatch(mb_id, without_credentials(spec), n_items)


def count_mini_batches(
    dataset: Any,
    mini_batch_size: Any,
    *,
    partition_keys: list[str] | None = None,
    scratch_dir: str | Path | None = None,
) -> tuple[int, int | None]:
    """How many mini-batches :func:`iter_mini_batches` forms with the same arguments, and the
    items in them (None when some mini-batch's items are not known before it is read).

    Plain file input is counted from its files alone: a mini-batch is ``mini_batch_size`` of
    them, so the count is arithmetic, and a million files need no million specs.
    """
    dataset = InputData.of(dataset)
    if partition_keys is None and not dataset.tabular:
        files = sum(1 for _ in dataset.iter_files())
        return -(-files // mini_batch_size_for(mini_batch_size, False)), files
    total, items = 0, 0
    for mb in iter_mini_batches(
        dataset, mini_batch_size, partition_keys=partition_keys, scratch_dir=scratch_dir
    ):
        total += 1
        items = None if items is None or mb.n_items is None else items + mb.n_items
    return total, items


def _scratch(scratch_dir: str | Path | None, why: str) -> Path:
    if scratch_dir is None:
        raise ValueError(f"scratch_dir must be a folder when the input uses {why}; got None")
    folder = Path(scratch_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _file_batches(dataset: InputData, size: int) -> Iterator[tuple[dict, int]]:
    # Blob files travel with their datastores' storage options: the worker downloads them
    # (see fetch.py) and run() gets local paths, as with Azure's mount and download modes.
    storage = dataset.storage()
    extra = {"storage": storage} if storage else {}
    paths: list[str] = []
    for path in dataset.iter_files():
        paths.append(path)
        if len(paths) == size:
            yield {"kind": "files", "paths": paths, **extra}, len(paths)
            paths = []
    if paths:
        yield {"kind": "files", "paths": paths, **extra}, len(paths)


def _tabular_batches(dataset: InputData, size: int) -> Iterator[tuple[dict, int | None]]:
    fmt, options = dataset.format, dataset.read_options()
    storage = options.get("storage")
    for path in dataset.files:
        if fmt == "parquet":
            try:
                runs = list(_row_group_runs(path, size, storage))
            except Exception:  # noqa: BLE001 - any unreadable file: truncated, not Parquet, ...
                # One mini-batch for the whole file, whose row count is unknown: its worker
                # fails to read it and says why, and the file counts as one failed item,
                # while the other files go on.
                yield {"kind": fmt, "path": path, "row_groups": None, "options": options}, 1
                continue
            for groups, rows in runs:
                yield {"kind": fmt, "path": path, "row_groups": groups, "options": options}, rows
            continue
        whole = options.get("support_multi_line") or codecs.lookup(
            options["encoding"]
        ).name.startswith(_WIDE_ENCODINGS)
        header = fmt == "delimited" and options["header"]
        for start, end in _byte_ranges(path, size, header, whole, storage):
            yield {"kind": fmt, "path": path, "start": start, "end": end, "options": options}, None


def _byte_ranges(
    path: str, size: int, header: bool, whole: bool, storage: dict | None
) -> Iterator[tuple[int, int]]:
    with open_file(path, storage) as handle:
        start = len(handle.readline()) if header else 0
        total = handle.seek(0, os.SEEK_END)
        if whole:
            if start < total:
                yield start, total
            return
        while start < total:
            end = total
            if start + size < total:
                # Starting one byte early keeps a range that ends exactly on a newline whole.
                handle.seek(start + size - 1)
                end = _after_next_newline(handle, total)
            yield start, end
            start = end


def _after_next_newline(handle: Any, total: int) -> int:
    position = handle.tell()
    while True:
        chunk = handle.read(_READ_CHUNK)
        if not chunk:
            return total
        found = chunk.find(b"\n")
        if found != -1:
            return position + found + 1
        position += len(chunk)


def _row_group_runs(path: str, size: int, storage: dict | None) -> Iterator[tuple[list[int], int]]:
    import pyarrow.parquet as pq

    with open_file(path, storage) as handle:
        metadata = pq.ParquetFile(handle).metadata
    groups: list[int] = []
    used = rows = 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        compressed = sum(group.column(c).total_compressed_size for c in range(group.num_columns))
        if groups and used + compressed > size:
            yield groups, rows
            groups, used, rows = [], 0, 0
        groups.append(index)
        used += compressed
        rows += group.num_rows
    if groups:
        yield groups, rows


def _rewritten_batches(dataset: InputData, size: int, scratch: Path) -> Iterator[tuple[dict, int]]:
    # take/skip/sample count records across files, so the table is loaded once and rewritten
    # as one Parquet file with row groups of about mini_batch_size bytes.
    frame = dataset.to_pandas_dataframe()
    if frame.empty:
        return
    row_bytes = max(1, int(frame.memory_usage(deep=True, index=False).sum()) // len(frame))
    path = scratch / "table.parquet"
    _write_parquet(frame, path, row_group_size=max(1, size // row_bytes))
    for groups, rows in _row_group_runs(str(path), 1, None):
        yield {"kind": "parquet", "path": str(path), "row_groups": groups, "options": {}}, rows


def _path_partition_batches(
    dataset: InputData, keys: list[str]
) -> Iterator[tuple[dict, int | None]]:
    partition_format = dataset.partition_format
    if dataset.tabular:
        table = {"format": dataset.format, "options": dataset.read_options()}
        return path_partition_batches(dataset.source_files(), partition_format, keys, table)
    # Blob files: as _file_batches, with their datastores for mini_batch_context.dataset.
    storage = dataset.storage()
    blob = [source["datastore"] for source in dataset.to_spec()["sources"]
            if source.get("datastore", {}).get("root") in storage]  # fmt: skip
    extra = {"storage": storage, "datastores": blob} if storage else {}
    return path_partition_batches(dataset.iter_files(), partition_format, keys, None, extra)


def _partition_batches(
    dataset: InputData, partition_keys: Any, scratch: Path
) -> Iterator[tuple[dict, int]]:
    if (
        not isinstance(partition_keys, (list, tuple))
        or not partition_keys
        or not all(isinstance(key, str) for key in partition_keys)
    ):
        raise ValueError(
            f"partition_keys must be a non-empty list of column names; got {partition_keys!r}"
        )
    frame = dataset.to_pandas_dataframe()
    for key in partition_keys:
        if key not in frame.columns:
            raise ValueError(
                f"partition_keys names column {key!r}, which the dataset does not have; "
                f"available columns: {[str(c) for c in frame.columns]}"
            )
    keys = list(partition_keys)
    for index, (values, group) in enumerate(frame.groupby(keys, sort=True, dropna=False)):
        path = scratch / f"partition-{index:06d}.parquet"
        _write_parquet(group.reset_index(drop=True), path)
        key_values = {key: _plain(value) for key, value in zip(keys, values, strict=True)}
        yield {"kind": "partition", "path": str(path), "keys": key_values}, len(group)


def _write_parquet(frame: pd.DataFrame, path: Path, **options: Any) -> None:
    # The same input may be partitioned twice at once (counting and scheduling); writing
    # aside and renaming means a reader never sees a half-written file.
    partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    frame.to_parquet(partial, index=False, **options)
    os.replace(partial, path)


def _plain(value: Any) -> Any:
    """A JSON-able form of one key value (numpy scalars, timestamps, missing values)."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value
