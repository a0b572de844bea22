"""``parallelrun resubmit`` (and ``%parallelrun resubmit``) on real runs: what the earlier run
had and no flag changed carries over; ``--env`` reaches the workers."""

from __future__ import annotations

import pytest

from jupyter_parallelrun import Run
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
