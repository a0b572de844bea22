"""The ``parallelrun`` command line and the ``%parallelrun`` magics, on real runs."""

from __future__ import annotations

import subprocess
import sys

from conftest import ECHO_SCRIPT

from jupyter_parallelrun.cli import main


def _cli(cwd, *args):
    return subprocess.run(
        [sys.executable, "-m", "jupyter_parallelrun.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_submit_wait_runs_show_logs(ws, write_script, files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ws.config_file.parent)
    script = write_script(ECHO_SCRIPT) / "score.py"
    inputs = files(7)
    done = _cli(
        ws.config_file.parent,
        str(script),
        "--input",
        f"{inputs}/*.txt",
        "--mini-batch-size",
        "3",
        "--wait",
        "--experiment",
        "cli",
    )
    assert done.returncode == 0, done.stderr
    assert "score: Completed 3/3 mini-batches, 7 items done" in done.stdout
    assert main(["runs"]) == 0
    table = capsys.readouterr().out
    assert "cli" in table and "Completed" in table
    run_id = table.splitlines()[1].split()[0]
    assert main(["show", run_id]) == 0
    assert "7 items done" in capsys.readouterr().out
    assert main(["logs", run_id]) == 0
    assert "Completed" in capsys.readouterr().out
    assert main(["logs", run_id, "--process", "nope"]) == 2
    assert "no such process" in capsys.readouterr().err


def test_mistakes_are_one_line_and_exit_2(ws, write_script, files, monkeypatch, capsys):
    monkeypatch.chdir(ws.config_file.parent)
    script = str(write_script(ECHO_SCRIPT) / "score.py")
    assert main([script, "--input", str(files(2)), "--run-max-try", "0"]) == 2
    assert "run_max_try" in capsys.readouterr().err
    assert main([script, "--input", "/no/such/*.png"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main([script, "--input", str(files(2)), "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_failed_run_exits_non_zero(ws, write_script, files):
    script = write_script(
        "def init():\n    raise RuntimeError('no model')\n\ndef run(b):\n    return b\n"
    )
    done = _cli(ws.config_file.parent, str(script / "score.py"), "--input", str(files(2)), "--wait")
    assert done.returncode == 1
    assert "no model" in done.stdout


def test_magics_submit_cell_and_line(ws, files, monkeypatch, capsys):
    from IPython.testing.globalipapp import get_ipython

    monkeypatch.chdir(ws.config_file.parent)
    ip = get_ipython()  # the session's one test shell (other tests may have started it)
    ip.run_line_magic("load_ext", "jupyter_parallelrun")
    ip.user_ns["items"] = sorted(str(p) for p in files(5).iterdir())
    run = ip.run_cell_magic("parallelrun", "--input $items --wait --mini-batch-size 2", ECHO_SCRIPT)
    assert run.get_status() == "Completed" and run.get_metrics()["items_done"] == 5
    assert ip.run_line_magic("parallelrun", "bogus.py --input $missing") is None
    assert "no variable 'missing'" in capsys.readouterr().out
    ip.user_ns["last"] = run
    ip.run_line_magic("parallelrun", "show $last")
    assert "5 items done" in capsys.readouterr().out


def test_resubmit_with_overrides_and_resume_refusal(ws, write_script, files, monkeypatch, capsys):
    from jupyter_parallelrun import Run

    monkeypatch.chdir(ws.config_file.parent)
    script = str(write_script(ECHO_SCRIPT) / "score.py")
    assert main([script, "--input", str(files(6)), "--mini-batch-size", "3", "--wait"]) == 0
    first = capsys.readouterr().out.split("submitted run ")[1].split()[0]
    assert main(["resubmit", first, "--mini-batch-size", "1", "--no-reuse", "--wait"]) == 0
    second = capsys.readouterr().out.split("submitted run ")[1].split()[0]
    metrics = Run.get(ws, second).get_metrics()
    assert (metrics["items_done"], metrics["mini_batches_done"]) == (6, 6)
    assert main(["resume", second]) == 2
    assert "only a Failed or Canceled run can be resumed" in capsys.readouterr().err


def test_preserve_order_flag_and_its_inheritance_on_resubmit(
    ws, write_script, files, monkeypatch, capsys
):
    from jupyter_parallelrun import Run

    def submitted(argv: list[str]):
        """The run a submit or resubmit started, and its step's preserve_order."""
        assert main(argv) == 0
        run = Run.get(ws, capsys.readouterr().out.split("submitted run ")[1].split()[0])
        (step,) = run.get_steps()
        return run, step, step._record["spec"]["config"]["preserve_order"]

    monkeypatch.chdir(ws.config_file.parent)
    script = str(write_script(ECHO_SCRIPT) / "score.py")
    first = [script, "--input", str(files(6)), "--mini-batch-size", "1", "--wait"]
    run, step, ordered = submitted([*first, "--preserve-order"])
    output = step.get_output()
    rows = output.datastore.local_path(output.path_on_datastore) / "parallel_run_step.txt"
    assert ordered is True
    assert rows.read_text().splitlines() == [f"item_{i:03d}.txt {i}" for i in range(6)]
    assert submitted(["resubmit", run.id, "--no-reuse", "--wait"])[2] is True
    assert submitted(["resubmit", run.id, "--no-preserve-order", "--wait"])[2] is False
    assert main([*first, "--preserve-order", "--output-action", "summary_only"]) == 2
    assert "needs output_action='append_row'" in capsys.readouterr().err
