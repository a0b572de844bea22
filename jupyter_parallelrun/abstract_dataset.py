"""What every dataset is, as Azure's ``azureml.data.abstract_dataset``: a definition.

A dataset stores *patterns* (local paths, globs, datastore paths) and options, never a file
list: the files are found when the dataset is used, in sorted order, as a stream. A dataset is
fully described by :meth:`AbstractDataset.to_spec`, which the engine uses to rebuild it in
another process, and :meth:`AbstractDataset.fingerprint` tells whether its content changed
(for ``allow_reuse``). ``take``, ``skip`` and ``take_sample`` add transforms to the definition.

This is the base the pipeline's inputs check a dataset against (``pipeline_inputs.py``);
``dataset.py`` builds :class:`~jupyter_parallelrun.dataset.Dataset` and its two kinds on it.
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import itertools
import json
import os
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from .dataset_source import iter_source_files
from .datastore import Datastore
from .records import PARTITION_KEY
from .storage import Listings, filesystem_for, sort_key

if TYPE_CHECKING:
    import pandas as pd

    from .workspace import Workspace

#: A dataset's own class: take, skip and take_sample return a dataset of the same kind.
_Dataset = TypeVar("_Dataset", bound="AbstractDataset")


class AbstractDataset:
    """A dataset's definition and what can be known from it alone.

    Parameters
    ----------
    definition : dict
        The sources, transforms and options, as ``Dataset.File`` or ``Dataset.Tabular`` made
        them.
    workspace : Workspace, optional
        The workspace it was found in, if any.

    Attributes
    ----------
    listings : storage.Listings or None
        Where its local folders are read, once for every listing of this dataset (the runner
        gives a step's input one); None: each listing reads them anew.
    """

    _type = ""

    def __init__(self, definition: dict[str, Any], workspace: Workspace | None = None) -> None:
        self._definition = definition
        self.workspace = workspace
        self.listings: Listings | None = None
        self.name: str | None = None
        self.version: int | None = None
        self.description: str | None = None
        self.tags: dict[str, str] = {}

    @property
    def id(self) -> str | None:
        """``"name:version"`` once registered, else None."""
        return None if self.name is None else f"{self.name}:{self.version}"

    @property
    def partition_keys(self) -> list[str]:
        """The column names that ``partition_format`` takes from file paths."""
        return PARTITION_KEY.findall(self._definition.get("partition_format") or "")

    # -- specs and fingerprints -------------------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        """A complete JSON-able description; ``Dataset.from_spec`` rebuilds the dataset from it."""
        return {
            **copy.deepcopy(self._definition),
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "tags": dict(self.tags),
        }

    def _source_files(self) -> Iterator[str]:
        """Every file the patterns match, sorted, each once, before take/skip/sample."""
        streams = [
            iter_source_files(source, self.workspace, self.listings)
            for source in self._definition["sources"]
        ]
        merged = heapq.merge(*streams, key=sort_key) if len(streams) > 1 else streams[0]
        previous = None
        for path in merged:
            if path != previous:
                yield path
            previous = path

    def _storage(self) -> dict[str, dict]:
        return {
            source["datastore"]["root"]: Datastore.from_spec(source["datastore"]).storage_options
            for source in self._definition["sources"]
            if "datastore" in source and source["datastore"]["datastore_type"] != "Local"
        }

    def fingerprint(self) -> str:
        """sha256 over the definition and each file's path, size and modification time."""
        digest = hashlib.sha256(json.dumps(self._definition, sort_keys=True).encode())
        storage = self._storage()
        # A blob's size and time come from the listings, not a request per blob.
        infos: dict[str, dict] = {}
        for source in self._definition["sources"]:
            if "datastore" in source and source["datastore"]["datastore_type"] != "Local":
                infos.update(Datastore.from_spec(source["datastore"]).blob_infos(source["path"]))
        for path in self._source_files():
            if "://" in path:
                info = infos.get(path) or filesystem_for(path, storage).info(path)
                stamp = f"{info.get('size')}\0{info.get('last_modified') or info.get('etag')}"
            else:
                stat = os.stat(path)
                stamp = f"{stat.st_size}\0{stat.st_mtime_ns}"
            # surrogateescape: a file name that is not UTF-8 counts by its own bytes.
            digest.update(f"{path}\0{stamp}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    # -- take, skip, sample -----------------------------------------------------------------

    def _with_transform(self: _Dataset, transform: list) -> _Dataset:
        definition = copy.deepcopy(self._definition)
        definition["transforms"].append(transform)
        return type(self)(definition, self.workspace)

    def take(self: _Dataset, count: int) -> _Dataset:
        """A new dataset with the first ``count`` files or records."""
        return self._with_transform(["take", _count("count", count)])

    def skip(self: _Dataset, count: int) -> _Dataset:
        """A new dataset without the first ``count`` files or records."""
        return self._with_transform(["skip", _count("count", count)])

    def take_sample(self: _Dataset, probability: float, seed: int | None = None) -> _Dataset:
        """A new dataset keeping each file or record with ``probability``.

        The sample is the same every time for the same ``seed``; without one a seed is drawn
        now and kept in the definition, so the sample still never changes.
        """
        if isinstance(probability, bool) or not isinstance(probability, (int, float)):
            raise ValueError(f"probability must be a number in [0, 1]; got {probability!r}")
        if not 0 <= probability <= 1:
            raise ValueError(f"probability must be a number in [0, 1]; got {probability!r}")
        if seed is None:
            seed = random.randrange(2**31)
        elif isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int or None; got {seed!r}")
        return self._with_transform(["sample", float(probability), seed])

    def _transformed_files(self) -> Iterator[str]:
        """The files with take, skip and sample applied, as a stream."""
        files = self._source_files()
        for transform in self._definition["transforms"]:
            files = _apply(files, transform)
        return files

    def _transformed_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The records of ``frame`` with take, skip and sample applied, reindexed from 0."""
        for transform in self._definition["transforms"]:
            if transform[0] == "take":
                frame = frame.iloc[: transform[1]]
            elif transform[0] == "skip":
                frame = frame.iloc[transform[1] :]
            else:
                frame = frame[_sample_mask(len(frame), transform[1], transform[2])]
        return frame.reset_index(drop=True)

    def __repr__(self) -> str:
        sources = [s.get("path") for s in self._definition["sources"]]
        label = f"name={self.name!r}, version={self.version}, " if self.name else ""
        return f"{type(self).__name__}({label}sources={sources})"


def _count(parameter: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{parameter} must be an int >= 0; got {value!r}")
    return value


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
