"""Blob datastores for real: adlfs against Azurite, the Azure Storage emulator, on 127.0.0.1.

Listing and reading, runs over blob files (run() gets local paths, the next mini-batches'
files fetched while run() works), outputs uploaded at completion, and every way reaching the
container can fail caught at submit(), before any worker starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT, output_rows, submit_step

from jupyter_parallelrun import (
    Dataset,
    Datastore,
    Experiment,
    ParallelRunConfig,
    ParallelRunStep,
    Pipeline,
    PipelineData,
)

LOCAL_PATHS_SCRIPT = """
import os

def init():
    pass

def run(mini_batch):
    # Local, whole files, as Azure's mount and download modes give them.
    assert all("://" not in p and os.path.isfile(p) for p in mini_batch), mini_batch
    return [f"{os.path.basename(p)} {open(p).read()}" for p in mini_batch]
"""


def register(ws, azurite, container: str, name: str = "blobs", **credentials):
    credentials = credentials or {"account_key": azurite.account_key}
    return Datastore.register_azure_blob_container(
        ws,
        datastore_name=name,
        container_name=container,
        account_name=azurite.account_name,
        endpoint=azurite.endpoint,
        overwrite=True,
        **credentials,
    )


def upload_items(store, tmp_path: Path, count: int, target: str = "items") -> None:
    folder = tmp_path / f"upload-{target}"
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"item_{i:03d}.txt").write_text(str(i))
    store.upload(folder, target_path=target, show_progress=False)


def test_blob_datastore_lists_reads_and_downloads(ws, azurite, container, tmp_path, capsys):
    store = register(ws, azurite, container)
    upload_items(store, tmp_path, 3)
    upload_items(store, tmp_path, 1, target="other")
    ds = Dataset.File.from_files(path=store.path("items/*.txt"))
    assert list(ds.iter_files()) == [f"az://{container}/items/item_{i:03d}.txt" for i in range(3)]
    written = ds.download(str(tmp_path / "copy"))
    assert sorted(Path(p).read_text() for p in written) == ["0", "1", "2"]
    assert len(list(store.path("").iter_files())) == 4
    # A glob that matches a folder stands for the files under it, as for local folders.
    assert list(store.iter_files("o*")) == [f"az://{container}/other/item_000.txt"]
    # Uploading again skips what is there, unless overwrite.
    store.upload(tmp_path / "upload-items", target_path="items")
    assert "Uploaded 0 of 3 files to az://" in capsys.readouterr().out
    store.upload(tmp_path / "upload-items", target_path="items", overwrite=True)
    assert "Uploaded 3 of 3 files to az://" in capsys.readouterr().out
    # A fingerprint (for reuse) sees a changed blob.
    before = ds.fingerprint()
    (tmp_path / "changed.txt").write_text("changed!")
    store.upload_files([tmp_path / "changed.txt"], tmp_path, "items", overwrite=True)
    assert ds.fingerprint() != before


def test_run_over_blob_files_gets_local_paths(ws, azurite, container, tmp_path, write_script):
    store = register(ws, azurite, container)
    upload_items(store, tmp_path, 10)
    ds = Dataset.File.from_files(path=store.path("items/"))
    run = submit_step(ws, write_script(LOCAL_PATHS_SCRIPT), ds, mini_batch_size=3)
    run.wait_for_completion(raise_on_error=False)
    step_run = run.find_step_run("score-step")[0]
    assert run.get_status() == "Completed", step_run.get_details()["errors"]
    out = step_run.get_output_data("scores")
    rows = (out.datastore.local_path(out.path_on_datastore) / "parallel_run_step.txt").read_text()
    assert sorted(rows.splitlines()) == [f"item_{i:03d}.txt {i}" for i in range(10)]
    # Each worker cleans its downloads; nothing stays in the step's cache folder.
    assert not (ws.path / "runs" / step_run.id / "cache").exists()
    # The Azure SDK's record of each request stays out of the workers' logs (INFO by default).
    logs = list((ws.path / "runs" / step_run.id / "logs" / "workers").glob("*.txt"))
    assert logs and not any("Request URL:" in log.read_text() for log in logs)


PREFETCH_SCRIPT = """
import os, time

