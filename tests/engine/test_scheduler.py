"""The scheduler's watch over its workers: heartbeats, deaths, and what the run records of them."""

from __future__ import annotations

import csv

from conftest import file_dataset, output_rows, submit_step

FREEZE_FIRST_INIT = """
import os
import signal
import time
from pathlib import Path

def init():
    # The first process to start freezes itself (as a process does when it is stopped,
    # deadlocked or swapped out): it is alive, but neither works nor beats.
    try:
        fd = os.open(Path(__file__).parent / "frozen.flag", os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return
    os.close(fd)
    os.kill(os.getpid(), signal.SIGSTOP)

def run(mini_batch):
    time.sleep(0.5)  # long enough a run for the heartbeat to be missed
    return [os.path.basename(p) for p in mini_batch]
"""


def test_a_worker_without_heartbeat_is_killed_and_the_others_finish(ws, write_script, files):
    run = submit_step(
        ws,
        write_script(FREEZE_FIRST_INIT),
        file_dataset(files(12)),
        mini_batch_size=2,
        heartbeat_timeout=1,
    )
    assert run.wait_for_completion() == "Completed"
    assert sorted(output_rows(run)) == [f"item_{i:03d}.txt" for i in range(12)]

    details = run.get_details()
    lost = [e for e in details["errors"] if "no heartbeat" in e["exception"]]
    assert len(lost) == 1, details["errors"]
    assert "heartbeat_timeout=1s" in lost[0]["exception"]
    assert lost[0]["signal"] == 9 and lost[0]["pid"]
    frozen = next(w for w in details["workers"] if w["process"] == lost[0]["process"])
    assert frozen["state"] == "failed" and "no heartbeat" in frozen["error"]
    working = next(w for w in details["workers"] if w["process"] != lost[0]["process"])
    assert working["miniBatchesDone"] == 6


DIE_ON_FIRST_TRY = """
import os
import signal
from pathlib import Path

def init():
    pass

def run(mini_batch):
    flag = Path(__file__).parent / "died.flag"
    if any(p.endswith("item_004.txt") for p in mini_batch) and not flag.exists():
        flag.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return [os.path.basename(p) for p in mini_batch]
"""


def test_get_details_names_the_dead_process_its_signal_and_mini_batch(ws, write_script, files):
    run = submit_step(ws, write_script(DIE_ON_FIRST_TRY), file_dataset(files(8)), mini_batch_size=2)
    assert run.wait_for_completion() == "Completed"
    assert sorted(output_rows(run)) == [f"item_{i:03d}.txt" for i in range(8)]

    (death,) = run.get_details()["errors"]
    assert death["signal"] == 9 and death["exitCode"] == -9
    assert death["miniBatch"] == 2 and death["try"] == 1
    assert "item_004.txt" in death["item"]
    assert "killed by signal 9" in death["exception"]
    step = run.get_steps()[0]
    runner_log = (ws.path / "runs" / step.id / "logs" / "runner.txt").read_text()
    assert f"(pid {death['pid']}) lost" in runner_log and "killed by signal 9" in runner_log
    worker = next(w for w in run.get_details()["workers"] if w["process"] == death["process"])
    assert worker["restarts"] == 1


def test_resource_samples_reach_the_logs_and_the_state(ws, write_script, files):
    script = write_script(
        """
        import time

        def init():
            pass

        def run(mini_batch):
            time.sleep(0.3)
            return mini_batch
        """
    )
    run = submit_step(
        ws, script, file_dataset(files(8)), mini_batch_size=2, resource_monitor_interval=0.1
    )
    assert run.wait_for_completion() == "Completed"
    step = run.get_steps()[0]
    with open(ws.path / "runs" / step.id / "logs" / "resource_usage.csv") as samples:
        rows = list(csv.DictReader(samples))
    assert {row["process"] for row in rows} == {"process000", "process001"}
    assert all(int(row["rss_bytes"]) > 1_000_000 for row in rows)
    workers = run.get_details()["workers"]
    assert all(w["rssBytes"] > 1_000_000 and w["cpuSeconds"] > 0 for w in workers)
