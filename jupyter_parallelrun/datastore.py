"""Datastores: named roots where data lives, and the paths into them.

A datastore is a local folder (the offline default) or an Azure blob container reached through
fsspec's ``az`` protocol (the ``adlfs`` package). Datastores are registered in the workspace
store under the kind ``"datastore"``; listing and opening the files behind them is
``storage.py``'s, and checking and reaching a blob container ``blob_storage.py``'s.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import input_data
from .blob_storage import container_spec
from .storage import Listings, filesystem, iter_local_files

if TYPE_CHECKING:
    import fsspec

    from .workspace import Workspace

KIND = "datastore"


def _check_name(parameter: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{parameter} must be a non-empty string; got {value!r}")
    return value


class Datastore:
    """A named root where data lives: a local folder or an Azure blob container.

    ``Datastore(workspace, name)`` is the same as :meth:`get`.

    Attributes
    ----------
    workspace : Workspace or None
        The workspace it is registered in (None when rebuilt from a spec without one).
    name : str
    datastore_type : {"Local", "AzureBlob"}
    root : str
        An absolute folder for a local datastore, ``"az://<container>"`` for a blob one.
    container_name, account_name, protocol, endpoint, account_key, sas_token : str or None
        The blob container's settings (None for a local datastore).

    Examples
    --------
    >>> images = Datastore.register_local_folder(ws, "images", "/data/images")  # doctest: +SKIP
    >>> ds = Dataset.File.from_files(images.path("mnist/"))                      # doctest: +SKIP
    """

    def __init__(self, workspace: Workspace, name: str) -> None:
        found = workspace.store.lookup(KIND, name)
        if found is None:
            known = sorted(entry[0] for entry in workspace.store.entries(KIND))
            raise ValueError(
                f"datastore_name={name!r} is not registered in workspace {workspace.name!r}; "
                f"registered datastores: {known}"
            )
        self._load(workspace, name, found[1])

    def _load(self, workspace: Workspace | None, name: str, spec: dict[str, Any]) -> None:
        self.workspace = workspace
        self.name = name
        self._spec = {key: value for key, value in spec.items() if key != "name"}
        self.datastore_type: str = spec["datastore_type"]
        self.root: str = spec["root"]
        self.container_name: str | None = spec.get("container_name")
        self.account_name: str | None = spec.get("account_name")
        self.protocol: str | None = spec.get("protocol")
        self.endpoint: str | None = spec.get("endpoint")
        self.account_key: str | None = spec.get("account_key")
        self.sas_token: str | None = spec.get("sas_token")

    @classmethod
    def from_spec(cls, spec: dict[str, Any], workspace: Workspace | None = None) -> Datastore:
        """Rebuild a datastore from :meth:`to_spec` (as worker processes do)."""
        datastore = cls.__new__(cls)
        datastore._load(workspace, spec["name"], spec)
        return datastore

    def to_spec(self) -> dict[str, Any]:
        """Everything needed to reach this datastore, as a JSON-able dict (secrets included)."""
        return {**self._spec, "name": self.name}

    # -- registering and finding ------------------------------------------------------------

    @classmethod
    def _register(
        cls, workspace: Workspace, name: str, spec: dict[str, Any], overwrite: bool
    ) -> Datastore:
        found = workspace.store.lookup(KIND, name)
        if found is not None and found[1] != spec and not overwrite:
            raise ValueError(
                f"datastore_name={name!r} is already registered with other settings "
                f"({found[1]['datastore_type']} at {found[1]['root']!r}); "
                "pass overwrite=True to replace it"
            )
        if found is None or found[1] != spec:
            workspace.store.register(KIND, name, spec, new_version=False)
        return cls(workspace, name)

    @classmethod
    def register_local_folder(
        cls, workspace: Workspace, datastore_name: str, folder: str | Path, overwrite: bool = False
    ) -> Datastore:
        """Register a local folder (created when missing) as a datastore.

        Parameters
        ----------
        workspace : Workspace
        datastore_name : str
        folder : str or Path
            Stored as an absolute path.
        overwrite : bool, default False
            Replace a datastore of the same name registered with other settings.
        """
        _check_name("datastore_name", datastore_name)
        if not isinstance(folder, (str, os.PathLike)) or not str(folder):
            raise ValueError(f"folder must be a non-empty path; got {folder!r}")
        root = Path(folder).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        spec = {"datastore_type": "Local", "root": str(root)}
        return cls._register(workspace, datastore_name, spec, overwrite)

    @classmethod
    def register_azure_blob_container(
        cls,
        workspace: Workspace,
        datastore_name: str,
        container_name: str,
        account_name: str,
        sas_token: str | None = None,
        account_key: str | None = None,
        protocol: str | None = None,
        endpoint: str | None = None,
        overwrite: bool = False,
        create_if_not_exists: bool = False,
        skip_validation: bool = False,
        blob_cache_timeout: int | None = None,
        grant_workspace_access: bool = False,
        subscription_id: str | None = None,
        resource_group: str | None = None,
    ) -> Datastore:
        """Register an Azure blob container, read through fsspec's ``az`` protocol (adlfs).

        Arguments are Azure's; ``endpoint`` is a domain suffix (``core.windows.net``) or a
        whole URL such as the Azure Storage emulator's
        ``http://127.0.0.1:10000/devstoreaccount1``. The credentials are kept in the workspace
        store, a local file. Nothing is contacted at registration: ``submit()`` checks that
        the container can be listed. ``create_if_not_exists``, ``skip_validation``,
        ``blob_cache_timeout``, ``grant_workspace_access``, ``subscription_id`` and
        ``resource_group`` are recorded only.
        """
        _check_name("datastore_name", datastore_name)
        spec = container_spec(
            container_name, account_name, sas_token, account_key, protocol, endpoint
        )
        spec.update(
            create_if_not_exists=bool(create_if_not_exists),
            blob_cache_timeout=blob_cache_timeout,
            subscription_id=subscription_id,
            resource_group=resource_group,
        )
        return cls._register(workspace, datastore_name, spec, overwrite)

    @classmethod
    def get(cls, workspace: Workspace, datastore_name: str) -> Datastore:
        """The datastore registered as ``datastore_name`` (ValueError listing names if none)."""
        return cls(workspace, datastore_name)

    @staticmethod
    def get_default(workspace: Workspace) -> Datastore:
        """The workspace's default datastore (see ``Workspace.get_default_datastore``)."""
        return workspace.get_default_datastore()

    # -- reaching the data ------------------------------------------------------------------

    @property
    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for the fsspec filesystem of this datastore."""
        return input_data.storage_options(self.to_spec())

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem behind this datastore."""
        if self.datastore_type == "Local":
            return filesystem("file", {}, self.name)
        return filesystem("az", self.storage_options, self.name)

    def path(self, path_on_datastore: str = "") -> DataPath:
        """A :class:`DataPath` to ``path_on_datastore`` (a file, folder or glob pattern)."""
        return DataPath(self, path_on_datastore)

    def _url(self, path_on_datastore: str = "") -> str:
        return input_data.datastore_url(self.to_spec(), path_on_datastore)

    def local_path(self, path_on_datastore: str = "") -> Path:
        """The local path of ``path_on_datastore``; only for local datastores."""
        if self.datastore_type != "Local":
            raise ValueError(
                f"local_path() needs a Local datastore; {self.name!r} is {self.datastore_type} "
                f"at {self.root!r}"
            )
        return Path(self._url(path_on_datastore))

    def iter_files(
        self, path_on_datastore: str = "", listings: Listings | None = None
    ) -> Iterator[str]:
        """The files at ``path_on_datastore`` (file, folder or glob), as a sorted stream; a
        local datastore's folders are read through ``listings`` when given."""
        return input_data.datastore_files(self.to_spec(), path_on_datastore, listings)

    def blob_infos(self, path_on_datastore: str = "") -> dict[str, dict]:
        """The blobs at ``path_on_datastore`` (file, folder or glob): ``{url: info}``, with
        each blob's size and modification time, from listings only (no request per blob)."""
        return input_data.blob_infos(self.to_spec(), path_on_datastore)

    def upload(
        self,
        src_dir: str | Path,
        target_path: str | None = None,
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> DataPath:
        """Copy every file under the local folder ``src_dir`` to ``target_path``.

        Files already there are skipped unless ``overwrite``. Returns a DataPath to
        ``target_path``.
        """
        source = Path(src_dir)
        if not source.is_dir():
            raise ValueError(f"src_dir must be an existing folder; got {str(src_dir)!r}")
        files = iter_local_files(str(source.resolve()))
        return self.upload_files(
            files, source.resolve(), target_path, overwrite, show_progress=show_progress
        )

    def upload_files(
        self,
        files: Iterable[str | Path],
        relative_root: str | Path | None = None,
        target_path: str | None = None,
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> DataPath:
        """Copy local ``files`` to ``target_path``, keeping their paths below ``relative_root``.

        ``relative_root`` defaults to the common folder of the files. Files already there are
        skipped unless ``overwrite``. Returns a DataPath to ``target_path``.
        """
        files = [Path(f).resolve() for f in files]
        for file in files:
            if not file.is_file():
                raise ValueError(f"files must be existing files; {str(file)!r} is not one")
        if relative_root is None:
            relative_root = os.path.commonpath([str(f.parent) for f in files]) if files else "."
        root = Path(relative_root).resolve()
        pairs = []
        for file in files:
            if not file.is_relative_to(root):
                raise ValueError(
                    f"relative_root={str(relative_root)!r} must hold every file; "
                    f"{str(file)!r} is outside it"
                )
            relative = file.relative_to(root).as_posix()
            pairs.append((str(file), self._url(f"{target_path or ''}/{relative}")))
        fs = self.fs
        if self.datastore_type == "Local":
            pairs = [(src, dst) for src, dst in pairs if overwrite or not os.path.exists(dst)]
            for src, dst in pairs:
                fs.makedirs(os.path.dirname(dst), exist_ok=True)
                fs.put_file(src, dst)
        else:
            if not overwrite:  # one listing, rather than a request per file
                there = set(self.iter_files(target_path or ""))
                pairs = [(src, dst) for src, dst in pairs if dst not in there]
            if pairs:  # one call: adlfs uploads the files concurrently
                fs.put([src for src, _ in pairs], [dst for _, dst in pairs])
        if show_progress:
            print(f"Uploaded {len(pairs)} of {len(files)} files to {self._url(target_path or '')}")
        return self.path(target_path or "")

    def download(
        self,
        target_path: str | Path,
        prefix: str | None = None,
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> int:
        """Copy the files whose path starts with ``prefix`` into the local ``target_path``.

        Files keep their path on the datastore below ``target_path``. Existing local files are
        skipped unless ``overwrite``. Returns the number of files copied.
        """
        prefix = (prefix or "").lstrip("/")
        folder = prefix if prefix.endswith("/") else os.path.dirname(prefix)
        base = self._url()
        fs, copied = self.fs, 0
        base_stripped = fs._strip_protocol(base).rstrip("/")
        for url in self.iter_files(folder):
            relative = fs._strip_protocol(url)[len(base_stripped) + 1 :]
            if not relative.startswith(prefix):
                continue
            destination = Path(target_path) / relative
            if destination.exists() and not overwrite:
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(url, str(destination))
            copied += 1
        if show_progress:
            print(f"Downloaded {copied} files to {str(target_path)}")
        return copied

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Datastore) and other.to_spec() == self.to_spec()

    def __hash__(self) -> int:
        return hash((self.name, self.root))

    def __repr__(self) -> str:
        kind, root = self.datastore_type, self.root
        return f"Datastore(name={self.name!r}, datastore_type={kind!r}, root={root!r})"


class DataPath:
    """A path (file, folder or glob pattern) on a datastore.

    Parameters
    ----------
    datastore : Datastore
    path_on_datastore : str, optional
        Relative to the datastore's root; a leading ``/`` is ignored.
    name : str, optional
    """

    def __init__(
        self, datastore: Datastore, path_on_datastore: str | None = None, name: str | None = None
    ) -> None:
        if not isinstance(datastore, Datastore):
            raise ValueError(f"datastore must be a Datastore; got {datastore!r}")
        if path_on_datastore is not None and not isinstance(path_on_datastore, str):
            raise ValueError(f"path_on_datastore must be a string; got {path_on_datastore!r}")
        self.datastore = datastore
        self.path_on_datastore = path_on_datastore or ""
        self.name = name

    def to_url(self) -> str:
        """The resolved location: a local absolute path, or an fsspec URL for blob stores."""
        return self.datastore._url(self.path_on_datastore)

    def iter_files(self) -> Iterator[str]:
        """The files behind this path, as a sorted stream."""
        return self.datastore.iter_files(self.path_on_datastore)

    def __str__(self) -> str:
        return self.to_url()

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DataPath)
            and other.datastore == self.datastore
            and other.path_on_datastore == self.path_on_datastore
        )

    def __hash__(self) -> int:
        return hash((self.datastore.name, self.path_on_datastore))

    def __repr__(self) -> str:
        return f"DataPath({self.datastore.name!r}, {self.path_on_datastore!r})"