def init():
    pass

def run(mini_batch):
    # run() gets <worker cache>/<n>-mb<id>/<container>/items/<name>. While it works, the next
    # mini-batch's file must arrive in the worker's cache by itself (it is removed only after
    # run() returns, so without prefetching it would never be there now).
    here = mini_batch[0]
    name = os.path.basename(here)
    index = int(name[5:8])
    if index == LAST:
        return [f"{name} last"]
    wanted = f"item_{index + 1:03d}.txt"
    cache = here
    for _ in range(4):
        cache = os.path.dirname(cache)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for _, _, names in os.walk(cache):
            if wanted in names:
                return [f"{name} prefetched"]
        time.sleep(0.02)
    return [f"{name} not-prefetched"]
"""


def test_next_mini_batch_is_fetched_while_run_works(ws, azurite, container, tmp_path, write_script):
    store = register(ws, azurite, container)
    upload_items(store, tmp_path, 5)
    ds = Dataset.File.from_files(path=store.path("items/"))
    script = PREFETCH_SCRIPT.replace("LAST", "4")
    run = submit_step(ws, write_script(script), ds, mini_batch_size=1, process_count_per_node=1)
    run.wait_for_completion(raise_on_error=False)
    step_run = run.find_step_run("score-step")[0]
    assert run.get_status() == "Completed", step_run.get_details()["errors"]
    out = step_run.get_output_data("scores")
    rows = (out.datastore.local_path(out.path_on_datastore) / "parallel_run_step.txt").read_text()
    expected = [f"item_{i:03d}.txt prefetched" for i in range(4)] + ["item_004.txt last"]
    assert sorted(rows.splitlines()) == expected


def test_output_on_blob_datastore_is_uploaded_at_completion(
    ws, azurite, container, tmp_path, write_script, files
):
    store = register(ws, azurite, container)
    cfg = ParallelRunConfig(
        source_directory=str(write_script(ECHO_SCRIPT)),
        entry_script="score.py",
        mini_batch_size=2,
        error_threshold=-1,
        output_action="append_row",
        append_row_file_name="rows.txt",
        process_count_per_node=2,
        node_count=1,
    )
    out = PipelineData(name="scores", datastore=store)
    step = ParallelRunStep(
        name="score-step",
        parallel_run_config=cfg,
        inputs=[Dataset.File.from_files(path=str(files(5))).as_named_input("items")],
        output=out,
        allow_reuse=False,
    )
    run = Experiment(ws, "blob-out").submit(Pipeline(workspace=ws, steps=[step]))
    run.wait_for_completion(show_output=False)
    output = run.find_step_run("score-step")[0].get_output_data("scores")
    assert output.datastore.name == "blobs"
    # In the container: the committed file, once.
    blobs = list(store.path(output.path_on_datastore).iter_files())
    assert blobs == [f"az://{container}/{output.path_on_datastore}/rows.txt"]
    # download() reads it back from the container, not from the local commit folder.
    committed = ws.path / "blob_outputs" / "blobs" / output.path_on_datastore / "rows.txt"
    committed.unlink()
    folder = output.download(local_path=str(tmp_path / "results"))
    rows = (Path(folder) / "rows.txt").read_text().splitlines()
    assert sorted(rows) == [f"item_{i:03d}.txt {i}" for i in range(5)]


def test_sas_token_reads_and_a_narrow_one_is_refused_at_submit(
    ws, azurite, container, tmp_path, write_script
):
    upload_items(register(ws, azurite, container, name="writer"), tmp_path, 4)
    store = register(ws, azurite, container, sas_token=azurite.container_sas(container, "rl"))
    ds = Dataset.File.from_files(path=store.path("items/"))
    run = submit_step(ws, write_script(LOCAL_PATHS_SCRIPT), ds)
    assert run.wait_for_completion() == "Completed"
    narrow = register(
        ws, azurite, container, name="narrow", sas_token=azurite.container_sas(container, "r")
    )
    narrow_ds = Dataset.File.from_files(path=narrow.path("items/"), validate=False)
    with pytest.raises(PermissionError, match=r"datastore 'narrow'.*refuses the sas_token"):
        submit_step(ws, write_script(LOCAL_PATHS_SCRIPT), narrow_ds)


def _no_new_runs(ws, before: int) -> None:
    assert len(ws.store.list_runs()) == before, "a run was created: the check came too late"


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            {"account_key": "A" * 86 + "=="},
            PermissionError,
            r"datastore 'blobs' \(account_name='devstoreaccount1' at http://127\.0\.0\.1:\d+/"
            r"devstoreaccount1\) refuses the account_key given",
        ),
        (
            {"container_name": "no-such-container"},
            FileNotFoundError,
            r"container_name='no-such-container' does not exist",
        ),
        (
            {"endpoint": "http://127.0.0.1:{closed}/devstoreaccount1"},
            ConnectionError,
            r"datastore 'blobs' .* cannot be reached",
        ),
    ],
    ids=["wrong-key", "missing-container", "unreachable"],
)
def test_unusable_container_is_an_error_at_submit(
    ws, azurite, container, tmp_path, write_script, change, error, message
):
    import socket

    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    settings = {
        "container_name": container,
        "account_key": azurite.account_key,
        "endpoint": azurite.endpoint,
    }
    settings.update({k: v.format(closed=closed) for k, v in change.items()})
    store = Datastore.register_azure_blob_container(
        ws, "blobs", account_name=azurite.account_name, overwrite=True, **settings
    )
    ds = Dataset.File.from_files(path=store.path("items/"), validate=False)
    before = len(ws.store.list_runs())
    with pytest.raises(error, match=message) as raised:
        submit_step(ws, write_script(ECHO_SCRIPT), ds)
    assert azurite.account_key not in str(raised.value)
    _no_new_runs(ws, before)


MISSING_ADLFS = """
import sys, json
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name == "adlfs" or name.startswith("adlfs."):
            raise ImportError(f"No module named {name!r} (hidden by the test)")
