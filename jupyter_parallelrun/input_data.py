"""A dataset's data, read from its definition alone: what the engine reads an input through.

A dataset is fully described by its spec (``Dataset.to_spec()``: its sources, each a local
pattern or a path on a datastore whose spec travels with it, its transforms and, for a table,
its format and read options). :class:`InputData` reads such a spec without the API's objects:
the files it matches (sorted, as a stream), the storage options of its blob datastores,
take/skip/sample, the whole table, the folder the files are under, and the fingerprint reuse
compares. The runner and its partitioner read a step's input through it, and a worker makes
``mini_batch_context.dataset`` with it; the API's datasets (``abstract_dataset.py``,
``dataset.py``) read their data through it too, so there is one reading of a definition.
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import itertools
import json
import os
import random
import re
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .blob_storage import connection_string, list_blobs
from .records import PARTITION_KEY, read_records
from .storage import (
    Listings,
    copy_file,
    filesystem,
    filesystem_for,
    iter_local_files,
    sort_key,
)

if TYPE_CHECKING:
    import pandas as pd


# -- datastores and sources, as specs ---------------------------------------------------------


def storage_options(datastore: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for the fsspec filesystem of the datastore ``datastore`` (a spec)."""
    if datastore["datastore_type"] == "Local":
        return {}
    account = [datastore.get(k) for k in ("account_key", "sas_token", "protocol", "endpoint")]
    return {"connection_string": connection_string(datastore["account_name"], *account)}


def datastore_url(datastore: dict[str, Any], path_on_datastore: str = "") -> str:
    """Where ``path_on_datastore`` is: a local path, or an ``az://`` URL."""
    relative = str(path_on_datastore or "").lstrip("/")
    root = datastore["root"]
    if datastore["datastore_type"] == "Local":
        return os.path.join(root, relative) if relative else root
    return f"{root}/{relative}" if relative else root


def blob_infos(datastore: dict[str, Any], path_on_datastore: str = "") -> dict[str, dict]:
    """The blobs at ``path_on_datastore`` (file, folder or glob): ``{url: info}``, with each
    blob's size and modification time, from listings only (no request per blob)."""
    fs = filesystem("az", storage_options(datastore), datastore["name"])
    return list_blobs(fs, datastore_url(datastore, path_on_datastore))


def datastore_files(
    datastore: dict[str, Any], path_on_datastore: str = "", listings: Listings | None = None
) -> Iterator[str]:
    """The files at ``path_on_datastore`` (file, folder or glob), as a sorted stream; a local
    datastore's folders are read through ``listings`` when given."""
    if datastore["datastore_type"] == "Local":
        return iter_local_files(datastore_url(datastore, path_on_datastore), listings)
    return iter(sorted(blob_infos(datastore, path_on_datastore), key=sort_key))


def source_files(source: dict[str, Any], listings: Listings | None = None) -> Iterator[str]:
    """Stream the files one source of a definition matches, in sorted order (local folders
    read through ``listings``, when given)."""
    if "datastore" in source:
        return datastore_files(source["datastore"], source["path"], listings)
    return iter_local_files(source["path"], listings)


def source_base(source: dict[str, Any]) -> str:
    """The folder (or URL) the source's files are under: the part before any glob."""
    location = source["path"]
    if "datastore" in source:
        location = datastore_url(source["datastore"], location)
    glob = re.search(r"[*?\[]", location)
    if glob:
        return location[: location.rfind("/", 0, glob.start())] or "/"
    return os.path.dirname(location) if os.path.isfile(location) else location


def _blob_datastores(definition: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        source["datastore"]
        for source in definition["sources"]
        if "datastore" in source and source["datastore"]["datastore_type"] != "Local"
    ]


#: What a dataset's spec holds besides its definition: they do not change its data.
_NOT_DATA = ("name", "version", "description", "tags")


# -- a definition, read --------------------------------------------------------------------------


