"""The seed workflow: Azure's "batch inference on large amounts of data" tutorial, step by step.

The tutorial's notebook with its imports changed to jupyter_parallelrun and its blob storage
replaced by a local folder (the blob datastore is still registered, as the tutorial does).
"""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from jupyter_parallelrun import (
    AmlCompute,
    ComputeTarget,
    CondaDependencies,
    Dataset,
    DatasetConsumptionConfig,
    Datastore,
    Environment,
    Experiment,
    Model,
    ParallelRunConfig,
    ParallelRunStep,
    Pipeline,
    PipelineData,
    PipelineParameter,
    RunDetails,
    Workspace,
)
from jupyter_parallelrun.demo import job
from jupyter_parallelrun.demo.digits import make_digit_images
from jupyter_parallelrun.demo.train import train_digit_model


@pytest.mark.slow
def test_seed_tutorial_step_by_step(tmp_path, monkeypatch, capsys):
    images = make_digit_images(tmp_path / "data" / "mnist", count=120)
    train_digit_model(tmp_path / "models", epochs=2)
    shutil.copytree(job.SCRIPTS_FOLDER, tmp_path / "scripts")
    monkeypatch.chdir(tmp_path)

    Workspace.create("tutorial", path=tmp_path)
    ws = Workspace.from_config()
    Datastore.register_azure_blob_container(
        ws,
        datastore_name="mnist_datastore",
        container_name="sampledata",
        account_name="pipelinedata",
        overwrite=True,
    )
    local = Datastore.register_local_folder(ws, "images", str(tmp_path / "data"))
    mnist_ds = Dataset.File.from_files(path=local.path("mnist/*.png"), validate=False)
    mnist_ds = mnist_ds.register(ws, "mnist_sample_data", create_new_version=True)
    param = PipelineParameter(name="mnist_param", default_value=mnist_ds)
    input_config = DatasetConsumptionConfig("minist_param_config", param).as_mount()
    output_dir = PipelineData(
        name="inferences",
        datastore=ws.get_default_datastore(),
        output_path_on_compute="mnist/results",
    )

    model = Model.register(
        workspace=ws,
        model_path="models/",
        model_name="mnist",
        tags={"pretrained": "mnist"},
        description="Mnist trained tensorflow model",
    )
    assert model.version == 1

    env = Environment(name="parallelenv")
    env.python.conda_dependencies = CondaDependencies.create(
        pip_packages=["tensorflow-cpu", "pillow"]
    )
    compute = ComputeTarget.create(
        ws,
        "cpu-cluster",
        AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V2", max_nodes=2),
    )
    compute.wait_for_completion(show_output=True)

    parallel_run_config = ParallelRunConfig(
        source_directory="scripts",
        entry_script=job.ENTRY_SCRIPT,
        mini_batch_size=PipelineParameter(name="batch_size_param", default_value="5"),
        error_threshold=10,
        output_action="append_row",
        append_row_file_name="mnist_outputs.txt",
        environment=env,
        compute_target=compute,
        process_count_per_node=PipelineParameter(name="process_count_param", default_value=2),
        node_count=2,
    )
    parallelrun_step = ParallelRunStep(
        name="predict-digits-mnist",
        parallel_run_config=parallel_run_config,
        inputs=[input_config],
        output=output_dir,
        allow_reuse=True,
    )
    pipeline = Pipeline(workspace=ws, steps=[parallelrun_step])
    experiment = Experiment(ws, "digit_identification")
    pipeline_run = experiment.submit(pipeline)
    RunDetails(pipeline_run).show()
    pipeline_run.wait_for_completion(show_output=True)
    assert "predict-digits-mnist: Completed 24/24 mini-batches" in capsys.readouterr().out

    single = Dataset.File.from_files(path=local.path("mnist/digit_00007.png"), validate=False)
    pipeline_run_2 = experiment.submit(
        pipeline,
        pipeline_parameters={
            "mnist_param": single,
            "batch_size_param": "1",
            "process_count_param": 1,
        },
    )
    pipeline_run_2.wait_for_completion(show_output=True)
    assert pipeline_run_2.get_metrics()["items_done"] == 1

    step_run = pipeline_run.find_step_run(parallelrun_step.name)[0]
    prediction_run = step_run.get_output_data(output_dir.name)
    prediction_run.download(local_path="mnist_results")
    result_file = os.path.join(
        "mnist_results",
        prediction_run.path_on_datastore,
        parallel_run_config.append_row_file_name,
    )
    df = pd.read_csv(result_file, header=None, names=["file", "digit"])
    labels = pd.read_csv(images / "labels.csv")
    assert sorted(df["file"]) == sorted(labels["file"])
    scored = df.merge(labels, on="file")
    assert (scored["digit"] == scored["label"]).mean() > 0.85
    assert step_run.get_metrics()["processes"] == 4


