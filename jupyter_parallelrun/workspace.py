"""Workspace: the local stand-in for an Azure ML workspace.

A workspace is a folder found through a ``config.json``, as Azure finds its own: in the folder
given, else the current folder or any parent, each also under ``.azureml/``. The state (the
registries and the runs) lives in ``.parallelrun/store.sqlite`` next to that ``config.json``;
the default datastore and the run folders live beside it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .store import RunStore

if TYPE_CHECKING:
    from .compute import ComputeTarget
    from .dataset import Dataset
    from .datastore import Datastore
    from .environment import Environment
    from .model import Model
    from .run import Experiment

CONFIG_FILE = "config.json"
DATA_FOLDER = ".parallelrun"
DEFAULT_DATASTORE = "workspaceblobstore"
#: Set in every worker process so that ``Workspace.from_config()`` and
#: ``Model.get_model_path()`` find the run's workspace from inside an entry script.
WORKSPACE_ENV = "PARALLELRUN_WORKSPACE"
#: Set in worker processes to their step run's id, for ``Run.get_context()``.
RUN_ID_ENV = "PARALLELRUN_RUN_ID"

#: What each of a workspace's collections (``ws.models``, ``ws.experiments``, ...) lists, given
#: by the module that defines the kind. Every kind is made in a workspace, so the workspace
#: imports none of them: the kinds build on it, never the other way round.
_COLLECTIONS: dict[str, Callable[[Workspace], dict[str, Any]]] = {}


def register_collection(name: str, listing: Callable[[Workspace], dict[str, Any]]) -> None:
    """Make ``listing(ws)`` what ``ws.<name>`` returns; each kind's module calls it once."""
    _COLLECTIONS[name] = listing


def _private_folder(folder: Path) -> None:
    """Make ``folder`` (the runs: logs, snapshots, scratch) reachable by its owner only.

    The logs record each mini-batch with its input's read options, which hold a datastore's
    credentials for blob input, and whatever the entry script printed. Outputs live in the
    datastores beside it and keep their modes. An existing folder is tightened when the
    workspace is opened; one that another user owns is left to its owner.
    """
    folder.mkdir(mode=0o700, exist_ok=True)
    try:
        if folder.stat().st_mode & 0o077:
            os.chmod(folder, 0o700)
    except PermissionError:
        pass


