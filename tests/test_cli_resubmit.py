"""``parallelrun resubmit`` (and ``%parallelrun resubmit``) on real runs: what the earlier run
had and no flag changed carries over; ``--env`` reaches the workers."""

from __future__ import annotations

import pytest
from conftest import file_dataset, submit_step

from jupyter_parallelrun import (
    Experiment,
    ParallelRunConfig,
    ParallelRunStep,
    Pipeline,
    PipelineData,
    Run,
)
from jupyter_parallelrun.cli import main

ENV_SCRIPT = """
import os

def init():
    pass

def run(mini_batch):
    seen = " ".join(f"{k}={os.environ.get(k)}" for k in ("MODE", "QUERY", "LEVEL"))
    return [f"{os.path.basename(p)} {seen}" for p in mini_batch]
"""


def submitted(argv: list[str], capsys: pytest.CaptureFixture, ws) -> Run:
    """The run ``parallelrun ARGV`` started, once it ended Completed."""
    assert main(argv) == 0, capsys.readouterr().err
    run = Run.get(ws, capsys.readouterr().out.split("submitted run ")[1].split()[0])
    assert run.get_status() == "Completed"
    return run


def rows(run: Run) -> list[str]:
    """The append_row file of the run's one step, as sorted lines."""
    (step,) = run.get_steps()
    output = step.get_output()
    name = step._record["spec"]["config"]["append_row_file_name"]
    folder = output.datastore.local_path(output.path_on_datastore)
    return sorted((folder / name).read_text().splitlines())


def test_env_reaches_the_workers_and_a_resubmission_replaces_only_the_names_given(
    ws, write_script, files, monkeypatch, capsys
):
    monkeypatch.chdir(ws.config_file.parent)
    script = str(write_script(ENV_SCRIPT) / "score.py")
    first = [script, "--input", str(files(2)), "--env", "MODE=fast", "--env", "QUERY=a=b"]
    run = submitted([*first, "--wait"], capsys, ws)
    assert rows(run) == [f"item_00{i}.txt MODE=fast QUERY=a=b LEVEL=None" for i in range(2)]

    again = submitted(
        ["resubmit", run.id, "--env", "MODE=slow", "--env", "LEVEL=", "--no-reuse", "--wait"],
        capsys,
        ws,
    )
    assert rows(again) == [f"item_00{i}.txt MODE=slow QUERY=a=b LEVEL=" for i in range(2)]


def resubmitted(run: Run, flags: list[str], capsys, ws) -> tuple[Run, dict, dict]:
    """Resubmit ``run`` with ``flags``; the new run, and the stored steps before and after."""
    again = submitted(["resubmit", run.id, *flags, "--wait"], capsys, ws)
    (before,), (after,) = run.get_steps(), again.get_steps()
    return again, before._record["spec"], after._record["spec"]


def test_resubmit_keeps_the_environment(ws, write_script, files, monkeypatch, capsys):
    from IPython.testing.globalipapp import get_ipython

    from jupyter_parallelrun import Environment

    monkeypatch.chdir(ws.config_file.parent)
    environment = Environment(name="scoring")
    environment.environment_variables["MODE"] = "from-environment"
    run = submit_step(ws, write_script(ENV_SCRIPT), file_dataset(files(2)), environment=environment)
    assert run.wait_for_completion() == "Completed"

    again, before, after = resubmitted(run, ["--no-reuse"], capsys, ws)
    assert after["config"]["environment"] == before["config"]["environment"]
    assert rows(again) == [
        f"item_00{i}.txt MODE=from-environment QUERY=None LEVEL=None" for i in range(2)
    ]

    shell = get_ipython()  # the same verb in a notebook
    shell.run_line_magic("load_ext", "jupyter_parallelrun")
    magic = shell.run_line_magic(
        "parallelrun", f"resubmit {run.id} --env QUERY=q --no-reuse --wait"
    )
    assert rows(magic) == [
        f"item_00{i}.txt MODE=from-environment QUERY=q LEVEL=None" for i in range(2)
    ]


LABELS_SCRIPT = """
import argparse, os

def init():
    global labels
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels")
    folder = parser.parse_known_args()[0].labels
    labels = open(os.path.join(folder, "labels.txt")).read().strip()

def run(mini_batch):
    return [f"{os.path.basename(p)} {labels}" for p in mini_batch]
"""


def test_resubmit_keeps_side_inputs_and_inputs_given_as_arguments(
    ws, write_script, files, tmp_path, monkeypatch, capsys
):
    from jupyter_parallelrun import Dataset

    monkeypatch.chdir(ws.config_file.parent)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "labels.txt").write_text("cat")
    labels = Dataset.File.from_files(path=str(tmp_path / "labels")).as_named_input("labels")
    run = submit_step(
        ws,
        write_script(LABELS_SCRIPT),
        file_dataset(files(2)),
        step_kwargs={"side_inputs": [labels.as_mount()], "arguments": ["--labels", labels]},
    )
    assert run.wait_for_completion() == "Completed"

    again, before, after = resubmitted(run, ["--no-reuse"], capsys, ws)
    assert rows(again) == ["item_000.txt cat", "item_001.txt cat"]
    assert (
        after["side_inputs"] == before["side_inputs"] and after["side_inputs"][0]["mode"] == "mount"
    )
    assert after["arguments"] == before["arguments"]


