"""CondaDependencies: Azure's package lists, made, and read back from conda YAML files."""

from __future__ import annotations

import textwrap

import pytest

from jupyter_parallelrun import CondaDependencies, Environment


def test_conda_dependencies():
    deps = CondaDependencies.create(
        pip_packages=["tensorflow-cpu", "pillow"],
        conda_packages=["numpy"],
        python_version="3.11",
        pip_indexurl="https://example.org/simple",
    )
    assert deps.pip_packages == ["tensorflow-cpu", "pillow"]
    assert deps.conda_packages == ["python=3.11", "numpy"]
    deps.add_pip_package("pillow>=10")
    deps.add_conda_package("scipy")
    assert deps.pip_packages == ["tensorflow-cpu", "pillow>=10"]
    assert deps.conda_packages[-1] == "scipy"
    text = deps.serialize_to_string()
    assert "- pip:\n  - --index-url https://example.org/simple\n  - tensorflow-cpu\n" in text
    assert "- python=3.11\n- numpy\n" in text
    with pytest.raises(TypeError, match="pip_package must be a non-empty string; got ''"):
        deps.add_pip_package("")


def test_conda_specification_round_trip(tmp_path):
    deps = CondaDependencies.create(pip_packages=["pandas>=2"], conda_packages=["numpy"])
    path = tmp_path / "env.yml"
    path.write_text(deps.serialize_to_string())
    env = Environment.from_conda_specification("from_yaml", path)
    read = env.python.conda_dependencies
    assert (read.pip_packages, read.conda_packages) == (["pandas>=2"], ["numpy"])


def test_conda_specification_layouts(tmp_path):
    path = tmp_path / "env.yml"
    path.write_text(
        textwrap.dedent(
            """\
            name: scoring  # the environment
            channels:
              - conda-forge
            dependencies:
              - python=3.8
              - pip
              - pip:
                  - "tensorflow-cpu==2.15"
                  - pillow  # images
              - scipy
            """
        )
    )
    deps = Environment.from_conda_specification("scoring", path).python.conda_dependencies
    assert deps.pip_packages == ["tensorflow-cpu==2.15", "pillow"]
    assert deps.conda_packages == ["python=3.8", "pip", "scipy"]
    assert deps.channels == ["conda-forge"]
    path.write_text("dependencies:\n  - pip: [pandas]\n")
    with pytest.raises(ValueError, match="write the pip packages as a block list"):
        Environment.from_conda_specification("flow", path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        Environment.from_conda_specification("missing", tmp_path / "missing.yml")
