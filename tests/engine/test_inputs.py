"""Tabular inputs, partitions, side inputs, pipelines of several steps and reuse, end to end."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import ECHO_SCRIPT, file_dataset, output_rows, submit_step

from jupyter_parallelrun import (
    Dataset,
    Experiment,
    ParallelRunConfig,
    ParallelRunStep,
    Pipeline,
    PipelineData,
    PipelineParameter,
)

TABLE_SCRIPT = """
def init():
    pass

def run(mini_batch):
    out = mini_batch[["id"]].copy()
    out["double"] = mini_batch["value"] * 2
    return out
"""


@pytest.fixture
def table(tmp_path):
    frame = pd.DataFrame({"id": range(500), "value": range(0, 1000, 2)})
    frame["group"] = frame["id"] % 3
    return frame


def _expected(frame):
    return sorted(f"{i} {v * 2}" for i, v in zip(frame["id"], frame["value"], strict=True))


def test_csv_split_by_bytes(ws, write_script, tmp_path, table):
    for part in range(2):
        table.iloc[part * 250 : (part + 1) * 250].to_csv(tmp_path / f"t{part}.csv", index=False)
    data = Dataset.Tabular.from_delimited_files(path=str(tmp_path / "t*.csv"))
    run = submit_step(ws, write_script(TABLE_SCRIPT), data, mini_batch_size="1KB")
    assert run.wait_for_completion() == "Completed"
    assert sorted(output_rows(run)) == _expected(table)
    metrics = run.get_metrics()
    assert metrics["items_done"] == 500 and metrics["mini_batches_done"] > 4
    assert metrics["items_total"] is None  # unknown for byte ranges until every row is read


def test_parquet_and_json_lines(ws, write_script, tmp_path, table):
    table.to_parquet(tmp_path / "t.parquet", row_group_size=100)
    table.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    script = write_script(TABLE_SCRIPT)
    for data in (
        Dataset.Tabular.from_parquet_files(path=str(tmp_path / "t.parquet")),
        Dataset.Tabular.from_json_lines_files(path=str(tmp_path / "t.jsonl")),
    ):
        run = submit_step(ws, script, data, mini_batch_size="2KB")
        assert run.wait_for_completion() == "Completed"
        assert sorted(output_rows(run)) == _expected(table)


def test_partition_keys_give_one_mini_batch_per_key(ws, write_script, tmp_path, table):
    table.to_csv(tmp_path / "t.csv", index=False)
    script = write_script(
        """
        def init():
            pass

        def run(mini_batch, mini_batch_context):
            key = mini_batch_context.partition_key_value["group"]
            assert (mini_batch["group"] == key).all()
            return [f"{key} {len(mini_batch)}"] * len(mini_batch)
        """
    )
    data = Dataset.Tabular.from_delimited_files(path=str(tmp_path / "t.csv"))
    run = submit_step(ws, script, data, partition_keys=["group"])
    assert run.wait_for_completion() == "Completed"
    assert sorted(set(output_rows(run))) == ["0 167", "1 167", "2 166"]
    assert run.get_metrics()["mini_batches_done"] == 3


def test_two_steps_through_pipeline_data_and_side_input(ws, write_script, files, tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "names.json").write_text(json.dumps({"prefix": "seen"}))
    first = write_script(ECHO_SCRIPT)
    second = write_script(
        """
        import argparse, json, os

        def init():
            global prefix
            parser = argparse.ArgumentParser()
            parser.add_argument("--labels")
            args, _ = parser.parse_known_args()
            prefix = json.load(open(os.path.join(args.labels, "names.json")))["prefix"]

        def run(mini_batch):
            return [f"{prefix} {os.path.basename(p)} {len(open(p).read().splitlines())}"
                    for p in mini_batch]
        """
    )
    labels = Dataset.File.from_files(path=str(tmp_path / "labels")).as_named_input("labels")
    middle = PipelineData(name="echoed", datastore=ws.get_default_datastore())
    final = PipelineData(name="counted", datastore=ws.get_default_datastore())
    step_one = ParallelRunStep(
        name="echo",
        inputs=[file_dataset(files(6)).as_named_input("items")],
        output=middle,
        parallel_run_config=ParallelRunConfig(
            source_directory=str(first),
            entry_script="score.py",
            mini_batch_size=2,
            append_row_file_name="echo.txt",
        ),
    )
    step_two = ParallelRunStep(
        name="count",
        inputs=[middle],
        output=final,
        side_inputs=[labels],
        arguments=["--labels", labels],
        parallel_run_config=ParallelRunConfig(
            source_directory=str(second), entry_script="score.py", append_row_file_name="n.txt"
        ),
    )
    run = Experiment(ws, "two-steps").submit(Pipeline(workspace=ws, steps=[step_two, step_one]))
    assert run.wait_for_completion() == "Completed"
    assert [s.name for s in run.get_steps()] == ["echo", "count"]
    out = run.find_step_run("count")[0].get_output_data("counted")
    rows = (out.datastore.local_path(out.path_on_datastore) / "n.txt").read_text().split()
    assert rows == ["seen", "echo.txt", "6"]


def test_reuse_returns_earlier_outputs_until_something_changes(ws, write_script, files):
    folder = write_script(ECHO_SCRIPT)
    data = file_dataset(files(5))
    reuse = {"step_kwargs": {"allow_reuse": True}}
    first = submit_step(ws, folder, data, **reuse)
    first.wait_for_completion()
    second = submit_step(ws, folder, data, **reuse)
    second.wait_for_completion()
    step = second.find_step_run("score-step")[0]
    assert step.get_details()["properties"]["reusedFrom"] == first.find_step_run("score-step")[0].id
    assert sorted(output_rows(second)) == sorted(output_rows(first))
    assert second.get_metrics()["items_done"] == 5
    assert second.get_metrics()["items_per_second"] == 0.0  # the work was done earlier
    (folder / "score.py").write_text(ECHO_SCRIPT.replace("pass", "x = 1"))
    third = submit_step(ws, folder, data, **reuse)
    third.wait_for_completion()
    assert "reusedFrom" not in third.find_step_run("score-step")[0].get_details()["properties"]
    changed = submit_step(ws, folder, data, mini_batch_size=2, **reuse)
    changed.wait_for_completion()
    assert "reusedFrom" not in changed.find_step_run("score-step")[0].get_details()["properties"]


def test_pipeline_parameters_override_defaults(ws, write_script, files, tmp_path):
    one = Dataset.File.from_files(path=str(files(1, "single")))
    many = file_dataset(files(12))
    param = PipelineParameter(name="data_param", default_value=many)
    batch = PipelineParameter(name="batch_size_param", default_value="5")
    processes = PipelineParameter(name="process_count_param", default_value=2)
    cfg = ParallelRunConfig(
        source_directory=str(write_script(ECHO_SCRIPT)),
        entry_script="score.py",
        mini_batch_size=batch,
        process_count_per_node=processes,
        error_threshold=-1,
    )
    from jupyter_parallelrun import DatasetConsumptionConfig

    step = ParallelRunStep(
        name="params",
        parallel_run_config=cfg,
        allow_reuse=False,
        inputs=[DatasetConsumptionConfig("data_config", param).as_mount()],
        output=PipelineData(name="scores", datastore=ws.get_default_datastore()),
    )
    pipeline = Pipeline(workspace=ws, steps=[step])
    experiment = Experiment(ws, "params")
    default = experiment.submit(pipeline)
    default.wait_for_completion()
    assert default.get_metrics()["mini_batches_done"] == 3
    assert default.get_metrics()["processes"] == 2
    single = experiment.submit(
        pipeline,
        pipeline_parameters={"data_param": one, "batch_size_param": "1", "process_count_param": 1},
    )
    single.wait_for_completion()
    metrics = single.get_metrics()
    assert (metrics["items_done"], metrics["processes"]) == (1, 1)
    with pytest.raises(ValueError, match="process_count_per_node"):
        experiment.submit(pipeline, pipeline_parameters={"process_count_param": 0})
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        experiment.submit(pipeline, pipeline_parameters={"nope": 1})
