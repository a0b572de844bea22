"""jupyter_parallelrun: Azure ML ParallelRunStep-style batch inference, on this machine.

The public names mirror the Azure ML SDK v1, so an Azure notebook moves over by changing its
imports. They are loaded on first use, which keeps worker processes (that import this package
to host an entry script) quick to start.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
#: The package version, under the name Azure's ``azureml.core.VERSION`` has.
VERSION = __version__

_WHERE = {
    "Workspace": "workspace",
    "Datastore": "datastore",
    "DataPath": "datastore",
    "Dataset": "dataset",
    "FileDataset": "dataset",
    "TabularDataset": "dataset",
    "DataType": "column_types",
    "Model": "model",
    "Environment": "environment",
    "EnvironmentWarning": "environment",
    "CondaDependencies": "conda_dependencies",
    "DEFAULT_CPU_IMAGE": "environment",
    "DEFAULT_GPU_IMAGE": "environment",
    "ComputeTarget": "compute",
    "AmlCompute": "compute",
    "DaskCompute": "dask_compute",
    "ParallelRunConfig": "config",
    "ParallelRunStep": "pipeline",
    "Pipeline": "pipeline",
    "PipelineData": "pipeline_inputs",
    "PipelineParameter": "pipeline_inputs",
    "DatasetConsumptionConfig": "pipeline_inputs",
    "Experiment": "run",
    "Run": "run",
    "PipelineRun": "run",
    "StepRun": "run",
    "ActivityFailedException": "run",
    "RunAlreadyRunning": "store_lease",
    "RunDetails": "widget",
    "EntryScript": "entry_script",
}

__all__ = [*_WHERE, "VERSION", "load_ipython_extension"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'jupyter_parallelrun' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_parallelrun``: registers the ``%parallelrun`` magics."""
    from .magics import ParallelRunMagics

    ipython.register_magics(ParallelRunMagics)
