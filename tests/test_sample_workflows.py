"""The workflows of Microsoft's ParallelRunStep samples, driven through this package's API the
way those notebooks drive Azure's (our own scripts and data; the samples stay out of the
repository — ``tests/azure_samples/run_samples.py`` runs the real ones from a local copy)."""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
import textwrap

import pandas as pd

import jupyter_parallelrun
from jupyter_parallelrun import (
    AmlCompute,
    ComputeTarget,
    Dataset,
    Datastore,
    Experiment,
    ParallelRunConfig,
    ParallelRunStep,
    Pipeline,
    PipelineData,
)


def test_version_is_the_package_version():
    # print("SDK version:", azureml.core.VERSION) opens every sample.
    assert jupyter_parallelrun.__version__ == jupyter_parallelrun.VERSION
    assert importlib.metadata.version("jupyter_parallelrun") == jupyter_parallelrun.VERSION
    assert "VERSION" in dir(jupyter_parallelrun)


def _compute(ws):
    if "cpu-cluster" in ws.compute_targets:
        return ws.compute_targets["cpu-cluster"]
    config = AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V2", max_nodes=2)
    return ComputeTarget.create(ws, "cpu-cluster", config)


def _run_step(ws, source, script, dataset, experiment, **config):
    output_dir = PipelineData(name="inferences", datastore=ws.get_default_datastore())
    parallel_run_config = ParallelRunConfig(
        source_directory=str(source), entry_script=script, error_threshold=5,
        output_action="append_row", append_row_file_name="outputs.txt",
        compute_target=_compute(ws), node_count=2, run_invocation_timeout=600, **config,
    )  # fmt: skip
    step = ParallelRunStep(
        name="summarize", inputs=[dataset.as_named_input("partitioned_input")],
        output=output_dir, parallel_run_config=parallel_run_config, allow_reuse=False,
    )  # fmt: skip
    run = Experiment(ws, experiment).submit(Pipeline(workspace=ws, steps=[step]))
    assert run.wait_for_completion(show_output=False) == "Completed", run.get_details()
    assert run.get_metrics()["items_failed"] == 0, run.get_details()["errors"]
    output = run.find_step_run(step.name)[0].get_output_data(output_dir.name)
    target_dir = tempfile.mkdtemp()
    output.download(local_path=target_dir)
    return os.path.join(target_dir, output.path_on_datastore, "outputs.txt")


TOTAL_SIZE = """
import os

def init():
    pass

def run(mini_batch, mini_batch_context):
    keys = mini_batch_context.partition_key_value
    files = sorted(mini_batch_context.dataset.iter_files())
    assert files == sorted(mini_batch), (files, mini_batch)
    total = sum(os.path.getsize(path) for path in mini_batch)
    return [f"{os.path.basename(p)},{os.path.getsize(p)},{keys['user']},{keys['genres']},{total}"
            for p in mini_batch]
"""


def test_files_partitioned_by_folder(ws, tmp_path):
    layout = [("disco", "user1/winter"), ("orchestra", "user1/fall"), ("piano", "user2/summer"),
              ("piano", "user4/spring"), ("piano", "user4/fall")]  # fmt: skip
    datastore = ws.get_default_datastore()
    for index, (genre, folder) in enumerate(layout):
        (tmp_path / "test_files" / genre).mkdir(parents=True, exist_ok=True)
        (tmp_path / "test_files" / genre / f"{genre}.wav").write_bytes(b"w" * (100 + index))
        datastore.upload(str(tmp_path / "test_files" / genre), f"parts/{folder}",
                         overwrite=True, show_progress=False)  # fmt: skip
    dataset = Dataset.File.from_files(
        path=(datastore, "parts/*/*/*.wav"),
        partition_format="parts/{user}/{season}/{genres}.wav",
        validate=False,
    )
    assert dataset.partition_keys == ["user", "season", "genres"]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "total_file_size.py").write_text(textwrap.dedent(TOTAL_SIZE))
    result = _run_step(ws, tmp_path / "src", "total_file_size.py", dataset, "per-folder",
                       partition_keys=["user", "genres"])  # fmt: skip
    df = pd.read_csv(result, header=None, names=["name", "size", "user", "genres", "total"])
    rows = []
    for path in datastore.local_path("parts").glob("*/*/*.wav"):
        rows.append((path.parent.parent.name, path.stem, path.stat().st_size))
    files = pd.DataFrame(rows, columns=["user", "genres", "size"])
    want = files.groupby(["user", "genres"])["size"].sum()
    assert len(df) == len(files) == 5
    assert (df.groupby(["user", "genres"])["total"].nunique() == 1).all()
    pd.testing.assert_series_equal(
        df.groupby(["user", "genres"])["total"].first(), want, check_names=False
    )
    assert want[("user4", "piano")] == 103 + 104


