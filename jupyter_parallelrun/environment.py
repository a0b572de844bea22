"""Environment, the software a step's workers run with, and its check against the workers' Python.

Nothing is installed: workers run as local processes of this machine, under the Python that runs
the notebook or under ``python.interpreter_path``. :func:`check_environment` runs before any
worker starts and names every pip requirement that Python does not satisfy. Docker settings and
conda packages are recorded and reported, not applied. The packages themselves are kept by
:class:`CondaDependencies` (``conda_dependencies.py``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.requirements import InvalidRequirement, Requirement

from .conda_dependencies import CondaDependencies, canonical_name, package_name

if TYPE_CHECKING:
    from .workspace import Workspace

DEFAULT_CPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04"
DEFAULT_GPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.1-cudnn8-ubuntu20.04"


class EnvironmentCheckError(RuntimeError):
    """The workers' Python lacks what an Environment asks for."""


@dataclasses.dataclass
class PythonSection:
    """The Python of an Environment.

    ``interpreter_path`` None means the Python that runs the notebook; ``conda_dependencies``
    are checked against that interpreter, never installed.
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
    shm_size: str | None = None
    gpu_support: bool = False


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
            "docker": dataclasses.asdict(self.docker),
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
        env.docker = DockerSection(**(spec.get("docker") or {}))
        env.environment_variables = dict(spec.get("environment_variables") or {})
        return env

    def __repr__(self) -> str:
        return f"Environment(name={self.name!r}, version={self.version!r})"


def _installed(names):
    """Installed versions of ``names`` and the marker values of the Python running this.

    Runs in this process or, through its source, in another interpreter: so it imports what it
    uses and keeps to syntax any Python 3 reads.
    """
    import importlib.metadata
    import os
    import platform
    import re
    import sys

    wanted = {re.sub(r"[-_.]+", "-", n).lower() for n in names}
    versions = dict.fromkeys(wanted)
    for dist in importlib.metadata.distributions():
        key = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
        if key in wanted and versions[key] is None:
            versions[key] = dist.version
    impl = sys.implementation.version
    markers = {
        "implementation_name": sys.implementation.name,
        "implementation_version": f"{impl.major}.{impl.minor}.{impl.micro}",
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }
    return {"versions": versions, "markers": markers}


def _probe(interpreter: str, names: list[str], label: str) -> dict[str, Any]:
    """:func:`_installed` in ``interpreter`` (this process when it is the running Python)."""
    if os.path.abspath(interpreter) == os.path.abspath(sys.executable):
        return _installed(names)
    if not os.path.isfile(interpreter):
        raise EnvironmentCheckError(
            f"{label}: python.interpreter_path={interpreter!r} does not exist"
        )
    code = inspect.getsource(_installed) + (
        "\nimport json, sys\nprint(json.dumps(_installed(json.loads(sys.argv[1]))))\n"
    )
    try:
        done = subprocess.run(
            [interpreter, "-c", code, json.dumps(names)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except OSError as error:
        raise EnvironmentCheckError(
            f"{label}: python.interpreter_path={interpreter!r} does not run: {error}"
        ) from error
    if done.returncode != 0:
        raise EnvironmentCheckError(
            f"{label}: python.interpreter_path={interpreter!r} failed to report its packages: "
            f"{done.stderr.strip()[-2000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _docker_warning(docker: dict[str, Any], label: str) -> list[str]:
    changed = {
        key: value
        for key, value in docker.items()
        if value != getattr(DockerSection, key) and not (key == "base_image" and value is None)
    }
    if not changed:
        return []
    shown = ", ".join(f"{key}={value!r}" for key, value in changed.items())
    return [
        f"{label}: docker settings recorded, not applied: workers run as local processes ({shown})"
    ]


def check_environment(env_spec: dict[str, Any] | None) -> list[str]:
    """Check an Environment (its spec) against the Python that will run the workers.

    Every pip requirement (name, version specifier and marker) must be met by a distribution
    installed in ``python.interpreter_path``, or in this Python when that is None.
    ``azureml-*`` packages are skipped: they are the Azure SDK that this package stands in for.
    Requirements given as a URL or a path cannot be checked and are reported as warnings, as are
    conda packages (nothing here can verify them), a ``python=`` version other than the one
    found, and Docker settings (recorded, not applied).

    Parameters
    ----------
    env_spec : dict or None
        ``Environment.to_spec()``, or None for no environment.

    Returns
    -------
    list of str
        Warnings to show with the run.

    Raises
    ------
    EnvironmentCheckError
        Naming every requirement that is missing or has the wrong version, with what was found.
    """
    if env_spec is None:
        return []
    label = f"environment {env_spec.get('name')!r}"
    python = env_spec.get("python") or {}
    deps = python.get("conda_dependencies") or {}
    interpreter = python.get("interpreter_path") or sys.executable
    warnings = _docker_warning(env_spec.get("docker") or {}, label)
    requirements: list[tuple[str, Requirement]] = []
    for line in deps.get("pip_packages") or []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            warnings.append(f"{label}: pip requirement {line!r} not checked: not a package name")
            continue
        if requirement.url:
            warnings.append(f"{label}: pip requirement {line!r} not checked: it is a URL")
        elif not canonical_name(requirement.name).startswith("azureml-"):
            requirements.append((line, requirement))
    if not requirements and not python.get("interpreter_path"):
        return warnings + _conda_warnings(deps, None, label)
    found = _probe(interpreter, [r.name for _, r in requirements], label)
    problems = []
    for line, requirement in requirements:
        if requirement.marker and not requirement.marker.evaluate(found["markers"]):
            continue
        version = found["versions"].get(canonical_name(requirement.name))
        if version is None:
            problems.append(f"pip package {line!r} is not installed in {interpreter}")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(
                f"{line!r} needs {requirement.name}{requirement.specifier}, found {version}"
            )
    if problems:
        raise EnvironmentCheckError(
            f"{label}: {'; '.join(problems)}. Install them into that Python, or set "
            "python.interpreter_path to a Python that has them."
        )
    return warnings + _conda_warnings(deps, found["markers"]["python_full_version"], label)


def _conda_warnings(deps: dict[str, Any], python_found: str | None, label: str) -> list[str]:
    warnings = []
    others = []
    for package in deps.get("conda_packages") or []:
        name = package_name(package)
        if name == "python":
            wanted = re.sub(r"^python\s*[=<>!~]*", "", package).strip()
            found = python_found or ".".join(map(str, sys.version_info[:3]))
            if wanted and not (found + ".").startswith(wanted.rstrip(".*") + "."):
                warnings.append(f"{label}: asks for {package}; the workers run Python {found}")
        elif name != "pip":
            others.append(package)
    if others:
        warnings.append(
            f"{label}: conda packages recorded, not checked: {', '.join(others)} "
            "(only pip packages are checked)"
        )
    return warnings
