"""The check of an Environment against the Python that runs the workers, before any starts.

Azure builds an image from an environment; here the workers run under a Python that already
exists (the notebook's, ``python.interpreter_path``, or the one ``Environment.build_local``
made), so the check asks what that Python provides:

- A pip requirement is met by the distribution that provides it: its own name, or one that
  provides the same top-level import (``tensorflow`` by ``tensorflow-cpu``, found through
  ``importlib.metadata.packages_distributions()``), or an entry of :data:`IMPORT_NAMES` where
  the requirement's name does not tell its import (``opencv-python`` is ``cv2``). Nothing
  providing it is an error, with the ``pip install`` line that fixes it.
- A version that differs from a pin is a warning, not an error: Azure's samples pin the
  versions of their cloud images, and the notebook's Python is the user's choice.
- Where an older pinned major version behaves differently in a way the workers can restore,
  :func:`worker_variables` says how (pandas < 3: strings as object dtype), and the warning says so.
- Docker, Spark, Databricks, R and inferencing settings are recorded and reported, not applied.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import subprocess
import sys
import warnings
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from .conda_dependencies import canonical_name, package_name

#: Import names of requirements whose distribution name does not tell them (canonical
#: distribution name -> top-level modules). Any installed distribution that provides one of
#: these modules meets the requirement, as ``opencv-python-headless`` meets ``opencv-python``.
IMPORT_NAMES: dict[str, tuple[str, ...]] = {
    "opencv-python": ("cv2",),
    "opencv-contrib-python": ("cv2",),
    "opencv-python-headless": ("cv2",),
    "opencv-contrib-python-headless": ("cv2",),
    "pillow": ("PIL",),
    "pillow-simd": ("PIL",),
    "scikit-learn": ("sklearn",),
    "scikit-image": ("skimage",),
    "tensorflow-cpu": ("tensorflow",),
    "tensorflow-gpu": ("tensorflow",),
    "tensorflow-intel": ("tensorflow",),
    "tensorflow-macos": ("tensorflow",),
    "onnxruntime-gpu": ("onnxruntime",),
    "faiss-cpu": ("faiss",),
    "faiss-gpu": ("faiss",),
    "pyyaml": ("yaml",),
    "beautifulsoup4": ("bs4",),
    "python-dateutil": ("dateutil",),
}

DEFAULT_CPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04"
DEFAULT_GPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.1-cudnn8-ubuntu20.04"

#: Set in the workers' environment when the environment pins pandas below 3 (see
#: :func:`worker_variables`); the worker then turns off pandas' ``future.infer_string``.
PANDAS_OBJECT_STRINGS = "JUPYTER_PARALLELRUN_PANDAS_OBJECT_STRINGS"


class EnvironmentCheckError(RuntimeError):
    """The workers' Python lacks what an Environment asks for."""


#: The package's folder: frames from its files are not the user's.
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class EnvironmentWarning(UserWarning):
    """An Environment setting the workers do not meet or apply as Azure would (shown at submit)."""