sys.meta_path.insert(0, Hide())
args = json.loads(sys.argv[1])
from jupyter_parallelrun import Dataset, Datastore, Workspace
sys.path.insert(0, args["tests"])
from conftest import submit_step
ws = Workspace(path=args["ws"])
store = Datastore.register_azure_blob_container(
    ws, "blobs", args["container"], "devstoreaccount1", endpoint=args["endpoint"])
ds = Dataset.File.from_files(path=store.path("items/"), validate=False)
try:
    submit_step(ws, __import__("pathlib").Path(args["src"]), ds)
except ImportError as error:
    print("ImportError:", error)
print("runs:", len(ws.store.list_runs()))
"""


def test_missing_adlfs_is_an_error_at_submit(ws, azurite, container, write_script):
    arguments = {
        "tests": str(Path(__file__).parent),
        "ws": str(ws.path.parent),
        "container": container,
        "endpoint": azurite.endpoint,
        "src": str(write_script(ECHO_SCRIPT)),
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MISSING_ADLFS), json.dumps(arguments)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "ImportError: datastore 'blobs' is an Azure blob container" in done.stdout
    assert "pip install adlfs" in done.stdout
    assert "runs: 0" in done.stdout


DELETE_LATER_BLOB = """
import os
from pathlib import Path

def init():
    pass

def run(mini_batch):
    name = os.path.basename(mini_batch[0])
    if name == "item_000.txt":
        # The fourth mini-batch's blob goes away after the listing, before its download
        # (the worker fetches at most two mini-batches ahead).
        from azure.storage.blob import BlobClient
        account, container = Path(__file__).with_name("blob.txt").read_text().split("\\n")
        blob = BlobClient.from_connection_string(account, container, "items/item_003.txt")
        blob.delete_blob()
    return [f"{name} {open(mini_batch[0]).read()}"]