class Workspace:
    """A workspace: registries of datastores, datasets, models, environments, compute targets,
    and the runs of its experiments.

    Use :meth:`create` to make one and :meth:`from_config` to open it again.

    Examples
    --------
    >>> ws = Workspace.create("demo", path="work")          # doctest: +SKIP
    >>> ws = Workspace.from_config()                          # doctest: +SKIP
    """

    def __init__(
        self,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        workspace_name: str | None = None,
        *,
        path: str | Path = ".",
    ) -> None:
        config_dir = Path(path).resolve()
        config_file = config_dir / CONFIG_FILE
        if not config_file.is_file():
            raise FileNotFoundError(
                f"path={str(path)!r} holds no {CONFIG_FILE}; "
                "use Workspace.create(name, path) to make a workspace there"
            )
        config = json.loads(config_file.read_text())
        if workspace_name is not None and workspace_name != config.get("workspace_name"):
            raise ValueError(
                f"workspace_name={workspace_name!r} does not match the workspace at "
                f"{str(config_file)!r}, which is {config.get('workspace_name')!r}"
            )
        self.name: str = config["workspace_name"]
        self.subscription_id: str = subscription_id or config.get("subscription_id", "local")
        self.resource_group: str = resource_group or config.get("resource_group", "local")
        self.location: str = config.get("location", "local")
        self.config_file = config_file
        self.path = config_dir / DATA_FOLDER
        self.path.mkdir(parents=True, exist_ok=True)
        _private_folder(self.path / "runs")
        self.store = RunStore(self.path / "store.sqlite")

    # -- finding and making workspaces ------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        path: str | Path = ".",
        exist_ok: bool = True,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        location: str | None = None,
        **kwargs: Any,
    ) -> Workspace:
        """Make a workspace named ``name`` whose ``config.json`` is written at ``path``.

        Azure's other keyword arguments (``create_resource_group``, ``sku``, ...) are accepted
        and ignored: there is no cloud resource to create.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty string; got {name!r}")
        folder = Path(path)
        config_file = folder / CONFIG_FILE
        if config_file.exists():
            existing = json.loads(config_file.read_text()).get("workspace_name")
            if not exist_ok:
                raise FileExistsError(
                    f"a workspace ({existing!r}) already exists at {str(config_file)!r}; "
                    "pass exist_ok=True to open it"
                )
            if existing != name:
                raise FileExistsError(
                    f"{str(config_file)!r} belongs to workspace {existing!r}, not {name!r}; "
                    "choose another path"
                )
        else:
            folder.mkdir(parents=True, exist_ok=True)
            config = {
                "workspace_name": name,
                "subscription_id": subscription_id or "local",
                "resource_group": resource_group or "local",
                "location": location or "local",
            }
            config_file.write_text(json.dumps(config, indent=2) + "\n")
        return cls(path=folder)

    @classmethod
    def from_config(
        cls, path: str | Path | None = None, _file_name: str | None = None
    ) -> Workspace:
        """Open the workspace whose ``config.json`` is found first.

        Parameters
        ----------
        path : str or Path, optional
            A ``config.json`` file or a folder holding one (directly or under ``.azureml/``).
            When None: the folder of the run's workspace inside an entry script, else the current
            folder, then each of its parents.
        """
        file_name = _file_name or CONFIG_FILE
        if path is not None:
            candidates = [Path(path)]
        elif os.environ.get(WORKSPACE_ENV):
            candidates = [Path(os.environ[WORKSPACE_ENV])]
        else:
            cwd = Path.cwd().resolve()
            candidates = [cwd, *cwd.parents]
        searched = []
        for folder in candidates:
            if folder.is_file():
                return cls(path=folder.parent)
            for config_dir in (folder, folder / ".azureml"):
                searched.append(str(config_dir))
                if (config_dir / file_name).is_file():
                    return cls(path=config_dir)
        raise FileNotFoundError(
            f"no {file_name} found; searched: {', '.join(searched)}. "
            "Create one with Workspace.create(name, path)."
        )

    def write_config(self, path: str | Path | None = None, file_name: str | None = None) -> None:
        """Write this workspace's ``config.json`` (as Azure's) into ``path``."""
        target = Path(path or ".") / (file_name or CONFIG_FILE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.config_file.read_text())

    # -- what the workspace holds -----------------------------------------------------------

    def get_default_datastore(self) -> Datastore:
        """The workspace's own folder datastore, ``workspaceblobstore``."""
        from .datastore import Datastore

        if self.store.lookup("datastore", DEFAULT_DATASTORE) is None:
            folder = self.path / "datastores" / DEFAULT_DATASTORE
            return Datastore.register_local_folder(self, DEFAULT_DATASTORE, folder)
        return Datastore.get(self, DEFAULT_DATASTORE)

    @property
    def datastores(self) -> dict[str, Datastore]:
        from .datastore import Datastore

        self.get_default_datastore()
        return {name: Datastore.get(self, name) for name, _, _ in self.store.entries("datastore")}

    @property
    def datasets(self) -> dict[str, Dataset]:
        return _COLLECTIONS["datasets"](self)

    @property
    def models(self) -> dict[str, Model]:
        return _COLLECTIONS["models"](self)

    @property
    def compute_targets(self) -> dict[str, ComputeTarget]:
        return _COLLECTIONS["compute_targets"](self)

    @property
    def environments(self) -> dict[str, Environment]:
        return _COLLECTIONS["environments"](self)

    @property
    def experiments(self) -> dict[str, Experiment]:
        return _COLLECTIONS["experiments"](self)

    def get_details(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "subscriptionId": self.subscription_id,
            "resourceGroup": self.resource_group,
            "location": self.location,
            "path": str(self.path),
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workspace) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"Workspace.create(name={self.name!r}, path={str(self.config_file.parent)!r})"
