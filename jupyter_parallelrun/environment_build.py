"""``Environment.build_local``: the environment built for real, as a virtual environment.

Azure builds an image from an environment; here ``build_local`` makes a virtual environment
with ``uv`` from the environment's pip packages plus what the workers need of this package,
under the notebook's Python. It is kept in the workspace (``.parallelrun/environments/``) under
a hash of what it was built from, and reused while that is unchanged. The environment's
``python.interpreter_path`` is then that environment's Python, so runs with it start their
workers there (and the check at submit looks there).

This package itself is not copied or rebuilt: the virtual environment holds a link to the
``jupyter_parallelrun`` folder the notebook imports, so the runner and its workers always run
the same code, and nothing else of the notebook's Python is visible to the workers. Packages
reach ``uv`` through the index settings ``pip`` has here (``pip config list``).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.requirements import InvalidRequirement, Requirement

from .conda_dependencies import canonical_name, package_name
from .environment_check import EnvironmentCheckError, warn_each_time

if TYPE_CHECKING:
    from .environment import Environment
    from .workspace import Workspace

#: This package's dependencies that only the notebook uses (the RunDetails widget): not
#: installed for the workers.
NOTEBOOK_ONLY = {"ipywidgets", "anywidget"}

_PLATFORMS = {"Linux": "linux", "Windows": "win32", "OSX": "darwin"}
_KWARGS = ("useDocker", "pushImageToWorkspaceAcr")
_BUILD_SECONDS = 1800


class EnvironmentBuildError(EnvironmentCheckError):
    """``build_local`` could not build the environment (a pin that cannot be installed here)."""


def _uv() -> str:
    try:
        import uv

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
    if found is None:
        raise EnvironmentBuildError(
            "build_local needs uv, which is not installed: pip install uv"
        ) from None
    return found


def package_requirements() -> list[str]:
    """The dependencies of this package that its workers need (not its extras, not
    :data:`NOTEBOOK_ONLY`)."""
    try:
        lines = importlib.metadata.requires("jupyter_parallelrun") or []
    except importlib.metadata.PackageNotFoundError:
        lines = _source_requirements()
    wanted = []
    for line in lines:
        requirement = Requirement(line)
        if requirement.marker and "extra" in str(requirement.marker):
            continue
        if canonical_name(requirement.name) not in NOTEBOOK_ONLY:
            wanted.append(line)
    return wanted


def _source_requirements() -> list[str]:
    """The dependencies in ``pyproject.toml`` beside the package, when it runs from a source
    folder that was never installed."""
    try:
        import tomllib
    except ImportError as error:  # Python 3.10
        raise EnvironmentBuildError(
            "build_local cannot tell this package's dependencies: jupyter_parallelrun is not "
            "installed (pip install it, or run on Python 3.11 or later)"
        ) from error
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        raise EnvironmentBuildError(
            "build_local cannot tell this package's dependencies: jupyter_parallelrun is not "
            f"installed and {pyproject} does not exist"
        )
    return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]


def pip_index_options(interpreter: str = sys.executable) -> tuple[list[str], dict[str, str]]:
    """``uv pip install`` options, and environment variables, for the index settings ``pip``
    of ``interpreter`` has (its configuration files and ``PIP_*`` variables).

    uv's ``--index-strategy unsafe-best-match`` is pip's behaviour: the best version across
    every index, where uv by default stops at the first index that has the package.
    """
    try:
        done = subprocess.run(
            [interpreter, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
        listed = done.stdout.splitlines() if done.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired):
        listed = []
    # pip's order of precedence: a command's own section over [global], variables over both
    rank = {"global": 0, "install": 1, ":env:": 2}
    settings: dict[str, tuple[int, str]] = {}
    for line in listed:
        found = re.match(r"^(.*)\.([\w-]+)=('.*')$", line.strip())
        if found and found[1] in rank:
            level, key = rank[found[1]], found[2]
            if key not in settings or settings[key][0] <= level:
                settings[key] = (level, ast.literal_eval(found[3]))
    values = {key: value for key, (_, value) in settings.items()}
    options = ["--index-strategy", "unsafe-best-match"]
    if values.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        options.append("--no-index")
    if values.get("index-url"):
        options += ["--index-url", values["index-url"]]
    for key in ("extra-index-url", "find-links", "constraint"):
        for value in values.get(key, "").split():
            options += [f"--{key}", value]
    variables = {"SSL_CERT_FILE": values["cert"]} if values.get("cert") else {}
    return options, variables


def _pins(env: Environment) -> tuple[list[str], list[str], str | None]:
    """The environment's pip requirements to install, what cannot be applied, its index."""
    deps = env.python.conda_dependencies
    if deps is None:
        return [], [], None
    pins, skipped = [], []
    for line in deps.pip_packages:
        try:
            name = Requirement(line).name
        except InvalidRequirement:
            name = package_name(line)
        if not canonical_name(name).startswith("azureml-"):
            pins.append(line)
    for package in deps.conda_packages:
        if package_name(package) not in ("python", "pip"):
            skipped.append(package)
    return pins, skipped, deps.pip_indexurl


