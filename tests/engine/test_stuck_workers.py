"""Issue 11's stuck and misbehaving workers, on real runs: a run() that holds the GIL or is
SIGSTOPped (its replacement starts with fresh timers), a worker that writes junk on the
runner's connection (that worker is lost, not the run), and a runner SIGKILLed while run()
holds the GIL (its workers end with it)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import assert_guarantee, file_dataset, submit_step

from jupyter_parallelrun import ActivityFailedException

STUCK = """
import gc
import os
import signal
from pathlib import Path

def init():
    pass

def run(mini_batch):
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        with open(os.environ["CALLS"], "a") as calls:
            calls.write(f"{os.getpid()} {name}\\n")
        if name == os.environ["FAULT_ITEM"] and not Path(os.environ["MARK"]).exists():
            Path(os.environ["MARK"]).touch()
            fault = os.environ["FAULT"]
            if fault == "gil":  # one long builtin call in C: no other thread runs meanwhile
                sum(range(10**15))
            if fault == "sigstop":
                os.kill(os.getpid(), signal.SIGSTOP)
            if fault == "junk":  # bytes on the runner's connection that are no message
                channel = next(o for o in gc.get_objects() if type(o).__name__ == "_Channel")
                with channel.lock:  # whole, not torn by a heartbeat sent at the same time
                    channel.conn.send_bytes(b"this is not a pickle")
        rows.append(f"{name}\\t{os.getpid()}")
    return rows
"""


def _submit(ws, write_script, files, tmp_path, fault, **config):
    variables = {
        "CALLS": str(tmp_path / "calls.txt"),
        "MARK": str(tmp_path / "faulted"),
        "FAULT_ITEM": "item_004.txt",
        "FAULT": fault,
    }
    config.setdefault("mini_batch_size", 2)
    return submit_step(
        ws,
        write_script(STUCK),
        file_dataset(files(12)),
        environment_variables=variables,
        **config,
    )


def _calls(tmp_path: Path) -> list[tuple[int, str]]:
    path = tmp_path / "calls.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(int(pid), name) for pid, name in (line.split() for line in lines)]


def _names(count: int) -> list[str]:
    return [f"item_{i:03d}.txt" for i in range(count)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("fault", ["gil", "sigstop"])
def test_a_replacement_worker_does_not_inherit_a_stale_heartbeat(
    ws, write_script, files, tmp_path, fault
):
    # heartbeat_timeout <= run_invocation_timeout (as the defaults, 60 and 60): the worker is
    # silent for the whole timeout, and its replacement used to be killed at once for it.
    run = _submit(
        ws,
        write_script,
        files,
        tmp_path,
        fault,
        process_count_per_node=1,
        run_invocation_timeout=8,
        heartbeat_timeout=8,
        run_max_try=1,
    )
    assert run.wait_for_completion(timeout_seconds=240) == "Completed"
    outcome = assert_guarantee(run, _names(12))
    assert outcome.failed == {"item_004.txt", "item_005.txt"}  # the hanging mini-batch only
    errors = run.get_details()["errors"]
    assert len(errors) == 1, errors
    assert "exceeded run_invocation_timeout=8s" in errors[0]["exception"]
    (worker,) = run.get_details()["workers"]
    assert worker["restarts"] == 1 and worker["state"] != "failed"
    pids = {pid for pid, _ in _calls(tmp_path)}
    assert len(pids) == 2  # the replacement ran the rest


def test_junk_on_the_pipe_loses_that_worker_and_retries_its_mini_batch(
    ws, write_script, files, tmp_path
):
    run = _submit(ws, write_script, files, tmp_path, "junk", process_count_per_node=2)
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    outcome = assert_guarantee(run, _names(12))
    assert outcome.done == set(_names(12))
    (error,) = run.get_details()["errors"]
    assert error["exception"].startswith(
        "the worker process sent 20 bytes that are not a message (UnpicklingError"
    )
    assert error["miniBatch"] == 2 and error["signal"] == signal.SIGKILL
    assert sum(w["restarts"] for w in run.get_details()["workers"]) == 1


def test_workers_end_with_their_runner_even_while_run_holds_the_gil(
    ws, write_script, files, tmp_path
):
    run = _submit(ws, write_script, files, tmp_path, "gil", run_invocation_timeout=600)
    deadline = time.time() + 60
    while not any(name == "item_004.txt" for _, name in _calls(tmp_path)):
        assert time.time() < deadline, "item_004.txt never started"
        time.sleep(0.05)
    (stuck,) = [pid for pid, name in _calls(tmp_path) if name == "item_004.txt"]
    workers = {pid for pid, _ in _calls(tmp_path)}
    os.kill(ws.store.get_run(run.id)["runner_pid"], signal.SIGKILL)
    try:
        deadline = time.time() + 30
        while any(_alive(pid) for pid in workers):
            assert time.time() < deadline, f"workers outlived their runner: {workers}"
            time.sleep(0.1)
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not _alive(stuck)
    with pytest.raises(ActivityFailedException, match="runner process .* ended"):
        run.wait_for_completion(timeout_seconds=30)
