"""Datasets: lazy definitions of the files or tables a step reads, as Azure ML's.

A dataset stores *patterns* (local paths, globs, datastore paths) and options, never a file
list: the files are found when the dataset is used, in sorted order, as a stream. A dataset is
fully described by :meth:`Dataset.to_spec`, which the engine uses to rebuild it in another
process, and :meth:`Dataset.fingerprint` tells whether its content changed (for
``allow_reuse``). Datasets are registered in the workspace store under the kind ``"dataset"``.
New datasets are made by ``Dataset.File`` and ``Dataset.Tabular`` (``dataset_factory.py``).
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import itertools
import json
import os
import random
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .dataset_factory import FileDatasetFactory, TabularDatasetFactory
from .dataset_partition import partition_by
from .dataset_source import iter_source_files, source_base
from .datastore import Datastore
from .records import PARTITION_KEY, read_records
from .storage import copy_file, filesystem_for, sort_key

if TYPE_CHECKING:
    import pandas as pd

    from .pipeline_inputs import DatasetConsumptionConfig
    from .workspace import Workspace

KIND = "dataset"


class Dataset:
    """Base of :class:`FileDataset` and :class:`TabularDataset`; create them through
    ``Dataset.File`` and ``Dataset.Tabular``.

    Examples
    --------
    >>> ds = Dataset.File.from_files(path="data/images/**/*.png")          # doctest: +SKIP
    >>> ds = ds.register(ws, "images", create_new_version=True)             # doctest: +SKIP
    >>> Dataset.get_by_name(ws, "images").version                            # doctest: +SKIP
    """

    File = FileDatasetFactory
    Tabular = TabularDatasetFactory
    _type = ""

    def __init__(self, definition: dict[str, Any], workspace: Workspace | None = None) -> None:
        self._definition = definition
        self.workspace = workspace
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

    # -- specs, fingerprints, registration --------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        """A complete JSON-able description; :meth:`from_spec` rebuilds the dataset from it."""
        return {
            **copy.deepcopy(self._definition),
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "tags": dict(self.tags),
        }

    @staticmethod
    def from_spec(spec: dict[str, Any], workspace: Workspace | None = None) -> Dataset:
        """Rebuild a dataset from :meth:`to_spec` (datastores travel inside the spec)."""
        spec = copy.deepcopy(spec)
        classes = {"file": FileDataset, "tabular": TabularDataset}
        if spec.get("type") not in classes:
            raise ValueError(f'spec["type"] must be "file" or "tabular"; got {spec.get("type")!r}')
        meta = {key: spec.pop(key, None) for key in ("name", "version", "description", "tags")}
        dataset = classes[spec["type"]](spec, workspace)
        dataset.name, dataset.version = meta["name"], meta["version"]
        dataset.description, dataset.tags = meta["description"], meta["tags"] or {}
        return dataset

    def _source_files(self) -> Iterator[str]:
        """Every file the patterns match, sorted, each once, before take/skip/sample."""
        streams = [
            iter_source_files(source, self.workspace) for source in self._definition["sources"]
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

    def register(
        self,
        workspace: Workspace,
        name: str,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        create_new_version: bool = False,
    ) -> Dataset:
        """Register this definition as ``name``; returns the registered dataset.

        An identical definition already registered as ``name`` is returned as it is. Another
        definition needs ``create_new_version=True`` and becomes the next version.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty string; got {name!r}")
        found = workspace.store.lookup(KIND, name)
        if found is not None:
            same = {k: v for k, v in found[1].items() if k not in ("description", "tags")}
            if same == self._definition:
                return Dataset.get_by_name(workspace, name, found[0])
            if not create_new_version:
                raise ValueError(
                    f"name={name!r} is already registered (version {found[0]}) with another "
                    "definition; pass create_new_version=True to add a version"
                )
        spec = {**self._definition, "description": description, "tags": dict(tags or {})}
        version = workspace.store.register(KIND, name, spec, new_version=True)
        return Dataset.get_by_name(workspace, name, version)

    @staticmethod
    def get_by_name(workspace: Workspace, name: str, version: int | str = "latest") -> Dataset:
        """The dataset registered as ``name`` at ``version`` (an int, or ``"latest"``)."""
        if version != "latest" and not str(version).isdigit():
            raise ValueError(f'version must be a positive int or "latest"; got {version!r}')
        found = workspace.store.lookup(KIND, name, None if version == "latest" else int(version))
        if found is None:
            known = sorted(entry[0] for entry in workspace.store.entries(KIND))
            raise ValueError(
                f"no dataset named {name!r} at version {version!r} in workspace "
                f"{workspace.name!r}; registered datasets: {known}"
            )
        dataset = Dataset.from_spec({**found[1], "name": name, "version": found[0]}, workspace)
        return dataset

    @staticmethod
    def get_by_id(workspace: Workspace, id: str) -> Dataset:  # noqa: A002 - Azure's name
        """The registered dataset whose :attr:`id` is ``id`` (``"name:version"``)."""
        name, _, version = str(id).rpartition(":")
        if not name or not version.isdigit():
            raise ValueError(f'id must look like "name:version"; got {id!r}')
        return Dataset.get_by_name(workspace, name, int(version))

    # -- take, skip, sample -----------------------------------------------------------------

    def _with_transform(self, transform: list) -> Dataset:
        definition = copy.deepcopy(self._definition)
        definition["transforms"].append(transform)
        return type(self)(definition, self.workspace)

    def take(self, count: int) -> Dataset:
        """A new dataset with the first ``count`` files or records."""
        return self._with_transform(["take", _count("count", count)])

    def skip(self, count: int) -> Dataset:
        """A new dataset without the first ``count`` files or records."""
        return self._with_transform(["skip", _count("count", count)])

    def take_sample(self, probability: float, seed: int | None = None) -> Dataset:
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

    # -- consumption in a pipeline ----------------------------------------------------------

    def as_named_input(self, name: str) -> DatasetConsumptionConfig:
        """This dataset as the step input ``name``."""
        from .pipeline_inputs import DatasetConsumptionConfig

        return DatasetConsumptionConfig(name, self)

    def as_mount(self, path_on_compute: str | None = None) -> DatasetConsumptionConfig:
        """This dataset as an input whose files are read where they are."""
        from .pipeline_inputs import DatasetConsumptionConfig

        return DatasetConsumptionConfig(
            self.name or "dataset", self, mode="mount", path_on_compute=path_on_compute
        )

    def as_download(self, path_on_compute: str | None = None) -> DatasetConsumptionConfig:
        """This dataset as an input whose files are copied before the step runs."""
        from .pipeline_inputs import DatasetConsumptionConfig

        return DatasetConsumptionConfig(
            self.name or "dataset", self, mode="download", path_on_compute=path_on_compute
        )

    def __repr__(self) -> str:
        sources = [s.get("path") for s in self._definition["sources"]]
        label = f"name={self.name!r}, version={self.version}, " if self.name else ""
        return f"{type(self).__name__}({label}sources={sources})"


