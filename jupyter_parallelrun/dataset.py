"""Datasets: lazy definitions of the files or tables a step reads, as Azure ML's.

:class:`Dataset` is what a user names: ``Dataset.File`` and ``Dataset.Tabular`` make new
datasets (``dataset_factory.py``), ``register``, ``get_by_name`` and ``get_by_id`` keep them in
the workspace store under the kind ``"dataset"``, and ``as_named_input`` makes a step's input of
one. Its two kinds are :class:`FileDataset` and :class:`TabularDataset`; what any dataset is
(its definition, spec, fingerprint, take, skip and sample) is ``abstract_dataset.py``'s.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .abstract_dataset import AbstractDataset
from .dataset_factory import FileDatasetFactory, TabularDatasetFactory
from .partitioned_copy import partition_by
from .pipeline_inputs import DatasetConsumptionConfig
from .workspace import register_collection

if TYPE_CHECKING:
    import pandas as pd

    from .workspace import Workspace

KIND = "dataset"


class Dataset(AbstractDataset):
    """Base of :class:`FileDataset` and :class:`TabularDataset`; create them through
    ``Dataset.File`` and ``Dataset.Tabular``.

    Examples
    --------
    >>> ds = Dataset.File.from_files(path="data/images/**/*.png")          # doctest: +SKIP
    >>> ds = ds.register(ws, "images", create_new_version=True)             # doctest: +SKIP
    >>> Dataset.get_by_name(ws, "images").version                            # doctest: +SKIP
    """

    # Made at the end of this module, once the classes they make exist.
    File: FileDatasetFactory
    Tabular: TabularDatasetFactory

    # -- specs and registration -------------------------------------------------------------

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

    # -- consumption in a pipeline ----------------------------------------------------------

    def as_named_input(self, name: str) -> DatasetConsumptionConfig:
        """This dataset as the step input ``name``."""
        return DatasetConsumptionConfig(name, self)

    def as_mount(self, path_on_compute: str | None = None) -> DatasetConsumptionConfig:
        """This dataset as an input whose files are read where they are."""
        return DatasetConsumptionConfig(
            self.name or "dataset", self, mode="mount", path_on_compute=path_on_compute
        )

    def as_download(self, path_on_compute: str | None = None) -> DatasetConsumptionConfig:
        """This dataset as an input whose files are copied before the step runs."""
        return DatasetConsumptionConfig(
            self.name or "dataset", self, mode="download", path_on_compute=path_on_compute
        )


class FileDataset(Dataset):
    """Files: each mini-batch is a list of file paths."""

    _type = "file"

    def iter_files(self) -> Iterator[str]:
        """The files, as absolute paths (URLs for blob datastores), sorted, as a stream."""
        return self._transformed_files()

    def mount_root(self) -> str:
        """The folder the files are under, as a mount of this dataset would show it."""
        return self._data.mount_root()

    def to_path(self) -> list[str]:
        """The file paths relative to the common folder of the patterns, each with a leading
        ``/`` (as Azure's)."""
        return self._data.to_path()

    def download(self, target_path: str | None = None, overwrite: bool = False) -> list[str]:
        """Copy the files into ``target_path`` (a new temporary folder when None).

        Paths below the common folder are kept. An existing file raises FileExistsError
        unless ``overwrite``. Returns the local paths written.
        """
        return self._data.download(target_path, overwrite)


class TabularDataset(Dataset):
    """A table read from delimited, Parquet or JSON-lines files; mini-batches are DataFrames."""

    _type = "tabular"

    @property
    def format(self) -> str:
        """``"delimited"``, ``"parquet"`` or ``"json_lines"``."""
        return self._data.format

    @property
    def options(self) -> dict[str, Any]:
        """The read options (separator, header, encoding, ...), as given at creation."""
        return self._data.options

    @property
    def files(self) -> list[str]:
        """The files the table is read from, sorted."""
        return self._data.files

    def read_options(self) -> dict[str, Any]:
        """The options :func:`read_records` needs, including storage and partition format."""
        return self._data.read_options()

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
        return self._data.to_pandas_dataframe()


Dataset.File = FileDatasetFactory(FileDataset)
Dataset.Tabular = TabularDatasetFactory(TabularDataset)


register_collection(
    "datasets",
    lambda ws: {name: Dataset.get_by_name(ws, name) for name, _, _ in ws.store.entries("dataset")},
)
