"""Environment, the software a step's workers run with, as Azure ML SDK v1 describes it.

By default nothing is installed: the workers run as local processes of this machine, under the
Python that runs the notebook or under ``python.interpreter_path``, and the check in
``environment_check.py`` (run at submit, before any worker starts) says what that Python lacks
or has at another version. :meth:`Environment.build_local` builds the environment for real, as
a cached virtual environment (``environment_build.py``), and runs with it then use that Python.
The Docker, Spark, Databricks, R and inferencing sections are kept as Azure has them, recorded
with the environment and reported as not applied. The packages themselves are kept by
:class:`CondaDependencies` (``conda_dependencies.py``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .conda_dependencies import CondaDependencies
from .environment_check import (
    DEFAULT_CPU_IMAGE,
    DEFAULT_GPU_IMAGE,
    EnvironmentCheckError,
    EnvironmentWarning,
    check_environment,
)

if TYPE_CHECKING:
    from .workspace import Workspace

__all__ = [
    "DEFAULT_CPU_IMAGE",
    "DEFAULT_GPU_IMAGE",
    "DatabricksSection",
    "DockerSection",
    "Environment",
    "EnvironmentCheckError",
    "EnvironmentWarning",
    "PythonSection",
    "RSection",
    "SparkPackage",
    "SparkSection",
    "check_environment",
]


@dataclasses.dataclass
class PythonSection:
    """The Python of an Environment.

    ``interpreter_path`` None means the Python that runs the notebook (or, after
    :meth:`Environment.build_local`, the one it built); ``conda_dependencies`` are checked
    against that interpreter.
    """

    conda_dependencies: CondaDependencies | None = None
    interpreter_path: str | None = None
    user_managed_dependencies: bool = False


@dataclasses.dataclass
class DockerSection:
    """Docker settings of an Environment: recorded and reported, not applied."""

    enabled: bool = False
    base_image: str | None = DEFAULT_CPU_IMAGE
    base_dockerfile: str | None = None
    build_context: Any = None
    shm_size: str | None = None
    shared_volumes: bool = True
    gpu_support: bool = False
    arguments: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class SparkPackage:
    """A Spark package (Maven coordinates) of :class:`SparkSection`."""

    group: str | None = None
    artifact: str | None = None
    version: str | None = None


@dataclasses.dataclass
class SparkSection:
    """Spark settings of an Environment (Azure's defaults): recorded and reported, not applied."""

    repositories: list[str] = dataclasses.field(default_factory=list)
    packages: list[SparkPackage] = dataclasses.field(default_factory=list)
    precache_packages: bool = True


@dataclasses.dataclass
class DatabricksSection:
    """Databricks libraries of an Environment: recorded and reported, not applied."""

    maven_libraries: list[Any] = dataclasses.field(default_factory=list)
    pypi_libraries: list[Any] = dataclasses.field(default_factory=list)
    rcran_libraries: list[Any] = dataclasses.field(default_factory=list)
    jar_libraries: list[Any] = dataclasses.field(default_factory=list)
    egg_libraries: list[Any] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class RSection:
    """The R of an Environment (``env.r = RSection()``): recorded and reported, not applied."""

    r_version: str | None = None
    user_managed: bool = False
    rscript_path: str | None = None
    snapshot_date: str | None = None
    cran_packages: list[Any] = dataclasses.field(default_factory=list)
    github_packages: list[Any] = dataclasses.field(default_factory=list)
    custom_url_packages: list[str] = dataclasses.field(default_factory=list)
    bioconductor_packages: list[str] = dataclasses.field(default_factory=list)


def _plain(value: Any) -> Any:
    """``value`` as JSON: Azure's library objects (MavenLibrary, CranPackage, ...) by their
    attributes, anything else unknown by its text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "__dict__"):
        return {k: _plain(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


def _section(cls: type, spec: dict[str, Any] | None) -> Any:
    """``cls`` from its stored fields, ignoring fields a later version may have added."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in (spec or {}).items() if k in names})


class Environment:
    """The software a step's workers run with.

    Parameters
    ----------
    name : str
        The environment's name in the workspace.

    Examples
    --------
    >>> env = Environment(name="batch_environment")
    >>> env.python.conda_dependencies = CondaDependencies.create(pip_packages=["pandas"])
    >>> env.environment_variables["OMP_NUM_THREADS"] = "1"
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty string; got {name!r}")
        self.name = name
        self.version: str | None = None
        self.python = PythonSection()
        self.docker = DockerSection()
        self.spark = SparkSection()
        self.databricks = DatabricksSection()
        self.r: RSection | None = None
        self.inferencing_stack_version: str | None = None
        self.environment_variables: dict[str, str] = {}

    @classmethod
    def from_pip_requirements(cls, name: str, file_path: str | os.PathLike) -> Environment:
        """An environment whose pip packages are the requirements in ``file_path``.

        Option lines (``-r``, ``--index-url``, ...) and comments are skipped.
        """
        path = Path(file_path)
        if not path.is_file():
            raise FileNotFoundError(f"file_path={str(file_path)!r}: no such file")
        deps = CondaDependencies()
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", raw).strip()
            if line and not line.startswith("-"):
                deps.add_pip_package(line)
        env = cls(name)
        env.python.conda_dependencies = deps
        return env

    @classmethod
    def from_conda_specification(cls, name: str, file_path: str | os.PathLike) -> Environment:
        """An environment with the packages of a conda specification (YAML) file."""
        env = cls(name)
        env.python.conda_dependencies = CondaDependencies(file_path)
        return env

    def register(self, workspace: Workspace) -> Environment:
        """Store this environment in ``workspace``: a new version when it changed."""
        spec = self.to_spec()
        latest = workspace.store.lookup("environment", self.name)
        if latest is not None and {**latest[1], "version": None} == {**spec, "version": None}:
            version = latest[0]
        else:
            version = workspace.store.register("environment", self.name, spec, new_version=True)
        self.version = str(version)
        return self

    @classmethod
    def get(cls, workspace: Workspace, name: str, version: str | int | None = None) -> Environment:
        """The environment registered as ``name`` (its latest version when None)."""
        found = workspace.store.lookup(
            "environment", name, None if version is None else int(version)
        )
        if found is None:
            names = [n for n, _, _ in workspace.store.entries("environment")]
            raise ValueError(
                f"no environment {name!r}"
                + (f" version {version}" if version is not None else "")
                + f" in workspace {workspace.name!r}; registered: {', '.join(names) or '(none)'}"
            )
        env = cls.from_spec(found[1])
        env.version = str(found[0])
        return env

    def to_spec(self) -> dict[str, Any]:
        """The environment as a JSON-able dict: what is registered and what runs check."""
        deps = self.python.conda_dependencies
        return {
            "name": self.name,
            "version": self.version,
            "python": {
                "interpreter_path": self.python.interpreter_path,
                "user_managed_dependencies": self.python.user_managed_dependencies,
                "conda_dependencies": None if deps is None else deps.to_spec(),
            },
            "environment_variables": dict(self.environment_variables),
            "docker": _plain(self.docker),
            "spark": _plain(self.spark),
            "databricks": _plain(self.databricks),
            "r": None if self.r is None else _plain(self.r),
            "inferencing_stack_version": self.inferencing_stack_version,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Environment:
        """The environment that :meth:`to_spec` describes."""
        env = cls(spec["name"])
        env.version = spec.get("version")
        python = spec.get("python") or {}
        deps = python.get("conda_dependencies")
        env.python = PythonSection(
            conda_dependencies=None if deps is None else CondaDependencies.from_spec(deps),
            interpreter_path=python.get("interpreter_path"),
            user_managed_dependencies=bool(python.get("user_managed_dependencies")),
        )
        env.docker = _section(DockerSection, spec.get("docker"))
        env.spark = _section(SparkSection, spec.get("spark"))
        env.spark.packages = [
            _section(SparkPackage, p) if isinstance(p, dict) else p for p in env.spark.packages
        ]
        env.databricks = _section(DatabricksSection, spec.get("databricks"))
        env.r = None if spec.get("r") is None else _section(RSection, spec["r"])
        env.inferencing_stack_version = spec.get("inferencing_stack_version")
        env.environment_variables = dict(spec.get("environment_variables") or {})
        return env

    def build_local(self, workspace: Workspace, platform: str | None = None, **kwargs: Any) -> str:
        """Build this environment for real: a virtual environment, made with ``uv``, with its
        pip packages (pins as given) and what the workers need of this package.

        The build is kept in ``workspace`` under a hash of what it is made from and reused
        while that is unchanged; ``python.interpreter_path`` is then its Python, so runs with
        this environment start their workers there. Conda packages are not installed (a
        warning names them); the virtual environment uses the notebook's Python version.

        Parameters
        ----------
        workspace : Workspace
            Where the build is kept (``.parallelrun/environments/``).
        platform : str, optional
            As Azure's (``"Linux"``, ``"Windows"``, ``"OSX"``): only this machine's is accepted.
        **kwargs
            Azure's ``useDocker`` and ``pushImageToWorkspaceAcr`` are accepted; True is
            reported as not applied.

        Returns
        -------
        str
            The built environment's Python.

        Raises
        ------
        EnvironmentBuildError
            A pin that cannot be installed here (named, with uv's own words).

        Examples
        --------
        >>> env.python.conda_dependencies = CondaDependencies.create(pip_packages=["six==1.16.0"])
        >>> env.build_local(ws)  # doctest: +SKIP
        '.../.parallelrun/environments/batch_environment-3f2a.../bin/python'
        """
        from .environment_build import build_local

        return build_local(self, workspace, platform, kwargs)

    def __repr__(self) -> str:
        return f"Environment(name={self.name!r}, version={self.version!r})"
