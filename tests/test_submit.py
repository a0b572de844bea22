"""Bad submissions are refused at submit(), before any process starts, with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT, file_dataset, submit_step

from jupyter_parallelrun import (
    AmlCompute,
    ComputeTarget,
    CondaDependencies,
    Dataset,
    Environment,
    Experiment,
    ParallelRunConfig,
    ParallelRunStep,
    Pipeline,
    PipelineParameter,
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


@pytest.mark.parametrize(
    "name", ["../../x", "x", "ab", "-abc", "a b c", "a" * 37, "名前です", "ok\n"]
)
def test_experiment_names_outside_azures_rule_are_refused(ws, name):
    # The name is part of the run id and so of the run's folder: "../../x" would leave the
    # workspace.
    with pytest.raises(ValueError) as refused:
        Experiment(ws, name)
    assert "name must be 3 to 36 letters, digits, '_' and '-', starting with a letter or digit" in (
        str(refused.value)
    )
    assert f"got {name!r}" in str(refused.value)
    for good in ("abc", "9lives", "digit_identification", "A-b_C", "a" * 36):
        assert Experiment(ws, good).name == good


def test_node_count_above_max_nodes_is_refused_at_submit(ws, write_script, files):
    ComputeTarget.create(ws, "local4", AmlCompute.provisioning_configuration(max_nodes=4))
    with pytest.raises(ValueError, match="node_count=1000000 exceeds max_nodes=4"):
        submit_step(
            ws,
            write_script(ECHO_SCRIPT),
            file_dataset(files(2)),
            compute_target="local4",
            node_count=PipelineParameter("nodes", default_value=1),
            pipeline_parameters={"nodes": 1_000_000},
        )
    assert _no_runs(ws)


def test_a_link_out_of_source_directory_is_refused_and_one_inside_is_copied(
    ws, write_script, files
):
    source = write_script(ECHO_SCRIPT)
    (source / "etc").symlink_to("/etc")
    with pytest.raises(ValueError) as refused:
        submit_step(ws, source, file_dataset(files(2)))
    assert "holds the symbolic link 'etc' to '/etc', which is outside the folder" in str(
        refused.value
    )
    assert _no_runs(ws) and not any((ws.path / "runs").glob("*/snapshot"))

    (source / "etc").unlink()
    (source / "gone.py").symlink_to(source / "nowhere.py")
    with pytest.raises(ValueError, match="symbolic link 'gone.py' .* which is missing"):
        submit_step(ws, source, file_dataset(files(2)))

    (source / "gone.py").unlink()
    (source / "lib").mkdir()
    (source / "lib" / "helper.py").write_text("X = 1\n")
    (source / "helper.py").symlink_to("lib/helper.py")
    run = submit_step(ws, source, file_dataset(files(2)))
    snapshot = Path(run.get_steps()[0]._record["spec"]["snapshot"])
    assert (snapshot / "helper.py").read_text() == "X = 1\n"
    assert run.wait_for_completion() == "Completed"
