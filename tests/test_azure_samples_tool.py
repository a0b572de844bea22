"""The tool that runs Microsoft's samples from a local copy (``tests/azure_samples/``): its
import translation and the local data it puts in place of downloads."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent / "azure_samples"))

import run_samples  # noqa: E402
import sample_data  # noqa: E402


def test_translate_changes_only_the_azureml_imports():
    source = (
        "import azureml.core\n"
        'print("SDK version:", azureml.core.VERSION)\n'
        "from azureml.core.compute import AmlCompute, ComputeTarget\n"
        "    from azureml.pipeline.steps import ParallelRunStep\n"
        "from azureml_user.parallel_run import EntryScript\n"
        "from azureml.data.dataset_consumption_config import DatasetConsumptionConfig\n"
        "import azureml_helpers  # not an azureml import\n"
        "x = 'azureml.core'"
    )
    assert run_samples.translate(source) == (
        "import jupyter_parallelrun\n"
        'print("SDK version:", jupyter_parallelrun.VERSION)\n'
        "from jupyter_parallelrun import AmlCompute, ComputeTarget\n"
        "    from jupyter_parallelrun import ParallelRunStep\n"
        "from jupyter_parallelrun import EntryScript\n"
        "from jupyter_parallelrun import DatasetConsumptionConfig\n"
        "import azureml_helpers  # not an azureml import\n"
        "x = 'azureml.core'"
    )


def test_local_data_has_the_shapes_the_samples_read(tmp_path):
    labels = sample_data.mnist_images(tmp_path / "blob")
    assert len(labels) == 360 and set(labels.values()) == set(range(10))
    assert (tmp_path / "blob" / "mnist" / "0.png").is_file()
    csv = sample_data.iris_data(tmp_path / "blob", tmp_path / "model")
    iris = pd.read_csv(csv)
    assert list(iris.columns) == sample_data.IRIS_COLUMNS and len(iris) == 150
    assert (tmp_path / "model" / "iris_model.pkl").is_file()
    sizes = sample_data.genre_files(tmp_path / "test_files")
    assert sorted(sizes) == sorted(sample_data.GENRES) and len(set(sizes.values())) == 4
    oj = pd.read_csv(sample_data.oj_sales(tmp_path / "oj.csv"))
    assert list(oj.columns) == sample_data.OJ_COLUMNS and len(oj) == 6 * 3 * 15


def test_the_tool_refuses_a_folder_without_the_samples(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_samples.main([str(tmp_path)])
    assert "has no Code/ folder" in capsys.readouterr().err
