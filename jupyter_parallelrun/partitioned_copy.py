"""``TabularDataset.partition_by``: a partitioned copy of a table on a datastore, as Azure's.

The table is written as Parquet files under ``<target>/<guid>/<key1 value>/<key2 value>/``
(a new folder each call, so two copies never mix) and the result is a dataset of those files
whose ``partition_format`` gives the key columns back from the paths, as strings and after
the other columns (as Azure's). A step with ``partition_keys`` on such a dataset groups its
files by their paths, reading nothing until a worker loads its mini-batch. That dataset is
made by the table's own ``Dataset.File`` or ``Dataset.Tabular``.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

from .datastore import DataPath, Datastore

if TYPE_CHECKING:
    from .dataset import FileDataset, TabularDataset

#: Characters a key value cannot hold, because it becomes a folder name.
_UNSAFE = ("/", "\\", "\0")


def partition_by(
    dataset: TabularDataset,
    partition_keys: list[str],
    target: DataPath | tuple[Datastore, str],
    name: str | None = None,
    show_progress: bool = True,
    partition_as_file_dataset: bool = False,
) -> TabularDataset | FileDataset:
    """See :meth:`TabularDataset.partition_by`."""
    if (
        not isinstance(partition_keys, (list, tuple))
        or not partition_keys
        or not all(isinstance(key, str) and key for key in partition_keys)
    ):
        raise ValueError(
            f"partition_keys must be a non-empty list of column names; got {partition_keys!r}"
        )
    datastore, base = _target(target)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"name must be a non-empty string or None; got {name!r}")
    if name is not None and datastore.workspace is None:
        raise ValueError(
            f"name={name!r} registers the dataset, but target's datastore {datastore.name!r} "
            "belongs to no workspace; pass a datastore from Datastore.get(ws, name)"
        )
    keys = list(partition_keys)
    frame = dataset.to_pandas_dataframe()
    missing = [key for key in keys if key not in frame.columns]
    if missing:
        raise ValueError(
            f"partition_keys names columns {missing} that the dataset does not have; "
            f"columns: {[str(c) for c in frame.columns]}"
        )
    folder = f"{base}/{uuid.uuid4()}".lstrip("/")
    fs = datastore.fs
    written = 0
    for values, group in frame.groupby(keys, sort=True, dropna=False):
        parts = [_folder_name(key, value) for key, value in zip(keys, values, strict=True)]
        destination = datastore._url(f"{folder}/{'/'.join(parts)}/part-00000.parquet")
        fs.makedirs(os.path.dirname(destination), exist_ok=True)
        with fs.open(destination, "wb") as handle:
            group.drop(columns=keys).to_parquet(handle, index=False)
        written += 1
    if show_progress:
        print(f"Wrote {len(frame)} rows in {written} partitions to {datastore._url(folder)}")
    path = (datastore, f"{folder}/{'/'.join('*' * len(keys))}/*.parquet")
    partition_format = "/".join(f"{{{key}}}" for key in keys) + "/*.parquet"
    if partition_as_file_dataset:
        result = dataset.File.from_files(path, False, partition_format)
    else:
        result = dataset.Tabular.from_parquet_files(
            path, validate=False, partition_format=partition_format
        )
    if name is not None:
        result = result.register(datastore.workspace, name, create_new_version=True)
    return result


def _target(target: Any) -> tuple[Datastore, str]:
    if isinstance(target, DataPath):
        return target.datastore, target.path_on_datastore.strip("/")
    if isinstance(target, tuple) and len(target) == 2 and isinstance(target[0], Datastore):
        return target[0], str(target[1] or "").strip("/")
    raise ValueError(
        f"target must be a DataPath or a (Datastore, 'path/on/datastore') tuple; got {target!r}"
    )


def _folder_name(key: str, value: Any) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        raise ValueError(
            f"partition_keys column {key!r} has missing values, which cannot name a "
            "partition's folder; fill or drop them first"
        )
    text = value.isoformat() if isinstance(value, pd.Timestamp) else str(value)
    if not text or text in (".", "..") or any(c in text for c in _UNSAFE):
        raise ValueError(
            f"partition_keys column {key!r} has the value {text!r}, which cannot name a "
            "folder (empty, '.', '..', or holding '/', '\\' or a NUL)"
        )
    return text