"""


def test_a_blob_gone_before_its_download_fails_its_mini_batch_only(
    ws, azurite, container, tmp_path, write_script
):
    store = register(ws, azurite, container)
    upload_items(store, tmp_path, 5)
    source = write_script(DELETE_LATER_BLOB)
    (source / "blob.txt").write_text(f"{azurite.connection_string}\n{container}")
    ds = Dataset.File.from_files(path=store.path("items/"))
    run = submit_step(ws, source, ds, mini_batch_size=1, process_count_per_node=1)
    run.wait_for_completion(raise_on_error=False)
    step_run = run.find_step_run("score-step")[0]
    errors = step_run.get_details()["errors"]
    assert {e["miniBatch"] for e in errors} == {3}, errors
    assert "FileNotFoundError" in errors[0]["exception"]
    assert "item_003.txt" in errors[0]["exception"]
    out = step_run.get_output_data("scores")
    rows = (out.datastore.local_path(out.path_on_datastore) / "parallel_run_step.txt").read_text()
    assert sorted(rows.splitlines()) == [f"item_{i:03d}.txt {i}" for i in (0, 1, 2, 4)]


def test_a_step_without_output_over_blob_input(ws, azurite, container, tmp_path, write_script):
    store = register(ws, azurite, container)
    upload_items(store, tmp_path, 3)
    cfg = ParallelRunConfig(
        source_directory=str(write_script(LOCAL_PATHS_SCRIPT)),
        entry_script="score.py",
        mini_batch_size=2,
        error_threshold=0,
        process_count_per_node=1,
        node_count=1,
    )
    ds = Dataset.File.from_files(path=store.path("items/"))
    step = ParallelRunStep(
        name="no-output", parallel_run_config=cfg, inputs=[ds.as_named_input("items")]
    )
    run = Experiment(ws, "no-output").submit(Pipeline(workspace=ws, steps=[step]))
    assert run.wait_for_completion() == "Completed"
    assert run.find_step_run("no-output")[0].get_metrics()["items_done"] == 3


PER_FOLDER_SCRIPT = """
import os

def init():
    pass

def run(mini_batch, mini_batch_context):
    assert all(os.path.isfile(p) for p in mini_batch), mini_batch
    own = sorted(mini_batch_context.dataset.to_path())
    assert len(own) == len(mini_batch), own
    user = mini_batch_context.partition_key_value["user"]
    return [f"{user} {sum(int(open(p).read()) for p in mini_batch)} {len(mini_batch)}"]
"""


def test_partition_keys_of_blob_paths_group_downloaded_files(
    ws, azurite, container, tmp_path, write_script
):
    store = register(ws, azurite, container)
    for user, count in (("ann", 3), ("bob", 2)):
        upload_items(store, tmp_path, count, target=f"users/{user}")
    ds = Dataset.File.from_files(
        path=store.path("users/*/*.txt"), partition_format="users/{user}/*.txt"
    )
    run = submit_step(
        ws, write_script(PER_FOLDER_SCRIPT), ds, mini_batch_size=None, partition_keys=["user"]
    )
    run.wait_for_completion(raise_on_error=False)
    step_run = run.find_step_run("score-step")[0]
    assert run.get_status() == "Completed", step_run.get_details()["errors"]
    out = step_run.get_output_data("scores")
    rows = (out.datastore.local_path(out.path_on_datastore) / "parallel_run_step.txt").read_text()
    assert sorted(rows.splitlines()) == ["ann 3 3", "bob 1 2"]


DOWNLOADING_SCRIPT = """
import os, tempfile

def init():
    pass

def run(mini_batch, mini_batch_context):
    # The partition's own dataset reaches the container with the datastore's credentials.
    got = mini_batch_context.dataset.download(tempfile.mkdtemp())
    user = mini_batch_context.partition_key_value["user"]
    return [f"{user} {sum(int(open(p).read()) for p in got)} {len(mini_batch)}"]
"""

TABLE_SCRIPT = """
def init():
    pass

def run(mini_batch):
    return [f"{row.name} {row.value}" for row in mini_batch.itertuples()]
