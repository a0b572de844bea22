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
from .environment_sections import (
    ContainerRegistry,
    DatabricksSection,
    DockerSection,
    RSection,
    SparkPackage,
    SparkSection,
    section_from_spec,
    to_plain,
)
from .workspace import register_collection

if TYPE_CHECKING:
    from .workspace import Workspace

__all__ = [
    "DEFAULT_CPU_IMAGE",
    "DEFAULT_GPU_IMAGE",
    "ContainerRegistry",
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
    def from_pip_requirements(
        cls, name: str, file_path: str | os.PathLike, pip_version: str | None = None
    ) -> Environment:
        """An environment whose pip packages are the requirements in ``file_path``.

        Option lines (``-r``, ``--index-url``, ...) and comments are skipped. ``pip_version``
        is recorded as Azure records it (a conda package ``pip=<version>``).
        """
        path = Path(file_path)
        if not path.is_file():
            raise FileNotFoundError(f"file_path={str(file_path)!r}: no such file")
        deps = CondaDependencies()
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", raw).strip()
            if line and not line.startswith("-"):
                deps.add_pip_package(line)
        deps.add_conda_package(f"pip={pip_version}" if pip_version else "pip")
        env = cls(name)
        env.python.conda_dependencies = deps
        return env

    @classmethod
    def from_conda_specification(cls, name: str, file_path: str | os.PathLike) -> Environment:
        """An environment with the packages of a conda specification (YAML) file."""
        env = cls(name)
        env.python.conda_dependencies = CondaDependencies(file_path)
        return env

    @classmethod
    def from_docker_image(
        cls,
        name: str,
        image: str,
        container_registry: Any = None,
        conda_specification: str | os.PathLike | None = None,
        pip_requirements: str | os.PathLike | None = None,
    ) -> Environment:
        """An environment on a Docker image, as Azure's: the image is recorded and reported,
        not applied (the workers run on this machine). Of ``container_registry`` only its
        address and username are kept: its password has no use here and is not stored."""
        env = cls._from_dependencies(name, conda_specification, pip_requirements)
        env.docker.base_image = image
        env.docker.base_dockerfile = None
        if container_registry is not None:
            env.docker.base_image_registry = ContainerRegistry(
                address=getattr(container_registry, "address", None),
                username=getattr(container_registry, "username", None),
            )
        return env

    @classmethod
    def from_dockerfile(
        cls,
        name: str,
        dockerfile: str | os.PathLike,
        conda_specification: str | os.PathLike | None = None,
        pip_requirements: str | os.PathLike | None = None,
    ) -> Environment:
        """An environment built from a Dockerfile (its text, or a path to it), as Azure's:
        recorded and reported, not applied."""
        env = cls._from_dependencies(name, conda_specification, pip_requirements)
        path = Path(dockerfile)
        env.docker.base_dockerfile = (
            path.read_text(encoding="utf-8")
            if "\n" not in str(dockerfile) and path.is_file()
            else str(dockerfile)
        )
        env.docker.base_image = None
        return env

    @classmethod
    def _from_dependencies(
        cls,
        name: str,
        conda_specification: str | os.PathLike | None,
        pip_requirements: str | os.PathLike | None,
    ) -> Environment:
        if conda_specification and pip_requirements:
            raise ValueError(
                "give conda_specification or pip_requirements, not both; got "
                f"conda_specification={str(conda_specification)!r}, "
                f"pip_requirements={str(pip_requirements)!r}"
            )
        if conda_specification:
            return cls.from_conda_specification(name, conda_specification)
        if pip_requirements:
            return cls.from_pip_requirements(name, pip_requirements)
        env = cls(name)
        env.python.user_managed_dependencies = True
        return env

    @staticmethod
    def list(workspace: Workspace) -> dict[str, Environment]:
        """The environments registered in ``workspace``, by name (each its latest version)."""
        names = sorted({n for n, _, _ in workspace.store.entries("environment")})
        return {name: Environment.get(workspace, name) for name in names}

    def clone(self, new_name: str) -> Environment:
        """A copy of this environment under ``new_name``, not registered."""
        return Environment.from_spec({**self.to_spec(), "name": new_name, "version": None})

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
            "docker": to_plain(self.docker),
            "spark": to_plain(self.spark),
            "databricks": to_plain(self.databricks),
            "r": None if self.r is None else to_plain(self.r),
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
        env.docker = section_from_spec(DockerSection, spec.get("docker"))
        if not isinstance(env.docker.base_image_registry, ContainerRegistry):
            env.docker.base_image_registry = section_from_spec(
                ContainerRegistry, env.docker.base_image_registry
            )
        env.spark = section_from_spec(SparkSection, spec.get("spark"))
        env.spark.packages = [
            section_from_spec(SparkPackage, p) if isinstance(p, dict) else p
            for p in env.spark.packages
        ]
        env.databricks = section_from_spec(DatabricksSection, spec.get("databricks"))
        env.r = None if spec.get("r") is None else section_from_spec(RSection, spec["r"])
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


register_collection(
    "environments",
    lambda ws: {name: Environment.get(ws, name) for name, _, _ in ws.store.entries("environment")},
)
