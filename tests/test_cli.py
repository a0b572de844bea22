"""The ``parallelrun`` command line and the ``%parallelrun`` magics, on real runs."""

from __future__ import annotations

import io
import queue
import re
import subprocess
import sys
import threading
import time

import pytest
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
    run_id = done.stdout.split("submitted run ")[1].split()[0]
    assert f"read the logs:       parallelrun logs {run_id}" in done.stdout


def test_magics_submit_cell_and_line(ws, files, monkeypatch, capsys):
    from IPython.core.error import UsageError
    from IPython.testing.globalipapp import get_ipython

    monkeypatch.chdir(ws.config_file.parent)
    ip = get_ipython()  # the session's one test shell (other tests may have started it)
    ip.run_line_magic("load_ext", "jupyter_parallelrun")
    ip.user_ns["items"] = sorted(str(p) for p in files(5).iterdir())
    run = ip.run_cell_magic("parallelrun", "--input $items --wait --mini-batch-size 2", ECHO_SCRIPT)
    assert run.get_status() == "Completed" and run.get_metrics()["items_done"] == 5
    with pytest.raises(UsageError, match="no variable 'missing'"):
        ip.run_line_magic("parallelrun", "bogus.py --input $missing")
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


def test_resubmit_keeps_every_setting_the_run_had(ws, write_script, files, monkeypatch, capsys):
    from conftest import file_dataset, submit_step

    from jupyter_parallelrun import Run
    from jupyter_parallelrun.settings import PARSERS

    monkeypatch.chdir(ws.config_file.parent)
    run = submit_step(
        ws,
        write_script(ECHO_SCRIPT),
        file_dataset(files(3)),
        first_task_creation_timeout=None,  # wait for ever: not the default 600
        environment_variables={"SCORE_MODE": "fast"},  # kept when no --env names it
        heartbeat_timeout=45,
        logging_level="DEBUG",
    )
    run.wait_for_completion()
    assert main(["resubmit", run.id, "--run-max-try", "2", "--no-reuse", "--wait"]) == 0
    again = Run.get(ws, capsys.readouterr().out.split("submitted run ")[1].split()[0])
    (before,), (after,) = run.get_steps(), again.get_steps()
    before, after = before._record["spec"]["config"], after._record["spec"]["config"]
    assert after["run_max_try"] == 2
    assert {k: after[k] for k in PARSERS if k != "run_max_try"} == {
        k: before[k] for k in PARSERS if k != "run_max_try"
    }
    assert after["first_task_creation_timeout"] is None
    assert after["environment_variables"] == {"SCORE_MODE": "fast"}


def test_every_verb_has_help_with_every_options_default(ws):
    from jupyter_parallelrun.command_line import VERBS, build_parser

    parser = build_parser()
    (verbs,) = [a for a in parser._actions if a.dest == "verb"]
    for verb in VERBS:
        done = _cli(ws.config_file.parent, verb, "--help")
        assert done.returncode == 0, done.stderr
        shown = " ".join(done.stdout.split())
        for action in verbs.choices[verb]._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{verb} {action.dest} has no help text"
            assert " ".join(action.help.split()) in shown, (verb, action.dest)
            if action.option_strings:  # every option says what it is when left out
                assert "(default:" in action.help or action.required, (verb, action.help)
        assert "(default: 1)" in shown or verb != "submit"  # --node-count, as ParallelRunConfig


def _blocking_script(write_script, release):
    """item_000 fails every try at once; item_001 waits for the test to create ``release``."""
    return write_script(
        f"""
        import os, time

        def init():
            pass

        def run(mini_batch):
            name = os.path.basename(mini_batch[0])
            if name == "item_000.txt":
                raise ValueError("no good: " + name)
            while not os.path.exists({str(release)!r}):
                time.sleep(0.05)
            return [name]
        """
    )


def test_wait_shows_failures_and_retries_as_they_happen(ws, write_script, files, tmp_path):
    release = tmp_path / "release"
    script = _blocking_script(write_script, release) / "score.py"
    argv = [script, "--input", files(2), "--mini-batch-size", "1", "--process-count-per-node", "2"]
    argv += ["--run-max-try", "2", "--run-invocation-timeout", "30", "--wait"]
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter_parallelrun.cli", *map(str, argv)],
        cwd=ws.config_file.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True)
    reader.start()
    seen = []
    try:
        deadline = time.monotonic() + 60
        while not any("try 1 of 2 failed" in line for line in seen):
            assert time.monotonic() < deadline, seen
            seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
        # the failure is shown while the run still goes on: item_001 is held until released
        assert process.poll() is None and not release.exists()
        (failure,) = [line for line in seen if "try 1 of 2 failed" in line]
        assert re.search(r"score: mini-batch \d+, try 1 of 2 failed on process00[01]: ", failure)
        assert failure.rstrip().endswith("ValueError: no good: item_000.txt (will retry)")
        release.touch()
        process.wait(timeout=60)
        reader.join(timeout=60)
    finally:
        release.touch()
        process.kill()
    rest = "".join(lines.get() for _ in range(lines.qsize()))
    assert process.returncode == 0, rest
    assert "try 2 of 2 failed" in rest and "(no tries left)" in rest
    run_id = "".join(seen).split("submitted run ")[1].split()[0]
    assert "score: Completed 2/2 mini-batches (1 failed), 1 items done, 1 failed" in rest
    assert f"read the logs:       parallelrun logs {run_id}\n" in rest
    assert re.search(rf"a worker's own log:  parallelrun logs {run_id} --process process00", rest)


