"""Bad submissions are refused at submit(), before any process starts, with clear messages."""

from __future__ import annotations

import pytest
from conftest import ECHO_SCRIPT, file_dataset, submit_step

from jupyter_parallelrun import (
    CondaDependencies,
    Dataset,
    Environment,
    ParallelRunConfig,
    ParallelRunStep,
    Pipeline,
)


def _no_runs(ws):
    return ws.store.list_runs() == []


def test_missing_entry_script(ws, tmp_path, files):
    (tmp_path / "empty_src").mkdir()
    with pytest.raises(FileNotFoundError, match="entry_script='score.py'.*no such file"):
        submit_step(ws, tmp_path / "empty_src", file_dataset(files(2)))
    assert _no_runs(ws)


def test_entry_script_that_does_not_parse(ws, write_script, files):
    with pytest.raises(SyntaxError, match="does not parse"):
        submit_step(ws, write_script("def init(:\n    pass\n"), file_dataset(files(2)))
    assert _no_runs(ws)


def test_entry_script_without_run(ws, write_script, files):
    with pytest.raises(ValueError, match=r"lacks run\(\)"):
        submit_step(ws, write_script("def init():\n    pass\n"), file_dataset(files(2)))
    assert _no_runs(ws)


def test_input_path_that_does_not_exist(tmp_path):
    with pytest.raises(ValueError, match="nowhere"):
        Dataset.File.from_files(path=str(tmp_path / "nowhere" / "*.png"))


def test_append_row_file_name_with_a_path():
    with pytest.raises(ValueError, match="append_row_file_name"):
        ParallelRunConfig(entry_script="score.py", append_row_file_name="out/rows.txt")


def test_step_names(ws, write_script, files):
    cfg = ParallelRunConfig(
        source_directory=str(write_script(ECHO_SCRIPT)), entry_script="score.py"
    )
    data = file_dataset(files(2)).as_named_input("items")
    for bad in ("Score", "ab", "-score", "score-", "s" * 33, "score_step"):
        with pytest.raises(ValueError, match="name"):
            ParallelRunStep(name=bad, parallel_run_config=cfg, inputs=[data])
    steps = [ParallelRunStep(name="same", parallel_run_config=cfg, inputs=[data]) for _ in "ab"]
    with pytest.raises(ValueError, match="same"):
        Pipeline(workspace=ws, steps=steps)


def test_missing_pip_package_is_named_before_any_worker(ws, write_script, files):
    env = Environment(name="needs-missing")
    env.python.conda_dependencies = CondaDependencies.create(
        pip_packages=["pandas", "surely-not-installed-pkg"]
    )
    with pytest.raises(Exception, match="surely-not-installed-pkg"):
        submit_step(ws, write_script(ECHO_SCRIPT), file_dataset(files(2)), environment=env)
    assert _no_runs(ws)


def test_partition_keys_need_tabular_input(ws, write_script, files):
    with pytest.raises(ValueError, match="partition_keys"):
        submit_step(ws, write_script(ECHO_SCRIPT), file_dataset(files(2)), partition_keys=["group"])
