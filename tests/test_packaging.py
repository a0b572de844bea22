"""What ``pip install "jupyter_parallelrun[jupyter]"`` promises notebook users."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def extras() -> dict[str, list[str]]:
    return tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]


def test_the_jupyter_extra_brings_jupyterlab_a_kernel_and_the_widget_manager():
    names = {Requirement(r).name.replace("_", "-") for r in extras()["jupyter"]}
    assert {"jupyterlab", "ipykernel", "jupyterlab-widgets"} <= names
    assert any("jupyter" in r and r.startswith("jupyter_parallelrun[") for r in extras()["test"])


def test_what_the_jupyter_extra_names_is_installed_and_jupyterlab_loads_the_widget():
    for line in extras()["jupyter"]:
        requirement = Requirement(line)
        assert requirement.specifier.contains(version(requirement.name)), line
    listed = subprocess.run(
        [sys.executable, "-m", "jupyterlab.labextensions", "list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    shown = listed.stdout + listed.stderr
    for extension in ("anywidget", "@jupyter-widgets/jupyterlab-manager"):
        (line,) = [x for x in shown.splitlines() if x.split() and x.split()[0] == extension]
        assert "enabled" in line and "OK" in line, line
