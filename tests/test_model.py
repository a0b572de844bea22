"""Model: register files and folders as versions, find them again, download them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import jupyter_parallelrun
from jupyter_parallelrun import Model, Workspace
from jupyter_parallelrun.workspace import WORKSPACE_ENV


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"v1")
    return path


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "models"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "data").write_bytes(b"weights")
    return folder


def test_register_a_file(ws, model_file):
    model = Model.register(
        workspace=ws,
        model_path=str(model_file),
        model_name="mnist",
        tags={"area": "mnist", "accuracy": 0.9},
        description="digits",
        model_framework="TensorFlow",
    )
    assert (model.name, model.version, model.id) == ("mnist", 1, "mnist:1")
    assert model.tags == {"area": "mnist", "accuracy": "0.9"}
    assert model.description == "digits" and model.model_framework == "TensorFlow"
    assert model.path == str(ws.path / "models" / "mnist" / "1" / "weights.bin")
    assert model.url == model.path
    model_file.write_bytes(b"changed")
    assert Path(model.path).read_bytes() == b"v1"


def test_register_a_folder_and_versions(ws, model_folder):
    first = Model.register(ws, str(model_folder) + "/", "mnist")
    (model_folder / "saved_model.pb").write_bytes(b"graph 2")
    second = Model.register(ws, model_folder, "mnist", tags={"stage": "best"})
    assert (first.version, second.version) == (1, 2)
    assert (ws.path / "models" / "mnist" / "2" / "models" / "variables" / "data").is_file()
    assert Model(ws, "mnist").version == 2
    assert Model(ws, "mnist", version=1).path == first.path
    assert Model(ws, id="mnist:1").version == 1
    assert Model(ws, "mnist", tags=["stage"]).version == 2
    assert Model(ws, "mnist", tags=[["stage", "best"]]).version == 2
    assert [m.id for m in Model.list(ws)] == ["mnist:2", "mnist:1"]
    assert [m.id for m in Model.list(ws, latest=True)] == ["mnist:2"]
    assert [m.id for m in Model.list(ws, tags={"stage": "best"})] == ["mnist:2"]
    assert sorted(ws.models) == ["mnist"]


def test_register_rejects(ws, tmp_path, model_file):
    with pytest.raises(FileNotFoundError, match="model_path=.*nothing.*no such file or folder"):
        Model.register(ws, str(tmp_path / "nothing"), "mnist")
    for bad in ("", "-mnist", "mn ist", "m" * 256):
        with pytest.raises(ValueError, match="model_name must be 1 to 255 letters"):
            Model.register(ws, model_file, bad)
    with pytest.raises(TypeError, match="tags must be a dict with string keys"):
        Model.register(ws, model_file, "mnist", tags=["area"])
    assert Model.list(ws) == []


def test_unknown_model_or_version(ws, model_file):
    with pytest.raises(
        ValueError, match="no model 'mnist' in workspace 'test'; registered models: \\(none\\)"
    ):
        Model(ws, "mnist")
    Model.register(ws, model_file, "mnist")
    with pytest.raises(ValueError, match="no model 'mnist' version 4 .*its versions are: 1"):
        Model(ws, "mnist", version=4)
    with pytest.raises(ValueError, match="no model 'other' .*registered models: mnist"):
        Model.get_model_path("other", _workspace=ws)
    with pytest.raises(ValueError, match="id must be 'name:version'; got 'mnist'"):
        Model(ws, id="mnist")
    with pytest.raises(ValueError, match="give the model's name or its id"):
        Model(ws)


def test_get_model_path(ws, model_file, monkeypatch, tmp_path):
    Model.register(ws, model_file, "mnist")
    model_file.write_bytes(b"v2")
    second = Model.register(ws, model_file, "mnist")
    assert Model.get_model_path("mnist", _workspace=ws) == second.path
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(WORKSPACE_ENV, str(ws.config_file.parent))
    assert Model.get_model_path("mnist") == second.path
    assert Path(Model.get_model_path("mnist", version=1)).read_bytes() == b"v1"


def test_get_model_path_in_a_worker_like_process(ws, model_file, tmp_path):
    """A separate process, told the workspace only through the environment, as a worker is."""
    model = Model.register(ws, model_file, "mnist")
    code = textwrap.dedent(
        """
        from jupyter_parallelrun import Model
        print(Model.get_model_path("mnist"))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(Path(jupyter_parallelrun.__file__).parents[1]),
            WORKSPACE_ENV: str(ws.config_file.parent),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == model.path


def test_download(ws, model_file, model_folder, tmp_path):
    target = tmp_path / "downloaded"
    path = Model.register(ws, model_file, "mnist").download(target_dir=str(target))
    assert Path(path).read_bytes() == b"v1" and path == str(target / "weights.bin")
    with pytest.raises(FileExistsError, match="weights.bin' exists; pass exist_ok=True"):
        Model(ws, "mnist").download(target_dir=str(target))
    assert Model(ws, "mnist").download(str(target), exist_ok=True) == path
    folder = Model.register(ws, model_folder, "saved").download(str(target))
    assert Path(folder, "variables", "data").read_bytes() == b"weights"
    assert Model(ws, "saved").download(str(target), exist_ok=True) == folder


def test_workspace_from_config_is_the_one_registered_into(ws, model_file, monkeypatch):
    monkeypatch.setenv(WORKSPACE_ENV, str(ws.config_file.parent))
    assert Workspace.from_config() == ws
