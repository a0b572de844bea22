"""PipelineParameter, DatasetConsumptionConfig and PipelineData: what they hold and refuse."""

from __future__ import annotations

import pytest

from jupyter_parallelrun import (
    Dataset,
    DatasetConsumptionConfig,
    PipelineData,
    PipelineParameter,
)


@pytest.fixture
def dataset(files):
    return Dataset.File.from_files(path=str(files(3)))


def test_pipeline_parameter():
    parameter = PipelineParameter(name="batch_size_param", default_value="5")
    assert (parameter.name, parameter.default_value) == ("batch_size_param", "5")
    assert not parameter.holds_dataset
    for bad in ("", "1st", "a b"):
        with pytest.raises(ValueError, match=f"name must be letters.*got {bad!r}"):
            PipelineParameter(name=bad, default_value=1)
    with pytest.raises(TypeError, match="name must be a string; got int"):
        PipelineParameter(name=3, default_value=1)
    with pytest.raises(TypeError, match="default_value of PipelineParameter 'p' must be"):
        PipelineParameter(name="p", default_value=[1, 2])


def test_dataset_consumption_config(dataset):
    parameter = PipelineParameter(name="mnist_param", default_value=dataset)
    assert parameter.holds_dataset
    config = DatasetConsumptionConfig("minist_param_config", parameter)
    assert (config.name, config.dataset, config.mode) == (
        "minist_param_config",
        parameter,
        "direct",
    )
    mounted = config.as_mount()
    assert (mounted.mode, mounted.name, mounted.dataset) == ("mount", config.name, parameter)
    downloaded = config.as_download(path_on_compute="data")
    assert (downloaded.mode, downloaded.path_on_compute) == ("download", "data")
    assert DatasetConsumptionConfig("direct_input", dataset).dataset is dataset


def test_dataset_consumption_config_rejects(dataset):
    for bad in ("", "1input", "my-input"):
        with pytest.raises(ValueError, match=f"name must be letters, digits and '_'.*got {bad!r}"):
            DatasetConsumptionConfig(bad, dataset)
    with pytest.raises(TypeError, match="PipelineParameter 'p' holds 5"):
        DatasetConsumptionConfig("data", PipelineParameter("p", 5))
    with pytest.raises(TypeError, match="must be a Dataset or a PipelineParameter; got str"):
        DatasetConsumptionConfig("data", "images/")
    with pytest.raises(ValueError, match="mode must be one of 'direct', 'mount', 'download'"):
        DatasetConsumptionConfig("data", dataset, mode="copy")


def test_pipeline_data(ws):
    store = ws.get_default_datastore()
    out = PipelineData(name="inferences", datastore=store, output_path_on_compute="mnist/results")
    assert (out.name, out.datastore, out.output_path_on_compute) == (
        "inferences",
        store,
        "mnist/results",
    )
    assert out.as_dataset() is out and out.as_input("scores") is out
    assert PipelineData("later").datastore is None
    with pytest.raises(ValueError, match="name must be letters, digits and '_'.*got 'my-out'"):
        PipelineData("my-out")
    with pytest.raises(TypeError, match="datastore must be a Datastore or None; got str"):
        PipelineData("out", datastore="workspaceblobstore")
    with pytest.raises(ValueError, match="output_mode must be one of 'mount', 'upload'"):
        PipelineData("out", output_mode="copy")