def test_cancel_says_what_it_did_and_the_reason_shows_once(ws, write_script, files, tmp_path):
    from jupyter_parallelrun import Run, RunDetails

    release = tmp_path / "release"
    script = _blocking_script(write_script, release) / "score.py"
    cwd = ws.config_file.parent
    started = _cli(cwd, script, "--input", files(3), "--mini-batch-size", "1")
    run_id = started.stdout.split("submitted run ")[1].split()[0]
    run = Run.get(ws, run_id)
    try:
        deadline = time.monotonic() + 60
        while run.get_status() != "Running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert _cli(cwd, "cancel", run_id).stdout.strip() == (
            f"cancel requested for run {run_id} (Running)"
        )
        assert run.wait_for_completion(timeout_seconds=60, raise_on_error=False) == "Canceled"
    finally:
        release.touch()
    assert _cli(cwd, "show", run_id).stdout.count("canceled on request") == 1
    # the widget says it once too: the run's error, not again under the step
    widget = RunDetails(run)
    (step,) = widget.state["steps"]
    assert widget.state["error"].count("canceled on request") == 1 and not step["error"]
    again = _cli(cwd, "cancel", run_id)
    assert again.returncode == 0
    assert again.stdout.strip() == f"run {run_id} already finished: Canceled; nothing to cancel"


HOSTILE_OUTPUT = """
import os

def init():
    # Raw bytes from C or a careless print: not UTF-8, a title change, a screen clear.
    os.write(1, b"bytes \\xff\\xfe here\\n\\x1b]0;pwned\\x07 title\\n\\x1b[2J\\rcleared\\n")

def run(mini_batch):
    return [os.path.basename(p) for p in mini_batch]
"""


def test_logs_of_a_process_show_any_bytes_safely(ws, write_script, files):
    script = write_script(HOSTILE_OUTPUT) / "score.py"
    folder = ws.config_file.parent
    done = _cli(folder, str(script), "--input", str(files(2)), "--wait", "--experiment", "cli")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split("Run ", 1)[1].split()[0]
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_parallelrun.cli",
            "logs",
            run_id,
            "--process",
            "process000",
        ],
        cwd=folder,
        capture_output=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout.decode("utf-8")  # valid UTF-8, whatever the process wrote
    assert "bytes \\xff\\xfe here" in out
    assert "\\x1b]0;pwned\\x07 title" in out and "\\x1b[2J\\x0dcleared" in out
    assert not any(ord(c) < 32 and c not in "\n\t" for c in out), repr(out)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_wait_line_on_a_terminal_says_why_nothing_moves_and_is_rewritten(
    ws, write_script, files, tmp_path
):
    from jupyter_parallelrun import (
        Dataset,
        Experiment,
        ParallelRunConfig,
        ParallelRunStep,
        Pipeline,
        PipelineData,
    )
    from jupyter_parallelrun.follow import Follower

    release = tmp_path / "release"
    folder = write_script(
        f"""
        import os, time

        def init():
            while not os.path.exists({str(release)!r}):  # a model that takes long to load
                time.sleep(0.05)

        def run(mini_batch):
            if any(p.endswith("item_001.txt") for p in mini_batch):
                raise KeyError("item_001")
            return mini_batch
        """
    )
    step = ParallelRunStep(
        name="slow-init",
        parallel_run_config=ParallelRunConfig(
            source_directory=str(folder),
            entry_script="score.py",
            mini_batch_size=1,
            process_count_per_node=2,
            run_max_try=1,
        ),
        inputs=[Dataset.File.from_files(path=str(files(3))).as_named_input("items")],
        output=PipelineData(name="out", datastore=ws.get_default_datastore()),
        allow_reuse=False,
    )
    run = Experiment(ws, "terminal").submit(Pipeline(workspace=ws, steps=[step]))
    out = _Terminal()
    follower = Follower(run, out, "parallelrun")
    try:
        deadline = time.monotonic() + 60
        while "2 of 2 processes starting" not in follower.line:
            assert time.monotonic() < deadline, out.getvalue()
            follower.poll()
            time.sleep(0.05)
    finally:
        release.touch()
    while not (state := follower.poll())["final"]:
        assert time.monotonic() < deadline + 60, out.getvalue()
        time.sleep(0.05)
    follower.finish(state)
    text = out.getvalue()
    assert "\rslow-init: Running" in text  # rewritten in place, no line per poll
    assert "\n" not in text.split("slow-init: mini-batch")[0]
    failure = re.search(
        r"\r +\r(slow-init: mini-batch \d, try 1 of 1 failed on process00\d: )", text
    )
    assert failure, text
    assert "KeyError: 'item_001' (no tries left)\n" in text
    assert text.endswith("--process " + re.search(r"process00\d", failure.group(1)).group(0) + "\n")
