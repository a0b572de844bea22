"""Environment.build_local: a real virtual environment made with uv from real pins on the
package registry, cached in the workspace, and the workers of a run started in it."""

from __future__ import annotations

import importlib.metadata
import json
import warnings
from pathlib import Path

import pytest
from conftest import file_dataset, output_rows, submit_step

from jupyter_parallelrun import CondaDependencies, Environment, EnvironmentWarning
from jupyter_parallelrun.environment_build import (
    EnvironmentBuildError,
    package_requirements,
    pip_index_options,
)
from jupyter_parallelrun.environment_check import check_environment

pytestmark = pytest.mark.slow

# Small pure-Python releases, older than the ones this machine has (six 1.17 here).
PINS = ["six==1.16.0", "tomli==2.0.1"]

VERSIONS_SCRIPT = """
import os
import sys

import six
import tomli


def init():
    pass


def run(mini_batch):
    return [
        f"{os.path.basename(p)} six={six.__version__} tomli={tomli.__version__} prefix={sys.prefix}"
        for p in mini_batch
    ]
"""


def environment(*pip_packages: str) -> Environment:
    env = Environment(name="pinned")
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=list(pip_packages))
    return env


def test_a_run_with_a_built_environment_runs_its_workers_there(ws, write_script, files, capsys):
    assert importlib.metadata.version("six") != "1.16.0", "the pin must differ from the kernel's"
    env = environment(*PINS)
    python = env.build_local(ws)
    folder = Path(python).parent.parent
    assert env.python.interpreter_path == python
    assert folder.parent == ws.path / "environments" and folder.name.startswith("pinned-")
    assert "building a virtual environment with uv" in capsys.readouterr().out
    built = json.loads((folder / "built.json").read_text())
    assert built["pip_packages"] == sorted(PINS)
    assert check_environment(env.to_spec()) == []  # the pins are met there: no warning

    # The workers import six and tomli from the built environment, not from the kernel's.
    with warnings.catch_warnings():
        warnings.simplefilter("error", EnvironmentWarning)
        run = submit_step(
            ws, write_script(VERSIONS_SCRIPT), file_dataset(files(3)), environment=env
        )
    assert run.wait_for_completion(timeout_seconds=180) == "Completed"
    rows = sorted(output_rows(run))
    assert rows == [f"item_{i:03d}.txt six=1.16.0 tomli=2.0.1 prefix={folder}" for i in range(3)]

    # A second build of the same specification reuses the first.
    again = environment(*reversed(PINS))
    assert again.build_local(ws) == python
    assert "using the environment built earlier" in capsys.readouterr().out
    assert json.loads((folder / "built.json").read_text()) == built
    # One damaged after its build is built again.
    (folder / "bin" / "python").unlink()
    assert again.build_local(ws) == python and Path(python).exists()
    assert "building a virtual environment" in capsys.readouterr().out
    # A registered environment keeps the built Python with it.
    assert Environment.get(ws, env.register(ws).name).python.interpreter_path == python


def test_a_pin_that_cannot_be_installed_is_named(ws):
    env = environment("six==999", "tomli==2.0.1")
    with pytest.raises(EnvironmentBuildError) as failed:
        env.build_local(ws)
    message = str(failed.value)
    assert message.startswith("environment 'pinned': build_local could not install 'six==999'")
    assert "tomli" not in message.split(" here: ")[0]
    assert "six==999" in message.split(" here: ")[1]  # uv's own words follow
    assert env.python.interpreter_path is None
    left = sorted(p.name for p in (ws.path / "environments").iterdir())
    assert len(left) == 1 and left[0].endswith(".failed.log"), left  # no half-built environment
    # A pin against what the workers themselves need says so.
    with pytest.raises(EnvironmentBuildError) as failed:
        environment("pandas==1.4.4").build_local(ws)
    assert str(failed.value).startswith(
        "environment 'pinned': build_local could not install 'pandas==1.4.4' here (the workers "
        "themselves need pandas>=2.0): "
    )


def test_build_local_arguments(ws):
    env = environment()
    with pytest.raises(ValueError, match="platform='Windows': this machine is Linux"):
        env.build_local(ws, platform="Windows")
    with pytest.raises(
        TypeError, match="unexpected keyword argument.*nodocker.*allowed: useDocker"
    ):
        env.build_local(ws, nodocker=True)
    with pytest.raises(TypeError, match="workspace must be a Workspace; got str"):
        env.build_local("ws")
    env.python.conda_dependencies.add_conda_package("scipy")
    with pytest.warns(EnvironmentWarning) as shown:
        env.build_local(ws, platform="Linux", useDocker=True)
    messages = [str(w.message) for w in shown]
    assert any("useDocker=True not applied" in m for m in messages)
    assert any(
        "conda packages not installed by build_local" in m and "scipy" in m for m in messages
    )
    assert {Path(w.filename).name for w in shown} == {Path(__file__).name}


def test_uv_gets_the_index_settings_pip_has(tmp_path, monkeypatch):
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nindex-url = https://global.invalid/simple\n"
        "extra-index-url = https://one.invalid/simple https://two.invalid/simple\n"
        "[install]\nindex-url = https://install.invalid/simple\n"
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    options, _ = pip_index_options()
    assert options[:2] == ["--index-strategy", "unsafe-best-match"]
    assert options[options.index("--index-url") + 1] == "https://install.invalid/simple"
    extra = [options[i + 1] for i, o in enumerate(options) if o == "--extra-index-url"]
    assert extra == ["https://one.invalid/simple", "https://two.invalid/simple"]
    monkeypatch.setenv("PIP_INDEX_URL", "https://env.invalid/simple")
    options, _ = pip_index_options()
    assert options[options.index("--index-url") + 1] == "https://env.invalid/simple"


def test_the_workers_need_of_this_package_what_it_declares():
    wanted = {r.split(">")[0].split("=")[0] for r in package_requirements()}
    assert {"pandas", "numpy", "pyarrow", "fsspec", "joblib", "packaging"} <= wanted
    assert not wanted & {"ipywidgets", "anywidget", "pytest", "tensorflow-cpu"}
