"""Shared fixtures: tmp_path workspaces, entry scripts and input files written for real."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from jupyter_parallelrun import (
    Dataset,
    Experiment,
    ParallelRunConfig,
    ParallelRunStep,
    Pipeline,
    PipelineData,
    Workspace,
)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.create("test", path=tmp_path / "ws")


@pytest.fixture
def write_script(tmp_path: Path):
    """Write an entry script into its own source folder; returns the folder."""

    def write(body: str, name: str = "score.py") -> Path:
        folder = tmp_path / f"src_{len(list(tmp_path.glob('src_*')))}"
        folder.mkdir()
        (folder / name).write_text(textwrap.dedent(body))
        return folder

    return write


@pytest.fixture
def files(tmp_path: Path):
    """Make ``count`` small text files ``item_000.txt`` ... holding their index."""

    def make(count: int, folder: str = "inputs") -> Path:
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (root / f"item_{i:03d}.txt").write_text(str(i))
        return root

    return make


ECHO_SCRIPT = """
import os

def init():
    pass

def run(mini_batch):
    return [f"{os.path.basename(p)} {open(p).read()}" for p in mini_batch]
"""


def submit_step(
    ws: Workspace,
    source_directory: Path,
    dataset,
    *,
    entry_script: str = "score.py",
    experiment: str = "tests",
    step_kwargs: dict | None = None,
    pipeline_parameters: dict | None = None,
    **config,
):
    """Submit a one-step pipeline; returns the PipelineRun."""
    config.setdefault("mini_batch_size", 4)
    config.setdefault("error_threshold", -1)
    config.setdefault("process_count_per_node", 2)
    cfg = ParallelRunConfig(
        source_directory=str(source_directory), entry_script=entry_script, **config
    )
    out = PipelineData(name="scores", datastore=ws.get_default_datastore())
    step = ParallelRunStep(
        name="score-step",
        parallel_run_config=cfg,
        inputs=[dataset.as_named_input("items")],
        output=out,
        **{"allow_reuse": False, **(step_kwargs or {})},
    )
    pipeline = Pipeline(workspace=ws, steps=[step])
    return Experiment(ws, experiment).submit(pipeline, pipeline_parameters=pipeline_parameters)


def output_rows(run, name: str = "score-step") -> list[str]:
    """The append_row file of a finished step, as lines."""
    step_run = run.find_step_run(name)[0]
    out = step_run.get_output_data("scores")
    record = step_run._record["spec"]["config"]
    path = out.datastore.local_path(out.path_on_datastore) / record["append_row_file_name"]
    return path.read_text().splitlines() if path.exists() else []


def file_dataset(folder: Path):
    return Dataset.File.from_files(path=str(folder))