def build_local(
    env: Environment, workspace: Workspace, platform_name: str | None, kwargs: dict[str, Any]
) -> str:
    """Build ``env`` (see :meth:`Environment.build_local`); returns the built Python."""
    from .workspace import Workspace

    if not isinstance(workspace, Workspace):
        raise TypeError(f"workspace must be a Workspace; got {type(workspace).__name__}")
    here = platform.system().replace("Darwin", "OSX")
    if platform_name is not None and platform_name != here:
        raise ValueError(
            f"platform={platform_name!r}: this machine is {here}; an environment builds only "
            f"for the machine it runs on (one of {', '.join(_PLATFORMS)}: {here})"
        )
    unknown = sorted(set(kwargs) - set(_KWARGS))
    if unknown:
        raise TypeError(
            f"build_local() got unexpected keyword argument(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(_KWARGS)}"
        )
    label = f"environment {env.name!r}"
    if any(kwargs.get(key) for key in _KWARGS):
        warn_each_time(
            f"{label}: {', '.join(f'{k}=True' for k in _KWARGS if kwargs.get(k))} not applied: "
            "build_local builds a virtual environment on this machine, not a Docker image",
        )
    pins, skipped, index_url = _pins(env)
    if skipped:
        warn_each_time(
            f"{label}: conda packages not installed by build_local (it installs pip packages "
            f"only): {', '.join(skipped)}",
        )
    package = Path(__file__).resolve().parent
    requirements = package_requirements()
    options, variables = pip_index_options()
    if index_url:
        options += ["--index-url", index_url]
    what = {
        "pip_packages": sorted(pins),
        "package_requirements": sorted(requirements),
        "package": str(package),
        "python": [os.path.realpath(sys.executable), sys.version],
        "options": options,
    }
    key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    root = workspace.path / "environments"
    folder = root / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', env.name)}-{key}"
    python = folder / "bin" / "python"
    if (folder / "built.json").is_file() and python.exists():
        print(f"{label}: using the environment built earlier at {folder}")
    else:
        # A folder without its Python was damaged after its build: it is built again.
        shutil.rmtree(folder, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        _build(label, folder, what, pins + requirements, options, variables, package)
    env.python.interpreter_path = str(python)
    return str(python)


def _build(
    label: str,
    folder: Path,
    what: dict[str, Any],
    requirements: list[str],
    options: list[str],
    variables: dict[str, str],
    package: Path,
) -> None:
    """Build into a scratch folder beside ``folder`` and move it into place when complete, so
    a build stopped halfway or a second build at the same time never leaves a broken one."""
    uv = _uv()
    started = time.time()
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    built, log = scratch / "env", scratch / "build.log"
    try:
        print(f"{label}: building a virtual environment with uv in {folder}")
        venv = [uv, "venv", "--relocatable", "--python", sys.executable, str(built)]
        _uv_step(label, venv, log)
        python = built / "bin" / "python"
        install = [uv, "pip", "install", "--python", str(python), *options, *requirements]
        output = _uv_step(label, install, log, variables)
        if output is not None:
            named = [r for r in what["pip_packages"] if package_name(r) in output.lower()]
            ours = [r for r in what["package_requirements"] if r in output]
            raise EnvironmentBuildError(
                f"{label}: build_local could not install "
                f"{', '.join(map(repr, named)) or 'its pip packages'} here"
                + (f" (the workers themselves need {', '.join(ours)})" if ours else "")
                + f": {_tail(output)} (the whole output: {folder}.failed.log)"
            )
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # The package the notebook runs, linked: the runner and the workers are the same code.
        os.symlink(package, Path(site) / "jupyter_parallelrun", target_is_directory=True)
        log.rename(built / "build.log")
        (built / "built.json").write_text(
            json.dumps({**what, "built": time.time(), "seconds": time.time() - started}, indent=1)
        )
        try:
            built.rename(folder)
        except OSError:  # another build of the same specification finished first
            if not (folder / "built.json").is_file():
                raise
    except BaseException:
        if log.is_file():
            shutil.copyfile(log, f"{folder}.failed.log")
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{label}: built in {time.time() - started:.1f} s: {folder / 'bin' / 'python'}")


def _uv_step(
    label: str, command: list[str], log: Path, variables: dict[str, str] | None = None
) -> str | None:
    """Run one uv command, its output appended to ``log``; None when it succeeds, else its
    output."""
    with open(log, "a", encoding="utf-8") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        try:
            done = subprocess.run(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=_BUILD_SECONDS,
                env={**os.environ, **(variables or {}), "NO_COLOR": "1"},
            )
        except subprocess.TimeoutExpired as error:
            raise EnvironmentBuildError(
                f"{label}: build_local stopped: {command[1:3]} ran past {_BUILD_SECONDS} s"
            ) from error
        out.write(done.stdout)
    if done.returncode == 0:
        return None
    if command[1] == "venv":
        raise EnvironmentBuildError(
            f"{label}: uv could not make a virtual environment: {_tail(done.stdout)}"
        )
    return done.stdout


def _tail(output: str, lines: int = 12) -> str:
    return " | ".join(line.strip() for line in output.strip().splitlines()[-lines:] if line.strip())
