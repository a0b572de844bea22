"""PortDataReference: where a step run's output lies on its datastore, as Azure's."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .datastore import Datastore

if TYPE_CHECKING:
    from .workspace import Workspace


class PortDataReference:
    """Where a step's output lies on its datastore; ``download`` copies it out."""

    def __init__(self, workspace: Workspace, output: dict[str, Any]) -> None:
        self.name = output["name"]
        self.datastore = Datastore.get(workspace, output["datastore"])
        self.path_on_datastore: str = output["path_on_datastore"]

    def download(self, local_path: str, overwrite: bool = False, show_progress: bool = True) -> str:
        """Copy the output to ``local_path/path_on_datastore``; returns that folder.

        An output on a blob datastore is read back from the container.
        """
        target = Path(local_path) / self.path_on_datastore
        if target.exists() and not overwrite and any(target.iterdir()):
            raise FileExistsError(
                f"local_path={local_path!r} already holds {target}; pass overwrite=True"
            )
        if self.datastore.datastore_type != "Local":
            prefix = self.path_on_datastore.rstrip("/") + "/"
            self.datastore.download(local_path, prefix, overwrite=True, show_progress=show_progress)
            target.mkdir(parents=True, exist_ok=True)
            return str(target)
        shutil.copytree(
            self.datastore.local_path(self.path_on_datastore), target, dirs_exist_ok=True
        )
        return str(target)

    def __repr__(self) -> str:
        return (
            f"PortDataReference(name={self.name!r}, path_on_datastore={self.path_on_datastore!r})"
        )