TABLE_SCRIPT = """
def init():
    pass

def run(mini_batch, mini_batch_context):
    region = mini_batch_context.partition_key_value["region"]
    return [f"{region} {value}" for value in mini_batch["value"]]
"""


def test_resubmit_reads_a_new_input_as_a_table_when_the_run_read_a_table(
    ws, write_script, tmp_path, monkeypatch, capsys
):
    from jupyter_parallelrun import Dataset

    monkeypatch.chdir(ws.config_file.parent)
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("region,value\nnorth,1\nsouth,2\nnorth,3\n")
    second.write_text("region,value\neast,4\nwest,5\neast,6\nwest,7\n")
    run = submit_step(
        ws,
        write_script(TABLE_SCRIPT),
        Dataset.Tabular.from_delimited_files(path=str(first)),
        mini_batch_size=None,
        partition_keys=["region"],
    )
    assert run.wait_for_completion() == "Completed"
    assert rows(run) == ["north 1", "north 3", "south 2"]

    again, before, after = resubmitted(run, ["--input", str(second), "--no-reuse"], capsys, ws)
    assert after["input"]["dataset"]["type"] == "tabular"
    assert after["config"]["partition_keys"] == ["region"]
    assert rows(again) == ["east 4", "east 6", "west 5", "west 7"]
    assert again.get_metrics()["mini_batches_done"] == 2  # one per region


def nightly_run(ws, folder, **step: object) -> Run:
    """A finished run of the step ``nightly``, given as a notebook would give it."""
    cfg = ParallelRunConfig(
        source_directory=str(folder),
        entry_script="score.py",
        mini_batch_size=1,
        append_row_file_name="scores.txt",
        description="nightly scoring",
    )
    run = Experiment(ws, "nightly").submit(
        Pipeline(
            workspace=ws,
            steps=[ParallelRunStep(name="nightly", parallel_run_config=cfg, **step)],
        )
    )
    assert run.wait_for_completion() == "Completed"
    return run


def test_resubmit_keeps_the_output(ws, write_script, files, tmp_path, monkeypatch, capsys):
    from jupyter_parallelrun import Datastore

    monkeypatch.chdir(ws.config_file.parent)
    store = Datastore.register_local_folder(ws, "results", str(tmp_path / "results"))
    run = nightly_run(
        ws,
        write_script(ENV_SCRIPT),
        inputs=[file_dataset(files(2)).as_named_input("images")],
        output=PipelineData(name="inferences", datastore=store),
    )

    again, before, after = resubmitted(run, ["--no-reuse"], capsys, ws)
    output = again.find_step_run("nightly")[0].get_output_data("inferences")
    assert output.datastore.name == "results"
    assert (store.local_path(output.path_on_datastore) / "scores.txt").read_text().count("\n") == 2
    assert (after["output"]["name"], after["output"]["datastore"]) == ("inferences", "results")


def test_resubmit_keeps_the_inputs_name_and_mode_side_inputs_description_and_allow_reuse(
    ws, write_script, files, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(ws.config_file.parent)
    run = nightly_run(
        ws,
        write_script(ENV_SCRIPT),
        inputs=[file_dataset(files(2)).as_named_input("images").as_download()],
        side_inputs=[file_dataset(files(1, "lookup")).as_named_input("lookup")],
        allow_reuse=False,
    )

    again, before, after = resubmitted(run, [], capsys, ws)  # allow_reuse=False: it runs
    assert again.get_metrics()["mini_batches_done"] == 2
    assert after["input"]["name"] == "images" and after["input"]["mode"] == "download"
    assert after["side_inputs"] == before["side_inputs"] != []
    assert after["config"]["description"] == "nightly scoring"
    assert after["allow_reuse"] is False


def test_an_unchanged_resubmission_reuses_the_earlier_runs_outputs(
    ws, write_script, files, monkeypatch, capsys
):
    """allow_reuse=True, nothing changed: the resubmitted step (which runs the earlier run's
    snapshot, not its source folder) returns the earlier step run's outputs; a change runs."""
    monkeypatch.chdir(ws.config_file.parent)
    script = str(write_script(ENV_SCRIPT) / "score.py")
    run = submitted([script, "--input", str(files(2)), "--wait"], capsys, ws)
    (step,) = run.get_steps()

    again, _, _ = resubmitted(run, [], capsys, ws)
    (reused,) = again.get_steps()
    assert reused._record["reused_from"] == step.id
    assert rows(again) == rows(run)
    changed, _, _ = resubmitted(run, ["--env", "MODE=other"], capsys, ws)
    assert changed.get_steps()[0]._record["reused_from"] is None


def test_resubmit_of_a_step_run_names_its_pipeline_run(
    ws, write_script, files, monkeypatch, capsys
):
    monkeypatch.chdir(ws.config_file.parent)
    script = str(write_script(ENV_SCRIPT) / "score.py")
    run = submitted([script, "--input", str(files(1)), "--wait"], capsys, ws)
    (step,) = run.get_steps()
    assert main(["resubmit", step.id]) == 2
    assert capsys.readouterr().err == (
        f"resubmit {step.id}: that is a step run; give its pipeline run's id, {run.id}\n"
    )