class InputData:
    """The data of a dataset definition (``Dataset.to_spec()``): its files, or its table.

    Parameters
    ----------
    definition : dict
        A dataset's definition or spec (its name, version, description and tags are not
        part of its data); its ``"type"`` is ``"file"`` or ``"tabular"``.
    listings : storage.Listings, optional
        Where its local folders are read, once for every listing of it (the runner gives a
        step's input one); None: each listing reads them anew.

    Examples
    --------
    >>> data = InputData({"type": "file", "sources": [{"path": "/no/such/folder"}],
    ...                   "partition_format": None, "transforms": []})
    >>> data.tabular, list(data.iter_files())
    (False, [])
    """

    def __init__(self, definition: dict[str, Any], listings: Listings | None = None) -> None:
        if definition.get("type") not in ("file", "tabular"):
            raise ValueError(
                f'a dataset spec\'s "type" must be "file" or "tabular"; '
                f"got {definition.get('type')!r}"
            )
        self._definition = {k: v for k, v in definition.items() if k not in _NOT_DATA}
        self.listings = listings

    @classmethod
    def of(cls, dataset: Any) -> InputData:
        """The data of ``dataset``: an InputData, or a dataset (anything with ``to_spec()``)."""
        if isinstance(dataset, InputData):
            return dataset
        return cls(dataset.to_spec(), getattr(dataset, "listings", None))

    @property
    def tabular(self) -> bool:
        """Whether it is a table (else files)."""
        return self._definition["type"] == "tabular"

    def to_spec(self) -> dict[str, Any]:
        """The definition (a copy)."""
        return copy.deepcopy(self._definition)

    @property
    def partition_format(self) -> str | None:
        return self._definition.get("partition_format")

    @property
    def partition_keys(self) -> list[str]:
        """The column names that ``partition_format`` takes from file paths."""
        return PARTITION_KEY.findall(self.partition_format or "")

    @property
    def transforms(self) -> list[list]:
        """take, skip and sample, in order, as ``["take", n]``, ``["sample", p, seed]``..."""
        return copy.deepcopy(self._definition["transforms"])

    def source_files(self) -> Iterator[str]:
        """Every file the sources match, sorted, each once, before take/skip/sample."""
        sources = self._definition["sources"]
        streams = [source_files(source, self.listings) for source in sources]
        merged = heapq.merge(*streams, key=sort_key) if len(streams) > 1 else streams[0]
        previous = None
        for path in merged:
            if path != previous:
                yield path
            previous = path

    def storage(self) -> dict[str, dict]:
        """The fsspec storage options of its blob datastores, by datastore root."""
        return {d["root"]: storage_options(d) for d in _blob_datastores(self._definition)}

    def fingerprint(self) -> str:
        """sha256 over the definition and each file's path, size and modification time."""
        digest = hashlib.sha256(json.dumps(self._definition, sort_keys=True).encode())
        storage = self.storage()
        # A blob's size and time come from the listings, not a request per blob.
        infos: dict[str, dict] = {}
        for source in self._definition["sources"]:
            if "datastore" in source and source["datastore"]["datastore_type"] != "Local":
                infos.update(blob_infos(source["datastore"], source["path"]))
        for path in self.source_files():
            if "://" in path:
                info = infos.get(path) or filesystem_for(path, storage).info(path)
                stamp = f"{info.get('size')}\0{info.get('last_modified') or info.get('etag')}"
            else:
                stat = os.stat(path)
                stamp = f"{stat.st_size}\0{stat.st_mtime_ns}"
            # surrogateescape: a file name that is not UTF-8 counts by its own bytes.
            digest.update(f"{path}\0{stamp}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    # -- files ------------------------------------------------------------------------------

    def iter_files(self) -> Iterator[str]:
        """The files with take, skip and sample applied: absolute paths (URLs for blob
        datastores), sorted, as a stream."""
        files = self.source_files()
        for transform in self._definition["transforms"]:
            files = _apply(files, transform)
        return files

    def mount_root(self) -> str:
        """The folder the files are under, as a mount of the dataset would show it."""
        bases = [source_base(source) for source in self._definition["sources"]]
        return os.path.commonpath(bases) if all("://" not in b for b in bases) else ""

    def to_path(self) -> list[str]:
        """The file paths relative to the common folder of the sources, each with a leading
        ``/`` (as Azure's)."""
        root = self.mount_root()
        return ["/" + (os.path.relpath(p, root) if root else p) for p in self.iter_files()]

    def download(self, target_path: str | None = None, overwrite: bool = False) -> list[str]:
        """Copy the files into ``target_path`` (a new temporary folder when None).

        Paths below the common folder are kept. An existing file raises FileExistsError
        unless ``overwrite``. Returns the local paths written.
        """
        target = target_path or tempfile.mkdtemp(prefix="dataset-")
        root, storage, written = self.mount_root(), self.storage(), []
        for path in self.iter_files():
            relative = os.path.relpath(path, root) if root else path.split("://", 1)[-1]
            destination = os.path.join(target, relative)
            if os.path.exists(destination) and not overwrite:
                raise FileExistsError(
                    f"{destination!r} already exists; pass overwrite=True to replace it"
                )
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            copy_file(path, destination, storage)
            written.append(destination)
        return written

    # -- tables -----------------------------------------------------------------------------

    @property
    def format(self) -> str:
        """``"delimited"``, ``"parquet"`` or ``"json_lines"``."""
        return self._definition["format"]

    @property
    def options(self) -> dict[str, Any]:
        """The read options (separator, header, encoding, ...), as given at creation."""
        return copy.deepcopy(self._definition["options"])

    @property
    def files(self) -> list[str]:
        """The files the table is read from, sorted."""
        return list(self.source_files())

    def read_options(self) -> dict[str, Any]:
        """The options ``read_records`` needs, including storage and partition format."""
        storage = self.storage()
        return {
            **self.options,
            "partition_format": self.partition_format,
            **({"storage": storage} if storage else {}),
        }

    def to_pandas_dataframe(self) -> pd.DataFrame:
        """Load the whole table (with take, skip and sample applied)."""
        import pandas as pd

        options = self.read_options()
        frames = [read_records(path, self.format, options) for path in self.source_files()]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return transformed_frame(frame, self._definition["transforms"])

    def __repr__(self) -> str:
        kind = "TabularDataset" if self.tabular else "FileDataset"
        sources = [s.get("path") for s in self._definition["sources"]]
        return f"{kind}(sources={sources})"


def transformed_frame(frame: pd.DataFrame, transforms: list[list]) -> pd.DataFrame:
    """The records of ``frame`` with take, skip and sample applied, reindexed from 0."""
    for transform in transforms:
        if transform[0] == "take":
            frame = frame.iloc[: transform[1]]
        elif transform[0] == "skip":
            frame = frame.iloc[transform[1] :]
        else:
            frame = frame[_sample_mask(len(frame), transform[1], transform[2])]
    return frame.reset_index(drop=True)


def _apply(files: Iterator[str], transform: list) -> Iterator[str]:
    if transform[0] == "take":
        return itertools.islice(files, transform[1])
    if transform[0] == "skip":
        return itertools.islice(files, transform[1], None)
    draw = random.Random(transform[2]).random
    return (path for path in files if draw() < transform[1])


def _sample_mask(length: int, probability: float, seed: int) -> list[bool]:
    draw = random.Random(seed).random
    return [draw() < probability for _ in range(length)]
