"""Workspace: made, found again like Azure's, and what it lists."""

from __future__ import annotations

import json
import os
import stat

import pytest

from jupyter_parallelrun import AmlCompute, ComputeTarget, Dataset, Model, Workspace


def test_create_writes_config_and_from_config_finds_it_from_a_subfolder(tmp_path, monkeypatch):
    ws = Workspace.create("demo", path=tmp_path, subscription_id="sub", resource_group="rg")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config == {
        "workspace_name": "demo",
        "subscription_id": "sub",
        "resource_group": "rg",
        "location": "local",
    }
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert Workspace.from_config() == ws
    assert Workspace.from_config(str(tmp_path / "config.json")).name == "demo"


def test_from_config_looks_under_dot_azureml(tmp_path):
    Workspace.create("hidden", path=tmp_path / ".azureml")
    assert Workspace.from_config(tmp_path).name == "hidden"


def test_missing_config_names_the_folders_searched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PARALLELRUN_WORKSPACE", raising=False)
    with pytest.raises(
        FileNotFoundError, match="no config.json found; searched: .*" + tmp_path.name
    ):
        Workspace.from_config()


def test_create_refuses_another_workspace_in_the_same_place(tmp_path):
    Workspace.create("one", path=tmp_path)
    with pytest.raises(FileExistsError, match="belongs to workspace 'one'"):
        Workspace.create("two", path=tmp_path)
    with pytest.raises(FileExistsError, match="exist_ok=True"):
        Workspace.create("one", path=tmp_path, exist_ok=False)


def test_registries(tmp_path):
    ws = Workspace.create("demo", path=tmp_path)
    assert list(ws.datastores) == ["workspaceblobstore"]
    (tmp_path / "model.txt").write_text("weights")
    Model.register(ws, str(tmp_path / "model.txt"), "m")
    ComputeTarget.create(ws, "cpu", AmlCompute.provisioning_configuration(max_nodes=2))
    Dataset.File.from_files(path=str(tmp_path / "model.txt")).register(ws, "files")
    assert list(ws.models) == ["m"]
    assert list(ws.compute_targets) == ["cpu"]
    assert list(ws.datasets) == ["files"]
    assert ws.experiments == {}


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _private_files(ws) -> list:
    store = ws.path / "store.sqlite"
    return [store, store.with_name("store.sqlite-wal"), store.with_name("store.sqlite-shm")]


def test_a_new_workspace_keeps_its_store_and_runs_to_its_owner(tmp_path):
    umask = os.umask(0)  # the loosest umask: the modes must not come from it
    try:
        ws = Workspace.create("demo", path=tmp_path)
        ws.get_default_datastore()  # a write: the WAL and shared-memory files exist now
    finally:
        os.umask(umask)
    assert [_mode(path) for path in _private_files(ws)] == [0o600] * 3
    assert _mode(ws.path / "runs") == 0o700
    # What the user shares keeps the modes the user's umask gives.
    assert _mode(ws.path / "datastores" / "workspaceblobstore") == 0o777


def test_an_existing_workspace_is_tightened_when_opened(tmp_path):
    ws = Workspace.create("demo", path=tmp_path)
    ws.get_default_datastore()
    for path in _private_files(ws):
        path.chmod(0o644)
    (ws.path / "runs").chmod(0o755)
    again = Workspace.from_config(path=tmp_path)
    assert [_mode(path) for path in _private_files(again)] == [0o600] * 3
    assert _mode(again.path / "runs") == 0o700
