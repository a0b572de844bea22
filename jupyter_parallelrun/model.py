"""Model: a versioned registry of model files and folders in the workspace.

``Model.register`` copies the file or folder into ``<workspace>/models/<name>/<version>/`` and
records it; ``Model.get_model_path`` finds it again, in the notebook and inside an entry script
(where the worker's environment names the run's workspace).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from .workspace import Workspace, register_collection

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


def _check_name(name: Any, what: str = "model_name") -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a string; got {type(name).__name__}")
    if not _NAME.match(name):
        raise ValueError(
            f"{what} must be 1 to 255 letters, digits, '-', '_' and '.', starting with a letter "
            f"or digit; got {name!r}"
        )
    return name


def _check_tags(tags: Any, what: str) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, dict) or not all(isinstance(k, str) for k in tags):
        raise TypeError(f"{what} must be a dict with string keys; got {tags!r}")
    if not all(isinstance(v, str | int | float | bool) for v in tags.values()):
        raise TypeError(f"{what} values must be strings or numbers; got {tags!r}")
    return {k: str(v) for k, v in tags.items()}


def _matches(tags: dict[str, str], wanted: Any) -> bool:
    """Whether ``tags`` has every key (``"key"``) or pair (``["key", "value"]``) of ``wanted``."""
    if wanted is None:
        return True
    if isinstance(wanted, dict):
        wanted = list(wanted.items())
    for item in wanted:
        if isinstance(item, str):
            if item not in tags:
                return False
        elif tags.get(item[0]) != str(item[1]):
            return False
    return True


class Model:
    """A registered model: one version of a file or folder kept in the workspace.

    Parameters
    ----------
    workspace : Workspace
        The workspace holding the model.
    name : str, optional
        The model's name; its latest version (matching ``tags``) unless ``version`` is given.
    id : str, optional
        ``"name:version"``, instead of ``name`` and ``version``.
    tags : list or dict, optional
        Keys (``"area"``) or key-value pairs (``["area", "mnist"]``) the version must have.
    version : int, optional
        The version to open.

    Examples
    --------
    >>> model = Model.register(workspace=ws, model_path="models/", model_name="mnist",
    ...                        tags={"area": "mnist"})                      # doctest: +SKIP
    >>> path = Model.get_model_path("mnist")                                 # doctest: +SKIP
    """

    def __init__(
        self,
        workspace: Workspace,
        name: str | None = None,
        id: str | None = None,
        tags: Any = None,
        version: int | None = None,
    ) -> None:
        if not isinstance(workspace, Workspace):
            raise TypeError(f"workspace must be a Workspace; got {type(workspace).__name__}")
        if id is not None:
            name, _, text = str(id).rpartition(":")
            if not name or not text.isdigit():
                raise ValueError(f"id must be 'name:version'; got {id!r}")
            version = int(text)
        if name is None:
            raise ValueError("give the model's name or its id ('name:version')")
        _check_name(name, "name")
        versions = [
            (v, spec)
            for n, v, spec in workspace.store.entries("model", latest_only=False)
            if n == name and (version is None or v == int(version)) and _matches(spec["tags"], tags)
        ]
        if not versions:
            raise ValueError(_not_found(workspace, name, version, tags))
        self.workspace = workspace
        self.version, spec = versions[-1]
        self.name: str = name
        self.tags: dict[str, str] = dict(spec["tags"])
        self.properties: dict[str, str] = dict(spec["properties"])
        self.description: str | None = spec["description"]
        self.model_framework: str | None = spec["model_framework"]
        self.model_framework_version: str | None = spec["model_framework_version"]
        self.created_time: float = spec["created_time"]
        self.path = str(_folder(workspace, name, self.version) / spec["file_name"])

    @property
    def id(self) -> str:
        """``"name:version"``."""
        return f"{self.name}:{self.version}"

    @property
    def url(self) -> str:
        """The local path of the registered file or folder."""
        return self.path

    @staticmethod
    def register(
        workspace: Workspace,
        model_path: str | os.PathLike,
        model_name: str,
        tags: dict[str, Any] | None = None,
        properties: dict[str, Any] | None = None,
        description: str | None = None,
        model_framework: str | None = None,
        model_framework_version: str | None = None,
        **kwargs: Any,
    ) -> Model:
        """Copy a model file or folder into the workspace as a new version of ``model_name``.

        Parameters
        ----------
        workspace : Workspace
            Where to register it.
        model_path : str or Path
            A file or a folder (copied whole).
        model_name : str
            1 to 255 letters, digits, ``-``, ``_`` and ``.``, starting with a letter or digit.
        tags, properties : dict, optional
            Strings (numbers are kept as text) to find and describe the model by.
        description, model_framework, model_framework_version : str, optional
            Recorded with the version.
        **kwargs
            Azure's other arguments (``datasets``, ``resource_configuration``, ...), accepted
            and ignored.

        Returns
        -------
        Model
            The new version.
        """
        if not isinstance(workspace, Workspace):
            raise TypeError(f"workspace must be a Workspace; got {type(workspace).__name__}")
        _check_name(model_name)
        source = Path(model_path)
        if not source.exists():
            raise FileNotFoundError(f"model_path={str(model_path)!r}: no such file or folder")
        spec = {
            "file_name": source.resolve().name,
            "tags": _check_tags(tags, "tags"),
            "properties": _check_tags(properties, "properties"),
            "description": description,
            "model_framework": model_framework,
            "model_framework_version": model_framework_version,
            "created_time": time.time(),
        }
        # Copy first, under a private name, so a registered version is never half copied.
        staging = workspace.path / "models" / model_name / f".staging-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        target = staging / spec["file_name"]
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
        version = workspace.store.register("model", model_name, spec, new_version=True)
        staging.rename(_folder(workspace, model_name, version))
        return Model(workspace, model_name, version=version)

    @staticmethod
    def list(
        workspace: Workspace, name: str | None = None, tags: Any = None, latest: bool = False
    ) -> list[Model]:
        """Registered models, newest version first within each name.

        Parameters
        ----------
        workspace : Workspace
            The workspace to look in.
        name : str, optional
            Only this model's versions.
        tags : list or dict, optional
            Keys or key-value pairs each version must have.
        latest : bool
            Only the latest version of each name.
        """
        found = [
            Model(workspace, n, version=v)
            for n, v, spec in workspace.store.entries("model", latest_only=latest)
            if (name is None or n == name) and _matches(spec["tags"], tags)
        ]
        return sorted(found, key=lambda m: (m.name, -m.version))

    @staticmethod
    def get_model_path(
        model_name: str, version: int | None = None, _workspace: Workspace | None = None
    ) -> str:
        """The local path of a registered model's file or folder.

        Parameters
        ----------
        model_name : str
            The model's name.
        version : int, optional
            The version; the latest when None.
        _workspace : Workspace, optional
            Where to look; by default ``Workspace.from_config()``, which inside an entry script
            is the run's workspace.
        """
        workspace = _workspace if _workspace is not None else Workspace.from_config()
        return Model(workspace, model_name, version=version).path

    def download(self, target_dir: str | os.PathLike = ".", exist_ok: bool = False) -> str:
        """Copy the model's file or folder into ``target_dir``; returns the copy's path."""
        source = Path(self.path)
        target = Path(target_dir) / source.name
        if target.exists():
            if not exist_ok:
                raise FileExistsError(f"{str(target)!r} exists; pass exist_ok=True to replace it")
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
        return str(target)

    def __repr__(self) -> str:
        return f"Model(workspace={self.workspace.name!r}, name={self.name!r}, id={self.id!r})"


def _folder(workspace: Workspace, name: str, version: int) -> Path:
    return workspace.path / "models" / name / str(version)


def _not_found(workspace: Workspace, name: str, version: Any, tags: Any) -> str:
    versions = [v for n, v, _ in workspace.store.entries("model", latest_only=False) if n == name]
    wanted = f"model {name!r}" + (f" version {version}" if version is not None else "")
    wanted += f" with tags {tags!r}" if tags is not None else ""
    if versions:
        return f"no {wanted} in workspace {workspace.name!r}; its versions are: " + ", ".join(
            map(str, versions)
        )
    names = sorted({n for n, _, _ in workspace.store.entries("model")})
    return (
        f"no {wanted} in workspace {workspace.name!r}; registered models: "
        f"{', '.join(names) or '(none)'}"
    )


register_collection(
    "models",
    lambda ws: {name: Model(ws, name) for name, _, _ in ws.store.entries("model")},
)