TOTAL_INCOME = """
def init():
    pass

def run(mini_batch, mini_batch_context):
    assert set(mini_batch["Store"]) == {mini_batch_context.partition_key_value["Store"]}
    assert len(mini_batch_context.dataset.to_pandas_dataframe()) == len(mini_batch)
    mini_batch["total_income"] = mini_batch["INCOME"].sum()
    return mini_batch
"""


def test_table_partitioned_by_column(ws, tmp_path):
    rows = [(f"1990-06-{day:02d}", store, brand, 10.0 + store + day / 100)
            for day in (14, 21, 28) for store in (2, 5, 8)
            for brand in ("dominicks", "tropicana")]  # fmt: skip
    source = pd.DataFrame(rows, columns=["WeekStarting", "Store", "Brand", "INCOME"])
    source.to_csv(tmp_path / "oj.csv", index=False)
    datastore = ws.get_default_datastore()
    datastore.upload_files([str(tmp_path / "oj.csv")], str(tmp_path), "oj_sales_data",
                           overwrite=True, show_progress=False)  # fmt: skip
    dataset = Dataset.Tabular.from_delimited_files(path=(datastore, "oj_sales_data/*.csv"))
    partitioned = dataset.partition_by(
        partition_keys=["Store", "Brand"], target=(datastore, "partition_by_key_res"),
        name="partitioned_oj_data", show_progress=False,
    )  # fmt: skip
    assert partitioned.partition_keys == ["Store", "Brand"]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "total_income.py").write_text(textwrap.dedent(TOTAL_INCOME))
    result = _run_step(ws, tmp_path / "src", "total_income.py", partitioned, "per-column",
                       partition_keys=["Store", "Brand"])  # fmt: skip
    df = pd.read_csv(result, delimiter=" ", header=None)
    df.columns = ["WeekStarting", "INCOME", "Store", "Brand", "total_income"]
    want = source.groupby(["Store", "Brand"])["INCOME"].sum()
    assert len(df) == len(source)
    totals = df.groupby(["Store", "Brand"])["total_income"]
    assert (totals.nunique() == 1).all()
    pd.testing.assert_series_equal(totals.first(), want, check_names=False, rtol=1e-12)


BLOB_PARTS = """
import os

def init():
    pass

def run(mini_batch, mini_batch_context):
    # run() gets local copies; the mini-batch's dataset names the same files on the container.
    on_blob = sorted(os.path.basename(u) for u in mini_batch_context.dataset.iter_files())
    assert on_blob == sorted(os.path.basename(p) for p in mini_batch), (on_blob, mini_batch)
    keys = mini_batch_context.partition_key_value
    return [f"{keys['user']},{keys['genres']},{os.path.getsize(p)}" for p in mini_batch]
"""


def test_files_partitioned_by_folder_on_a_blob_container(ws, azurite, container, tmp_path):
    store = Datastore.register_azure_blob_container(
        ws, "blobs", container, azurite.account_name, account_key=azurite.account_key,
        endpoint=azurite.endpoint, overwrite=True,
    )  # fmt: skip
    for index, folder in enumerate(["u1/winter", "u1/fall", "u2/fall"]):
        (tmp_path / "up" / folder).mkdir(parents=True)
        (tmp_path / "up" / folder / "piano.wav").write_bytes(b"w" * (10 + index))
    store.upload(str(tmp_path / "up"), "parts", show_progress=False)
    dataset = Dataset.File.from_files(
        path=store.path("parts/*/*/*.wav"), partition_format="parts/{user}/{season}/{genres}.wav"
    )
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "parts.py").write_text(textwrap.dedent(BLOB_PARTS))
    result = _run_step(ws, tmp_path / "src", "parts.py", dataset, "per-folder-blob",
                       partition_keys=["user", "genres"])  # fmt: skip
    assert len(list(dataset.iter_files())) == 3
    with open(result) as handle:
        rows = sorted(handle.read().splitlines())
    assert rows == ["u1,piano,10", "u1,piano,11", "u2,piano,12"]
