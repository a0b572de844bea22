"""Tests of datastores: registration, lookup, copying files in and out, DataPath, listing."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from jupyter_parallelrun.datastore import DataPath, Datastore
from jupyter_parallelrun.storage import iter_local_files
from jupyter_parallelrun.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.create("test", path=tmp_path / "ws")


def write(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)


def test_register_local_folder_creates_folder_and_stores_absolute_path(ws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Datastore.register_local_folder(ws, "images", "data/images")
    assert store.datastore_type == "Local"
    assert store.root == str(tmp_path / "data" / "images")
    assert Path(store.root).is_dir()
    again = Datastore.get(ws, "images")
    assert again == store
    assert Datastore(ws, "images").root == store.root


def test_reregistering_with_other_settings_needs_overwrite(ws, tmp_path):
    Datastore.register_local_folder(ws, "images", tmp_path / "a")
    same = Datastore.register_local_folder(ws, "images", tmp_path / "a")
    assert same.root == str(tmp_path / "a")
    with pytest.raises(ValueError, match="'images' is already registered"):
        Datastore.register_local_folder(ws, "images", tmp_path / "b")
    moved = Datastore.register_local_folder(ws, "images", tmp_path / "b", overwrite=True)
    assert Datastore.get(ws, "images").root == moved.root == str(tmp_path / "b")


def test_unknown_datastore_lists_registered_names(ws, tmp_path):
    Datastore.register_local_folder(ws, "images", tmp_path / "a")
    with pytest.raises(ValueError, match=r"'nope' is not registered.*\['images'\]"):
        Datastore.get(ws, "nope")


def test_default_datastore(ws):
    default = Datastore.get_default(ws)
    assert default.name == "workspaceblobstore"
    assert Path(default.root).is_dir()
    assert default == ws.get_default_datastore()


@pytest.mark.parametrize("name", ["", None, "  "])
def test_register_local_folder_rejects_bad_names(ws, tmp_path, name):
    with pytest.raises(ValueError, match="datastore_name must be a non-empty string"):
        Datastore.register_local_folder(ws, name, tmp_path / "a")


def test_register_azure_blob_container_keeps_settings(ws):
    store = Datastore.register_azure_blob_container(
        ws,
        datastore_name="mnist_datastore",
        container_name="sampledata",
        account_name="pipelinedata",
        sas_token="sv=secret",
        protocol="https",
        endpoint="core.windows.net",
        overwrite=True,
    )
    again = Datastore.get(ws, "mnist_datastore")
    assert again.datastore_type == "AzureBlob"
    assert (again.root, again.container_name, again.account_name) == (
        "az://sampledata",
        "sampledata",
        "pipelinedata",
    )
    assert again.protocol == "https" and again.endpoint == "core.windows.net"
    assert again.storage_options == {
        "connection_string": "BlobEndpoint=https://pipelinedata.blob.core.windows.net;"
        "SharedAccessSignature=sv=secret"
    }
    assert store.path("mnist/").to_url() == "az://sampledata/mnist/"
    assert "secret" not in repr(again)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"container_name": "Sample"}, "container_name must be 3-63 lowercase"),
        ({"container_name": "ab"}, "container_name must be 3-63 lowercase"),
        ({"container_name": "a--b"}, "container_name must be 3-63 lowercase"),
        ({"container_name": "-abc"}, "container_name must be 3-63 lowercase"),
        ({"container_name": ""}, "container_name must be a non-empty string"),
        ({"account_name": "My_Account"}, "account_name must be 3-24 lowercase"),
        ({"protocol": "ftp"}, 'protocol must be None, "https" or "http"; got \'ftp\''),
        ({"datastore_name": ""}, "datastore_name must be a non-empty string"),
        ({"endpoint": "ftp://host/acct"}, "endpoint must be a domain suffix .* or an http"),
        (
            {"endpoint": "http://127.0.0.1:10000/acct", "protocol": "https"},
            "protocol='https' contradicts endpoint='http://127.0.0.1:10000/acct'",
        ),
    ],
)
def test_register_azure_blob_container_validates(ws, arguments, message):
    settings = {"datastore_name": "blob", "container_name": "data", "account_name": "acct"}
    with pytest.raises(ValueError, match=message):
        Datastore.register_azure_blob_container(ws, **{**settings, **arguments})


def test_blob_filesystem_without_adlfs_says_what_to_install(ws, monkeypatch):
    monkeypatch.setitem(sys.modules, "adlfs", None)  # import adlfs now raises ImportError
    store = Datastore.register_azure_blob_container(ws, "blob", "data", "acct")
    with pytest.raises(ImportError, match="pip install adlfs"):
        _ = store.fs
    with pytest.raises(ValueError, match="needs a Local datastore"):
        store.local_path("x")


@pytest.mark.parametrize(
    ("protocol", "endpoint", "url"),
    [
        (None, None, "https://acct.blob.core.windows.net"),
        ("http", "core.chinacloudapi.cn", "http://acct.blob.core.chinacloudapi.cn"),
        (None, "http://127.0.0.1:10000", "http://127.0.0.1:10000/acct"),
        (
            None,
            "http://127.0.0.1:10000/devstoreaccount1/",
            "http://127.0.0.1:10000/devstoreaccount1",
        ),
    ],
)
def test_blob_endpoint_is_azures_suffix_or_a_url(ws, protocol, endpoint, url):
    store = Datastore.register_azure_blob_container(
        ws, "blob", "data", "acct", account_key="k", protocol=protocol, endpoint=endpoint
    )
    assert store.storage_options == {
        "connection_string": f"BlobEndpoint={url};AccountName=acct;AccountKey=k"
    }


def test_upload_and_download_roundtrip(ws, tmp_path):
    source = tmp_path / "src"
    write(source, "a.txt", "sub/b.txt", "sub/deeper/c.txt")
    store = Datastore.register_local_folder(ws, "files", tmp_path / "store")
    target = store.upload(source, target_path="up", show_progress=False)
    assert isinstance(target, DataPath)
    assert target.to_url() == str(tmp_path / "store" / "up")
    assert (store.local_path("up/sub/deeper/c.txt")).read_text() == "sub/deeper/c.txt"

    (source / "a.txt").write_text("changed")
    store.upload(source, target_path="up", show_progress=False)
    assert store.local_path("up/a.txt").read_text() == "a.txt"
    store.upload(source, target_path="up", overwrite=True, show_progress=False)
    assert store.local_path("up/a.txt").read_text() == "changed"

    out = tmp_path / "out"
    assert store.download(out, prefix="up/sub", show_progress=False) == 2
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "up/sub/b.txt",
        "up/sub/deeper/c.txt",
    ]
    assert store.download(out, show_progress=False) == 1
    assert store.download(out, overwrite=True, show_progress=False) == 3


def test_upload_files_keeps_paths_below_relative_root(ws, tmp_path):
    write(tmp_path / "src", "x/1.txt", "x/y/2.txt")
    store = Datastore.register_local_folder(ws, "files", tmp_path / "store")
    files = [tmp_path / "src/x/1.txt", tmp_path / "src/x/y/2.txt"]
    store.upload_files(files, relative_root=tmp_path / "src", target_path="t", show_progress=False)
    assert store.local_path("t/x/y/2.txt").is_file()
    store.upload_files(files, show_progress=False)
    assert store.local_path("1.txt").is_file() and store.local_path("y/2.txt").is_file()
    with pytest.raises(ValueError, match="relative_root=.* must hold every file"):
        store.upload_files(files, relative_root=tmp_path / "src/x/y", show_progress=False)
    with pytest.raises(ValueError, match="src_dir must be an existing folder"):
        store.upload(tmp_path / "missing", show_progress=False)


def test_data_path(ws, tmp_path):
    store = Datastore.register_local_folder(ws, "files", tmp_path / "store")
    path = store.path("/mnist/")
    assert path.datastore is store
    assert path.path_on_datastore == "/mnist/"
    assert str(path) == path.to_url() == os.path.join(str(tmp_path / "store"), "mnist/")
    assert path == DataPath(store, "/mnist/")
    assert store.path().to_url() == store.root
    assert store.local_path("a/b") == tmp_path / "store" / "a" / "b"
    with pytest.raises(ValueError, match="datastore must be a Datastore"):
        DataPath("store", "x")


def test_from_spec_rebuilds_without_workspace(ws, tmp_path):
    store = Datastore.register_local_folder(ws, "files", tmp_path / "store")
    rebuilt = Datastore.from_spec(store.to_spec())
    assert rebuilt.workspace is None
    assert rebuilt == store


def test_iter_local_files_streams_sorted_matches(tmp_path):
    write(tmp_path, "b/2.png", "b/1.png", "a.png", "a/z.png", "a/y.txt", "c/d/e/f.png", "c/g.png")
    root = str(tmp_path)
    relative = lambda pattern: [  # noqa: E731
        os.path.relpath(p, root) for p in iter_local_files(os.path.join(root, pattern))
    ]
    every = ["a/y.txt", "a/z.png", "a.png", "b/1.png", "b/2.png", "c/d/e/f.png", "c/g.png"]
    assert relative("") == every
    assert relative("**/*.png") == [p for p in every if p.endswith(".png")]
    assert relative("*.png") == ["a.png"]
    assert relative("*/*.png") == ["a/z.png", "b/1.png", "b/2.png", "c/g.png"]
    assert relative("c/**") == ["c/d/e/f.png", "c/g.png"]
    assert relative("[ab]/?.png") == ["a/z.png", "b/1.png", "b/2.png"]
    assert relative("[bc]/?.png") == ["b/1.png", "b/2.png", "c/g.png"]
    assert relative("[!b]/*.txt") == ["a/y.txt"]
    assert relative("c/d") == ["c/d/e/f.png"]
    assert relative("a.png") == ["a.png"]
    assert relative("nothing*") == [] and relative("missing") == []