@pytest.mark.slow
def test_seed_tutorial_reads_its_images_from_azurite(tmp_path, monkeypatch, azurite):
    """The tutorial's blob cells as written, with the emulator's account: the images are listed
    and read from the container, and the run over them identifies the digits."""
    images = make_digit_images(tmp_path / "upload" / "mnist", count=60)
    train_digit_model(tmp_path / "models", epochs=2)
    shutil.copytree(job.SCRIPTS_FOLDER, tmp_path / "scripts")
    monkeypatch.chdir(tmp_path)
    azurite.create_container("sampledata")

    ws = Workspace.create("tutorial", path=tmp_path)
    mnist_blob = Datastore.register_azure_blob_container(
        ws,
        datastore_name="mnist_datastore",
        container_name="sampledata",
        account_name=azurite.account_name,
        account_key=azurite.account_key,
        endpoint=azurite.endpoint,
        overwrite=True,
    )
    mnist_blob.upload(tmp_path / "upload", show_progress=False)
    path_on_datastore = mnist_blob.path("mnist/*.png")
    input_mnist_ds = Dataset.File.from_files(path=path_on_datastore, validate=False)
    assert len(input_mnist_ds.to_path()) == 60
    registered = input_mnist_ds.register(ws, "mnist_sample_data", create_new_version=True)
    param = PipelineParameter(name="mnist_param", default_value=registered)
    input_config = DatasetConsumptionConfig("minist_param_config", param).as_mount()
    output_dir = PipelineData(name="inferences", datastore=ws.get_default_datastore())
    Model.register(workspace=ws, model_path="models/", model_name="mnist")
    env = Environment(name="parallelenv")
    env.python.conda_dependencies = CondaDependencies.create(
        pip_packages=["tensorflow-cpu", "pillow"]
    )
    config = ParallelRunConfig(
        source_directory="scripts",
        entry_script=job.ENTRY_SCRIPT,
        mini_batch_size=PipelineParameter(name="batch_size_param", default_value="5"),
        error_threshold=10,
        output_action="append_row",
        append_row_file_name="mnist_outputs.txt",
        environment=env,
        process_count_per_node=2,
        node_count=1,
    )
    step = ParallelRunStep(
        name="predict-digits-mnist",
        parallel_run_config=config,
        inputs=[input_config],
        output=output_dir,
        allow_reuse=True,
    )
    pipeline_run = Experiment(ws, "digit_identification").submit(
        Pipeline(workspace=ws, steps=[step])
    )
    pipeline_run.wait_for_completion(show_output=False)

    step_run = pipeline_run.find_step_run(step.name)[0]
    prediction_run = step_run.get_output_data(output_dir.name)
    prediction_run.download(local_path="mnist_results")
    result_file = os.path.join(
        "mnist_results", prediction_run.path_on_datastore, config.append_row_file_name
    )
    df = pd.read_csv(result_file, header=None, names=["file", "digit"])
    labels = pd.read_csv(images / "labels.csv")
    assert sorted(df["file"]) == sorted(labels["file"])
    scored = df.merge(labels, on="file")
    assert (scored["digit"] == scored["label"]).mean() > 0.85