def warn_each_time(message: str) -> None:
    """``warnings.warn(message, EnvironmentWarning)``, shown at every call and pointing at the
    user's line: the first caller outside this package (``submit()`` in a notebook cell, say),
    however deep inside the package it is raised. Each is about the run just submitted, so
    Python's default of once per line would hide the warning of a cell run again. The user's
    filters (``ignore``, ``error``, ``once``) still apply."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
    warnings.warn_explicit(
        message,
        EnvironmentWarning,
        frame.f_code.co_filename,
        frame.f_lineno,
        module=frame.f_globals.get("__name__"),
        registry={},  # a fresh registry: "already shown here" is forgotten
        module_globals=frame.f_globals,
    )


def import_names(name: str) -> list[str]:
    """The top-level modules that would provide requirement ``name``: its own name as a
    module, then those of :data:`IMPORT_NAMES`."""
    key = canonical_name(name)
    return [key.replace("-", "_"), *IMPORT_NAMES.get(key, ())]


def _installed(wanted):
    """For each ``[name, import_names]`` of ``wanted``: the installed distribution that provides
    it, and the marker values of the Python running this.

    Runs in this process or, through its source, in another interpreter: so it imports what it
    uses and keeps to syntax any Python 3 reads.
    """
    import importlib.metadata
    import os
    import platform
    import re
    import sys

    def canonical(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    versions = {}
    for dist in importlib.metadata.distributions():
        key = canonical(dist.metadata["Name"] or "")
        if key and key not in versions:  # the first on sys.path is the one imported
            versions[key] = dist.version
    modules = None
    providers = {}
    for name, imports in wanted:
        key = canonical(name)
        if key in versions:
            providers[key] = [key, versions[key]]
            continue
        if modules is None:
            finder = getattr(importlib.metadata, "packages_distributions", None)
            modules = finder() if finder else {}
        candidates = [canonical(d) for module in imports for d in modules.get(module, [])]
        # tensorflow-cpu before an unrelated plugin that also ships files under tensorflow/
        candidates.sort(key=lambda d: not d.startswith(key))
        found = [d for d in candidates if d in versions]
        providers[key] = [found[0], versions[found[0]]] if found else None
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
    return {"providers": providers, "markers": markers}


def _probe(interpreter: str, wanted: list[list], label: str) -> dict[str, Any]:
    """:func:`_installed` in ``interpreter`` (this process when it is the running Python)."""
    if os.path.abspath(interpreter) == os.path.abspath(sys.executable):
        return _installed(wanted)
    if not os.path.isfile(interpreter):
        raise EnvironmentCheckError(
            f"{label}: python.interpreter_path={interpreter!r} does not exist"
        )
    code = inspect.getsource(_installed) + (
        "\nimport json, sys\nprint(json.dumps(_installed(json.loads(sys.argv[1]))))\n"
    )
    try:
        done = subprocess.run(
            [interpreter, "-c", code, json.dumps(wanted)],
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


def _pins_pandas_below_3(requirement: Requirement) -> bool:
    """Whether ``requirement`` (on pandas) admits only versions before 3."""
    for spec in requirement.specifier:
        try:
            version = Version(spec.version.rstrip(".*"))
        except InvalidVersion:
            continue
        if spec.operator in ("==", "===", "~=", "<=") and version.major < 3:
            return True
        if spec.operator == "<" and version <= Version("3"):
            return True
    return False


def _pip_requirements(env_spec: dict[str, Any]) -> list[tuple[str, Requirement | None]]:
    deps = (env_spec.get("python") or {}).get("conda_dependencies") or {}
    found = []
    for line in deps.get("pip_packages") or []:
        try:
            found.append((line, Requirement(line)))
        except InvalidRequirement:
            found.append((line, None))
    return found


def worker_variables(env_spec: dict[str, Any] | None) -> dict[str, str]:
    """Environment variables that make the workers behave as the pinned versions would.

    A pin of pandas below 3 (Azure's iris sample pins ``pandas==1.4.4``) sets
    :data:`PANDAS_OBJECT_STRINGS`: a worker whose pandas is 3 or later then sets pandas'
    ``future.infer_string`` to False before the entry script loads, so strings are object
    dtype as in pandas 1 and 2 (pandas 3's Arrow-backed strings refuse, for one, a column
    assigned from an (n, 1) array of strings). A worker with pandas below 3 changes nothing.
    """
    for _, requirement in _pip_requirements(env_spec or {}):
        pandas = requirement is not None and canonical_name(requirement.name) == "pandas"
        if pandas and _pins_pandas_below_3(requirement):
            return {PANDAS_OBJECT_STRINGS: "1"}
    return {}


def check_environment(env_spec: dict[str, Any] | None) -> list[str]:
    """Check an Environment (its spec) against the Python that will run the workers.

    Every pip requirement whose marker holds must be provided by a distribution installed in
    ``python.interpreter_path``, or in this Python when that is None (see the module's
    docstring for what provides a requirement). ``azureml-*`` packages are skipped: they are
    the Azure SDK that this package stands in for.

    Parameters
    ----------
    env_spec : dict or None
        ``Environment.to_spec()``, or None for no environment.

    Returns
    -------
    list of str
        Warnings to show with the run: versions that differ from a pin, requirements that
        cannot be checked (URLs, paths), conda packages, a ``python=`` version other than the
        one found, and the settings recorded but not applied (Docker, Spark, ...).

    Raises
    ------
    EnvironmentCheckError
        Naming every requirement that nothing installed provides, with the ``pip install``
        line that installs them.
    """
    if env_spec is None:
        return []
    label = f"environment {env_spec.get('name')!r}"
    python = env_spec.get("python") or {}
    deps = python.get("conda_dependencies") or {}
    interpreter = python.get("interpreter_path") or sys.executable
    notes = not_applied_warnings(env_spec, label)
    requirements: list[tuple[str, Requirement]] = []
    for line, requirement in _pip_requirements(env_spec):
        if requirement is None:
            notes.append(f"{label}: pip requirement {line!r} not checked: not a package name")
        elif requirement.url:
            notes.append(f"{label}: pip requirement {line!r} not checked: it is a URL")
        elif not canonical_name(requirement.name).startswith("azureml-"):
            requirements.append((line, requirement))
    if not requirements and not python.get("interpreter_path"):
        return notes + _conda_warnings(deps, None, label)
    wanted = [[r.name, import_names(r.name)] for _, r in requirements]
    found = _probe(interpreter, wanted, label)
    missing = []
    for line, requirement in requirements:
        if requirement.marker and not requirement.marker.evaluate(found["markers"]):
            continue
        provider = found["providers"].get(canonical_name(requirement.name))
        if provider is None:
            missing.append(line)
        elif not requirement.specifier.contains(provider[1], prereleases=True):
            notes.append(_version_warning(label, line, requirement, *provider))
    if missing:
        one = len(missing) == 1
        install = shlex.join([interpreter, "-m", "pip", "install", *missing])
        raise EnvironmentCheckError(
            f"{label}: pip package{'' if one else 's'} {', '.join(map(repr, missing))} "
            f"{'is' if one else 'are'} not installed in {interpreter} (no distribution there "
            f"provides {'it' if one else 'them'}). Install with: {install} ; or set "
            "python.interpreter_path to a Python that has them, or build the environment with "
            "env.build_local(ws)."
        )
    return notes + _conda_warnings(deps, found["markers"]["python_full_version"], label)


def _version_warning(
    label: str, line: str, requirement: Requirement, dist: str, version: str
) -> str:
    by = "" if dist == canonical_name(requirement.name) else f" (from {dist})"
    text = (
        f"{label}: pins {line!r}; the workers' Python has {requirement.name} {version}{by}, "
        "used as it is (env.build_local(ws) builds the pinned versions)"
    )
    if canonical_name(requirement.name) == "pandas" and _pins_pandas_below_3(requirement):
        try:
            newer = Version(version).major >= 3
        except InvalidVersion:
            newer = False
        if newer:
            text += (
                "; pandas 3 infers Arrow-backed strings where the pinned pandas made object "
                "columns, so the workers set pandas' future.infer_string=False before the "
                "entry script loads"
            )
    return text


# The sections Azure applies when it builds an image and a local process cannot: each field
# with its Azure default, so only what the user changed is reported.
_NOT_APPLIED: dict[str, dict[str, Any]] = {
    "docker": {
        "enabled": False,
        "base_image": DEFAULT_CPU_IMAGE,
        "base_dockerfile": None,
        "build_context": None,
        "base_image_registry": {"address": None, "username": None, "registry_identity": None},
        "shm_size": None,
        "shared_volumes": True,
        "gpu_support": False,
        "arguments": [],
    },
    "spark": {"repositories": [], "packages": [], "precache_packages": True},
    "databricks": {
        "maven_libraries": [],
        "pypi_libraries": [],
        "rcran_libraries": [],
        "jar_libraries": [],
        "egg_libraries": [],
    },
}


def not_applied_warnings(env_spec: dict[str, Any], label: str) -> list[str]:
    """One warning naming every Docker, Spark, Databricks, R and inferencing setting that
    differs from Azure's default: recorded with the environment, not applied here."""
    shown = []
    for section, defaults in _NOT_APPLIED.items():
        values = env_spec.get(section) or {}
        changed = [
            f"{key}={values[key]!r}"
            for key, default in defaults.items()
            if key in values
            and values[key] != default
            and not (key == "base_image" and values[key] in (None, DEFAULT_GPU_IMAGE))
        ]
        if changed:
            shown.append(f"{section} ({', '.join(changed)})")
    if env_spec.get("r") is not None:
        shown.append(f"r ({', '.join(f'{k}={v!r}' for k, v in env_spec['r'].items() if v)})")
    if env_spec.get("inferencing_stack_version") is not None:
        shown.append(f"inferencing_stack_version={env_spec['inferencing_stack_version']!r}")
    if not shown:
        return []
    return [
        f"{label}: settings recorded, not applied (the workers run as local processes of this "
        f"machine, with no container or cluster image): {'; '.join(shown)}"
    ]


def _conda_warnings(deps: dict[str, Any], python_found: str | None, label: str) -> list[str]:
    notes = []
    others = []
    for package in deps.get("conda_packages") or []:
        name = package_name(package)
        if name == "python":
            wanted = re.sub(r"^python\s*[=<>!~]*", "", package).strip()
            found = python_found or ".".join(map(str, sys.version_info[:3]))
            if wanted and not (found + ".").startswith(wanted.rstrip(".*") + "."):
                notes.append(f"{label}: asks for {package}; the workers run Python {found}")
        elif name != "pip":
            others.append(package)
    if others:
        notes.append(
            f"{label}: conda packages recorded, not checked: {', '.join(others)} "
            "(only pip packages are checked)"
        )
    return notes
