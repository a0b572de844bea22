"""``preserve_order``: append_row rows in input order, whatever order the work finishes in."""

from __future__ import annotations

import os
import signal
import time

import pandas as pd
import pytest
from conftest import assert_guarantee, file_dataset, output_rows, submit_step

from jupyter_parallelrun import ActivityFailedException, Dataset, ParallelRunConfig
from jupyter_parallelrun.engine import scheduler_steps
from jupyter_parallelrun.engine.commit import StepCommitter
from jupyter_parallelrun.engine.logs import StepLogs
from jupyter_parallelrun.engine.messages import Done, Ready
from jupyter_parallelrun.engine.mini_batch import MiniBatch
from jupyter_parallelrun.engine.output import AppendRowWriter
from jupyter_parallelrun.engine.scheduler_events import (
    InputFormed,
    Received,
    RecordResult,
    RunStarted,
    WorkerConnected,
)
from jupyter_parallelrun.engine.scheduler_state import (
    SchedulerSettings,
    SchedulerState,
    worker_names,
)
from jupyter_parallelrun.progress import progress_line, run_state
from jupyter_parallelrun.store import RunStore

#: Mini-batches holding a file named in SLOW sleep. One holding a file named in HOLD waits until
#: other rows are in the output (at most HOLD_SECONDS, or until HOLD_RELEASE exists). One holding
#: a file named in DIE_ONCE kills its process the first time; one named in FAIL always raises.
SCRIPT = """
import os
import signal
import time
from pathlib import Path

from jupyter_parallelrun import EntryScript

MARKS = Path(__file__).parent

def init():
    pass

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    if set(names) & set(os.environ.get("HOLD", "").split(",")):
        output = Path(EntryScript().output_dir) / "parallel_run_step.txt"
        deadline = time.time() + float(os.environ["HOLD_SECONDS"])
        release = Path(os.environ.get("HOLD_RELEASE", "/nonexistent"))
        while time.time() < deadline and not (output.exists() and output.stat().st_size):
            if release.exists():
                break
            time.sleep(0.01)
    if set(names) & set(os.environ.get("SLOW", "").split(",")):
        time.sleep(float(os.environ.get("SLOW_SECONDS", "1")))
    if set(names) & set(os.environ.get("FAIL", "").split(",")):
        raise ValueError("this mini-batch always fails")
    for name in set(names) & set(os.environ.get("DIE_ONCE", "").split(",")):
        try:
            os.close(os.open(MARKS / f"died_{name}", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(os.environ.get("DELAY", "0")))
    return [f"{name}\\t{open(p).read()}" for name, p in zip(names, mini_batch)]
"""


def _names(count: int) -> list[str]:
    return [f"item_{i:03d}.txt" for i in range(count)]


def _rows(names: list[str]) -> list[str]:
    return [f"{name}\t{int(name[5:8])}" for name in names]


def _submit(ws, write_script, inputs, environment, **config):
    return submit_step(
        ws,
        write_script(SCRIPT),
        file_dataset(inputs),
        environment_variables=environment,
        **config,
    )


@pytest.mark.parametrize("preserve_order", [True, False])
def test_rows_follow_the_input_even_when_the_first_mini_batch_finishes_last(
    ws, write_script, files, preserve_order
):
    # The first mini-batch waits until other rows are written. Without preserve_order they
    # are, so its rows cannot come first; with it nothing is written before them, and the
    # wait ends after a second, by which time the other process has finished the rest.
    run = _submit(
        ws,
        write_script,
        files(20),
        {"HOLD": "item_000.txt", "HOLD_SECONDS": "1" if preserve_order else "30"},
        mini_batch_size=2,
        preserve_order=preserve_order,
    )
    assert run.wait_for_completion(timeout_seconds=60) == "Completed"
    assert_guarantee(run, _names(20))
    rows = output_rows(run)
    if preserve_order:
        assert rows == _rows(_names(20))
    else:
        assert sorted(rows) == _rows(_names(20)) and rows[0] != _rows(["item_000.txt"])[0]


def test_ordered_rows_leave_out_a_failed_mini_batch_and_wait_for_a_retried_one(
    ws, write_script, files
):
    run = _submit(
        ws,
        write_script,
        files(24),
        {"FAIL": "item_004.txt", "DIE_ONCE": "item_010.txt", "SLOW": "item_002.txt"},
        mini_batch_size=2,
        run_max_try=2,
        preserve_order=True,
    )
    assert run.wait_for_completion(timeout_seconds=60) == "Completed"
    outcome = assert_guarantee(run, _names(24))
    assert outcome.failed == {"item_004.txt", "item_005.txt"}
    assert output_rows(run) == _rows([n for n in _names(24) if n not in outcome.failed])
    (death,) = [e for e in outcome.errors if e["miniBatch"] == 5]
    assert "killed by signal 9" in death["exception"]


def test_tabular_rows_stay_in_file_and_record_order(ws, write_script, tmp_path):
    folder = tmp_path / "tables"
    folder.mkdir()
    frames = []
    for part in range(3):
        frame = pd.DataFrame({"key": [f"p{part}_r{i:02d}" for i in range(40)], "x": range(40)})
        frame.to_csv(folder / f"part_{part}.csv", index=False)
        frames.append(frame)
    script = write_script(
        """
        import time

        def init():
            pass

        def run(mini_batch):
            # The first mini-batch of every file is the slowest.
            if mini_batch["key"].iloc[0].endswith("_r00"):
                time.sleep(0.5)
            return [f"{key}\\t{x}" for key, x in zip(mini_batch["key"], mini_batch["x"])]
        """
    )
    run = submit_step(
        ws,
        script,
        Dataset.Tabular.from_delimited_files(path=str(folder / "*.csv")),
        mini_batch_size="120",
        preserve_order=True,
    )
    assert run.wait_for_completion(timeout_seconds=60) == "Completed"
    expected = [f"{k}\t{x}" for f in frames for k, x in zip(f["key"], f["x"], strict=True)]
    assert output_rows(run) == expected
    assert run.get_metrics()["mini_batches_done"] > 6


