"""CondaDependencies: the pip and conda packages an Environment asks for, as Azure's
``azureml.core.conda_dependencies``, read from and written as a conda specification (YAML).

Package names are compared as pip compares them (:func:`canonical_name`), so adding a
package replaces an earlier entry of the same package.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any


def canonical_name(name: str) -> str:
    """``name`` as pip compares package names: lower case, runs of ``-_.`` as ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _check_package(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"{what} must be a non-empty string; got {value!r}")
    return value.strip()


def package_name(spec: str) -> str:
    """The name part of ``"pandas>=2"`` or ``"python=3.8"``, for replacing an earlier entry."""
    return canonical_name(re.split(r"[\s<>=!~\[;@]", spec, maxsplit=1)[0])


class CondaDependencies:
    """The pip and conda packages of an Environment.

    Parameters
    ----------
    conda_dependencies_file_path : str, optional
        A conda specification (YAML) to read; only the usual block layout is understood
        (``dependencies:`` with ``- package`` items and a ``- pip:`` list).

    Examples
    --------
    >>> deps = CondaDependencies.create(pip_packages=["tensorflow-cpu", "pillow"])
    >>> deps.pip_packages
    ['tensorflow-cpu', 'pillow']
    """

    def __init__(self, conda_dependencies_file_path: str | os.PathLike | None = None) -> None:
        self._pip: list[str] = []
        self._conda: list[str] = []
        self.channels: list[str] = ["conda-forge"]
        self.pip_indexurl: str | None = None
        if conda_dependencies_file_path is not None:
            self._read(Path(conda_dependencies_file_path))

    @classmethod
    def create(
        cls,
        pip_packages: list[str] | None = None,
        conda_packages: list[str] | None = None,
        python_version: str | None = None,
        pip_indexurl: str | None = None,
        pin_sdk_version: bool = True,
    ) -> CondaDependencies:
        """Dependencies with these packages.

        ``pin_sdk_version`` is accepted as Azure accepts it; no ``azureml-*`` package is added.
        """
        deps = cls()
        if python_version is not None:
            deps.add_conda_package(f"python={python_version}")
        for package in conda_packages or []:
            deps.add_conda_package(package)
        for package in pip_packages or []:
            deps.add_pip_package(package)
        deps.pip_indexurl = pip_indexurl
        return deps

    @property
    def pip_packages(self) -> list[str]:
        """The pip requirements, as given."""
        return list(self._pip)

    @property
    def conda_packages(self) -> list[str]:
        """The conda packages, as given (``python=3.8`` among them)."""
        return list(self._conda)

    def add_pip_package(self, pip_package: str) -> None:
        """Add a pip requirement, replacing an earlier one of the same package."""
        _add(self._pip, _check_package(pip_package, "pip_package"))

    def add_conda_package(self, conda_package: str) -> None:
        """Add a conda package, replacing an earlier one of the same package."""
        _add(self._conda, _check_package(conda_package, "conda_package"))

    def serialize_to_string(self) -> str:
        """The dependencies as a conda specification (YAML)."""
        lines = ["name: project_environment", "dependencies:"]
        lines += [f"- {package}" for package in self._conda]
        if self._pip:
            lines.append("- pip:")
            if self.pip_indexurl:
                lines.append(f"  - --index-url {self.pip_indexurl}")
            lines += [f"  - {package}" for package in self._pip]
        lines += ["channels:", *(f"- {channel}" for channel in self.channels)]
        return "\n".join(lines) + "\n"

    def to_spec(self) -> dict[str, Any]:
        """The dependencies as a JSON-able dict."""
        return {
            "pip_packages": list(self._pip),
            "conda_packages": list(self._conda),
            "channels": list(self.channels),
            "pip_indexurl": self.pip_indexurl,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> CondaDependencies:
        """The dependencies that :meth:`to_spec` describes."""
        deps = cls()
        deps._pip = list(spec.get("pip_packages") or [])
        deps._conda = list(spec.get("conda_packages") or [])
        deps.channels = list(spec.get("channels") or [])
        deps.pip_indexurl = spec.get("pip_indexurl")
        return deps

    def _read(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"conda specification {str(path)!r}: no such file")
        self.channels = []
        section, pip_indent = None, None
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
            if not line.strip():
                continue
            indent = len(line) - len(line.lstrip())
            item = line.strip()
            if not item.startswith("-"):
                if indent == 0:
                    section, pip_indent = item.split(":", 1)[0].strip(), None
                continue
            value = item[1:].strip().strip("\"'")
            if pip_indent is not None and indent > pip_indent:
                if value.startswith("--index-url"):
                    self.pip_indexurl = value.split(None, 1)[-1]
                elif not value.startswith("-"):
                    self.add_pip_package(value)
                continue
            pip_indent = None
            if section == "channels":
                self.channels.append(value)
            elif section == "dependencies" and value == "pip:":
                pip_indent = indent
            elif section == "dependencies" and value.startswith("pip:"):
                raise ValueError(
                    f"conda specification {str(path)!r}: write the pip packages as a block list "
                    f"under '- pip:', one '- package' per line; got {item!r}"
                )
            elif section == "dependencies":
                self.add_conda_package(value)


def _add(packages: list[str], package: str) -> None:
    name = package_name(package)
    packages[:] = [p for p in packages if package_name(p) != name] + [package]