class FileDataset(Dataset):
    """Files: each mini-batch is a list of file paths."""

    _type = "file"

    def iter_files(self) -> Iterator[str]:
        """The files, as absolute paths (URLs for blob datastores), sorted, as a stream."""
        files = self._source_files()
        for transform in self._definition["transforms"]:
            files = _apply(files, transform)
        return files

    def mount_root(self) -> str:
        """The folder the files are under, as a mount of this dataset would show it."""
        bases = [source_base(source) for source in self._definition["sources"]]
        return os.path.commonpath(bases) if all("://" not in b for b in bases) else ""

    def to_path(self) -> list[str]:
        """The file paths relative to the common folder of the patterns, each with a leading
        ``/`` (as Azure's)."""
        root = self.mount_root()
        return ["/" + (os.path.relpath(p, root) if root else p) for p in self.iter_files()]

    def download(self, target_path: str | None = None, overwrite: bool = False) -> list[str]:
        """Copy the files into ``target_path`` (a new temporary folder when None).

        Paths below the common folder are kept. An existing file raises FileExistsError
        unless ``overwrite``. Returns the local paths written.
        """
        target = target_path or tempfile.mkdtemp(prefix="dataset-")
        root, storage, written = self.mount_root(), self._storage(), []
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


class TabularDataset(Dataset):
    """A table read from delimited, Parquet or JSON-lines files; mini-batches are DataFrames."""

    _type = "tabular"

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
        return list(self._source_files())

    def read_options(self) -> dict[str, Any]:
        """The options :func:`read_records` needs, including storage and partition format."""
        storage = self._storage()
        return {
            **self.options,
            "partition_format": self._definition.get("partition_format"),
            **({"storage": storage} if storage else {}),
        }

    def partition_by(
        self,
        partition_keys: list[str],
        target: Any,
        name: str | None = None,
        show_progress: bool = True,
        partition_as_file_dataset: bool = False,
    ) -> Dataset:
        """Write a copy of the table partitioned by ``partition_keys`` and return its dataset.

        Parameters
        ----------
        partition_keys : list of str
            Columns; each distinct combination of their values becomes a folder.
        target : DataPath or (Datastore, str) tuple
            Where on a datastore the copy goes; a new folder named by a GUID is made under it.
        name : str, optional
            Register the new dataset under this name (a new version if it exists).
        show_progress : bool, default True
            Print what was written.
        partition_as_file_dataset : bool, default False
            Return a FileDataset of the Parquet files instead of a TabularDataset.

        Returns
        -------
        TabularDataset or FileDataset
            Its ``partition_keys`` are ``partition_keys``; a step with the same
            ``partition_keys`` gets one mini-batch per folder.

        Examples
        --------
        >>> parts = ds.partition_by(["Store", "Brand"], (datastore, "by_key"))  # doctest: +SKIP
        >>> parts.partition_keys                                               # doctest: +SKIP
        ['Store', 'Brand']
        """
        return partition_by(
            self, partition_keys, target, name, show_progress, partition_as_file_dataset
        )

    def to_pandas_dataframe(self) -> pd.DataFrame:
        """Load the whole table (with take, skip and sample applied)."""
        import pandas as pd

        options = self.read_options()
        frames = [read_records(path, self.format, options) for path in self._source_files()]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        for transform in self._definition["transforms"]:
            if transform[0] == "take":
                frame = frame.iloc[: transform[1]]
            elif transform[0] == "skip":
                frame = frame.iloc[transform[1] :]
            else:
                frame = frame[_sample_mask(len(frame), transform[1], transform[2])]
        return frame.reset_index(drop=True)


# -- take, skip and sample over files and records ---------------------------------------------


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