def test_a_killed_runner_resumes_an_ordered_run_from_its_committed_prefix(ws, write_script, files):
    # Mini-batch 10 takes 2 s, so the run is still going when its runner is killed, with
    # later mini-batches finished and held, not committed.
    environment = {"DELAY": "0.05", "SLOW": "item_020.txt", "SLOW_SECONDS": "2"}
    run = _submit(ws, write_script, files(30), environment, mini_batch_size=2, preserve_order=True)
    deadline = time.time() + 30
    while run.get_metrics()["mini_batches_done"] < 3 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(ws.store.get_run(run.id)["runner_pid"], signal.SIGKILL)
    with pytest.raises(ActivityFailedException, match="runner process .* ended"):
        run.wait_for_completion(timeout_seconds=30)
    before = assert_guarantee(run, _names(30))
    committed = sorted(mb["mb_id"] for mb in before.mini_batches)
    assert committed == list(range(len(committed))) and 3 <= len(committed) <= 10
    assert before.rows == _rows(_names(2 * len(committed)))

    run.resume()
    assert run.wait_for_completion(timeout_seconds=60) == "Completed"
    assert_guarantee(run, _names(30))
    assert output_rows(run) == _rows(_names(30))


def test_a_watched_ordered_run_shows_what_waits_for_earlier_mini_batches(
    ws, write_script, files, tmp_path
):
    release = tmp_path / "release"
    run = _submit(
        ws,
        write_script,
        files(20),
        {"HOLD": "item_000.txt", "HOLD_SECONDS": "60", "HOLD_RELEASE": str(release)},
        mini_batch_size=2,
        preserve_order=True,
    )
    # The other process finishes all it can: every mini-batch but the first and the one queued
    # behind it in the same process.
    deadline = time.time() + 30
    while (step := run_state(ws.store, run.id)["steps"][0])["mb_held"] < 8 or not step["mb_total"]:
        assert time.time() < deadline, f"only {step['mb_held']} mini-batches held"
        time.sleep(0.05)
    assert step["mb_done"] == 0 and step["status"] == "Running"
    line = progress_line(step)
    held = step["mb_held"]
    assert f"0/10 mini-batches + {held} finished, waiting for earlier ones" in line
    release.touch()
    assert run.wait_for_completion(timeout_seconds=60) == "Completed"
    step = run_state(ws.store, run.id)["steps"][0]
    assert (step["mb_done"], step["mb_held"]) == (10, 0)
    assert ws.store.get_run(step["id"])["mb_held"] == 0
    assert output_rows(run) == _rows(_names(20))


def test_held_rows_hold_back_new_mini_batches_and_go_out_in_order(tmp_path, monkeypatch):
    # The scheduler's state holds what finishes early and hands it to the committer in order.
    monkeypatch.setattr(scheduler_steps, "HELD_MINI_BATCHES", 1)
    store = RunStore(tmp_path / "runs.db")
    store.create_run(id="step", experiment="e", kind="step", status="Running")
    writer = AppendRowWriter(tmp_path / "out.txt")
    settings = SchedulerSettings(
        "step", worker_names(1, 2), preserve_order=True, committed=frozenset({0, 1})
    )
    state = SchedulerState(settings)
    committer = StepCommitter(
        store, "step", writer, StepLogs(tmp_path / "logs"), lambda: ([], None, len(state.held))
    )

    def handle(*events) -> None:
        for instruction in state.handle(*events):
            if isinstance(instruction, RecordResult):
                committer.add_result(instruction.record, instruction.payload)
        state.validate_state()

    def ready(name: str) -> None:
        handle(WorkerConnected(0, name, 0, 1), Received(0, name, 0, Ready(0.1)))

    def form(mb_id: int) -> None:
        handle(InputFormed(0, MiniBatch(mb_id, {"paths": [f"item_{mb_id}"]}, 1), 30))

    def finish(name: str, mb_id: int) -> None:
        handle(Received(1, name, 0, Done(mb_id, 1, 1, f"row {mb_id}\n".encode(), 0, 1, None)))

    handle(RunStarted(0))
    ready("process000")
    form(2)
    form(3)  # both on process000
    ready("process001")
    form(4)
    form(5)  # both on process001
    finish("process001", 4)
    assert not state.holding_back and state.wants_input()
    finish("process001", 5)
    assert state.holding_back and not state.wants_input()
    committer.commit(force=True)
    assert (tmp_path / "out.txt").read_text() == "" and store.mini_batches("step") == []
    finish("process000", 2)  # 0 and 1 were committed by an earlier runner
    finish("process000", 3)
    assert not state.holding_back and state.mini_batches == dict.fromkeys(range(2, 6), "finished")
    committer.commit(force=True)
    writer.close()
    assert (tmp_path / "out.txt").read_text() == "row 2\nrow 3\nrow 4\nrow 5\n"
    assert [mb["mb_id"] for mb in store.mini_batches("step")] == [2, 3, 4, 5]


def test_preserve_order_is_checked_when_the_config_is_made():
    with pytest.raises(ValueError, match="preserve_order=True .* output_action='summary_only'"):
        ParallelRunConfig(entry_script=__file__, output_action="summary_only", preserve_order=True)
    with pytest.raises(TypeError, match="preserve_order must be True or False; got 'yes'"):
        ParallelRunConfig(entry_script=__file__, preserve_order="yes")
