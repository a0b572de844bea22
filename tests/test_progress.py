"""The views find a step's output folder in the run store alone, never through a Datastore."""

from __future__ import annotations

from conftest import ECHO_SCRIPT, file_dataset, submit_step

from jupyter_parallelrun import Datastore
from jupyter_parallelrun.progress import output_folder


def test_the_output_folder_of_a_real_run_is_read_from_the_store(ws, write_script, files):
    run = submit_step(ws, write_script(ECHO_SCRIPT), file_dataset(files(6)))
    run.wait_for_completion(timeout_seconds=120)
    step = ws.store.list_runs(parent_id=run.id)[0]
    output = step["spec"]["output"]
    expected = Datastore.get(ws, output["datastore"]).local_path(output["path_on_datastore"])
    # The store alone: a reader without the workspace's API objects finds the same folder.
    folder = output_folder(type(ws.store)(ws.store.path), step["spec"])
    assert folder == str(expected)
    assert (expected / step["spec"]["config"]["append_row_file_name"]).is_file()


def test_a_step_stored_before_descriptions_reads_its_datastore_root_from_the_store(ws, tmp_path):
    Datastore.register_local_folder(ws, "results", tmp_path / "results")
    spec = {"output": {"name": "scores", "datastore": "results", "path_on_datastore": "a/b"}}
    assert output_folder(ws.store, spec) == str((tmp_path / "results" / "a" / "b").resolve())
    unregistered = {"output": {**spec["output"], "datastore": "nowhere"}}
    assert output_folder(ws.store, unregistered) is None
    assert output_folder(ws.store, {"output": None}) is None


def test_a_blob_output_has_no_local_folder_to_show(ws):
    Datastore.register_azure_blob_container(
        ws, "blobs", container_name="results", account_name="devstoreaccount1"
    )
    stored = {"output": {"name": "scores", "datastore": "blobs", "path_on_datastore": "a"}}
    assert output_folder(ws.store, stored) is None
    described = {
        "output": {
            "name": "scores",
            "datastore": "blobs",
            "datastore_type": "AzureBlob",
            "path_on_datastore": "a",
            "folder": "/staging/blobs/a",
            "append_row_file": "/staging/blobs/a/parallel_run_step.txt",
        }
    }
    assert output_folder(ws.store, described) is None
    local = {"output": {**described["output"], "datastore_type": "Local", "folder": "/data/a"}}
    assert output_folder(ws.store, local) == "/data/a"