"""


def _stored_specs(ws, run_id: str) -> list[dict]:
    rows = ws.store._connect().execute(
        "SELECT spec FROM mini_batches WHERE run_id=? ORDER BY mb_id", (run_id,)
    )
    return [json.loads(row["spec"]) for row in rows]


def _assert_no_credentials(ws, step_id: str, secrets: list[str]) -> None:
    """No stored or logged mini-batch, and no stored error, carries a credential."""
    db = ws.store._connect()
    kept = [row["spec"] for row in db.execute("SELECT spec FROM mini_batches")]
    kept += [" ".join(map(str, row)) for row in db.execute("SELECT * FROM errors")]
    kept += [p.read_text() for p in (ws.path / "runs").glob("*/logs/mini_batches.jsonl")]
    assert _stored_specs(ws, step_id), "no mini-batch was stored"
    for secret in [*secrets, "AccountKey=", "SharedAccessSignature="]:
        assert not any(secret in text for text in kept), f"{secret[:12]}... was stored"


def test_blob_credentials_go_to_each_worker_once_and_into_no_stored_mini_batch(
    ws, azurite, container, tmp_path, write_script
):
    writer = register(ws, azurite, container, name="writer")
    for user, count in (("ann", 3), ("bob", 2)):
        upload_items(writer, tmp_path, count, target=f"users/{user}")
    sas = azurite.container_sas(container, "rl")
    by_sas = register(ws, azurite, container, name="by_sas", sas_token=sas)
    files = Dataset.File.from_files(
        path=by_sas.path("users/*/*.txt"), partition_format="users/{user}/*.txt"
    )
    run = submit_step(
        ws, write_script(DOWNLOADING_SCRIPT), files, mini_batch_size=None, partition_keys=["user"]
    )
    assert run.wait_for_completion(raise_on_error=False) == "Completed", run.get_details()
    step_run = run.find_step_run("score-step")[0]
    assert sorted(output_rows(run)) == ["ann 3 3", "bob 1 2"]
    for spec in _stored_specs(ws, step_run.id):  # the roots it reads, not how to reach them
        assert spec["storage"] == [f"az://{container}"], spec
        assert [d["name"] for d in spec["datastores"]] == ["by_sas"], spec

    table = tmp_path / "table"
    table.mkdir()
    for part in range(2):
        lines = [f"n{part}_{i},{i}" for i in range(20)]
        (table / f"part_{part}.csv").write_text("name,value\n" + "\n".join(lines) + "\n")
    writer.upload(table, target_path="table", show_progress=False)
    rows = Dataset.Tabular.from_delimited_files(path=writer.path("table/*.csv"))
    run = submit_step(ws, write_script(TABLE_SCRIPT), rows, mini_batch_size="1KB")
    assert run.wait_for_completion(raise_on_error=False) == "Completed", run.get_details()
    expected = [f"n{part}_{i} {i}" for part in range(2) for i in range(20)]
    assert sorted(output_rows(run)) == sorted(expected)
    step_run = run.find_step_run("score-step")[0]
    assert len(_stored_specs(ws, step_run.id)) >= 2
    _assert_no_credentials(ws, step_run.id, [azurite.account_key, sas])


@pytest.mark.parametrize("credential", ["account_key", "sas_token"])
def test_a_worker_downloads_blobs_with_plain_gets_signed_as_the_sdk_would(
    ws, azurite, container, tmp_path, credential, monkeypatch, request
):
    from jupyter_parallelrun.engine import blob_get

    writer = register(ws, azurite, container, name="writer")
    names = ["plain.txt", "with space.txt", "ünï/cöde.txt", "a+b=c&d.txt"]
    folder = tmp_path / "up"
    for i, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"blob {i}")
    writer.upload(folder, target_path="odd", show_progress=False)
    secret = (
        {"sas_token": azurite.container_sas(container, "rl")} if credential != "account_key" else {}
    )
    store = register(ws, azurite, container, name="reader", **secret)
    urls = [f"az://{container}/odd/{name}" for name in names]

    async def no_sdk(*args, **kwargs):
        raise AssertionError(f"a plain GET was refused: {args}")

    # Every blob must come by the plain GET: the SDK, its fallback, is not there.
    fs = store.fs
    monkeypatch.setattr(type(fs), "_get_file", no_sdk)
    got = blob_get.fetch_files(urls, str(tmp_path / "down"), {store.root: store.storage_options})
    assert [Path(p).read_text() for p in got] == [f"blob {i}" for i in range(len(names))]
    monkeypatch.undo()
    request.addfinalizer(blob_get.close_sessions)
    # A blob that is not there falls back to the SDK, which names it.
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        blob_get.fetch_files(
            [f"az://{container}/odd/missing.txt"],
            str(tmp_path / "gone"),
            {store.root: store.storage_options},
        )
