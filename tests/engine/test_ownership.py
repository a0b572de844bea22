"""Issue 11, points 1 and 2: one owner per run, and the store's failures, with real processes.

A runner owns its pipeline run by the lease it holds in the store; every commit checks it. Here
two ``resume()`` calls race, a watcher looks from another PID namespace (as another host on the
shared workspace does), a runner's lease is taken while it is paused, and another connection
holds the store's write lock while a run commits. After each, issue 3's guarantee holds: every
item exactly once in the output or the failure record, and the counters equal the files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import (
    LOCKED_SECONDS,
    assert_guarantee,
    file_dataset,
    hold_write_lock,
    race_resumes,
    runners,
    submit_step,
)

from jupyter_parallelrun import ActivityFailedException
from jupyter_parallelrun.store import BUSY_SECONDS_ENV
from jupyter_parallelrun.store_lease import LEASE_ENV

#: Every row names its item and the runner whose worker made it (the worker's parent).
SCRIPT = """
import os
import time

def init():
    pass

def run(mini_batch):
    time.sleep(float(os.environ.get("DELAY", "0")))
    return [f"{os.path.basename(p)}\\t{os.getppid()}" for p in mini_batch]
"""


def _names(count: int) -> list[str]:
    return [f"item_{i:03d}.txt" for i in range(count)]


def _submit(ws, write_script, files, count, delay="0.05", **config):
    config.setdefault("mini_batch_size", 1)
    return submit_step(
        ws,
        write_script(SCRIPT),
        file_dataset(files(count)),
        environment_variables={"DELAY": delay},
        **config,
    )


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "the run did not get that far"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    with contextlib.suppress(OSError), open(path) as children:
        return [int(child) for child in children.read().split()]
    return []


def _final(run) -> str:
    _wait_for(lambda: run.get_state()["final"])
    return run.get_status()


def test_two_resumes_at_once_start_one_runner_every_time(ws, write_script, files, tmp_path):
    run = _submit(ws, write_script, files, 120, process_count_per_node=1)
    for _ in range(20):
        _wait_for(lambda: run.get_metrics()["items_done"] >= 1 or run.get_state()["final"])
        run.cancel()
        if _final(run) == "Completed":
            break
        race_resumes(ws, run, tmp_path)
    assert _final(run) in ("Completed", "Canceled")
    if run.get_status() == "Canceled":
        run.resume()
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    outcome = assert_guarantee(run, _names(120))
    assert outcome.done == set(_names(120))


#: A watcher elsewhere: what get_state() says, then what resume() says.
WATCH = """
import sys
from jupyter_parallelrun import Run, Workspace

run = Run.get(Workspace(path=sys.argv[1]), sys.argv[2])
print(run.get_state()["status"], flush=True)
try:
    run.resume()
except Exception as error:
    print(f"refused {type(error).__name__}: {error}", flush=True)
else:
    print("resumed", flush=True)
"""


def test_a_watcher_in_another_pid_namespace_leaves_a_live_run_to_its_runner(
    ws, write_script, files
):
    isolate = ["unshare", "--pid", "--fork", "--mount-proc"]
    try:
        probe = subprocess.run([*isolate, "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"unshare cannot start a PID namespace here: {error}")
    if probe.returncode:
        pytest.skip(f"unshare cannot start a PID namespace here: {probe.stderr.strip()}")
    run = _submit(ws, write_script, files, 40, delay="0.1")
    _wait_for(lambda: run.get_metrics()["items_done"] >= 2)
    (runner,) = runners(run.id)
    # Another host, as it were: the runner's pid means nothing there.
    watched = subprocess.run(
        [*isolate, sys.executable, "-c", WATCH, str(ws.config_file.parent), run.id],
        capture_output=True,
        text=True,
        timeout=120,
    )
    status, said = watched.stdout.strip().splitlines()
    assert status == "Running", watched
    assert said.startswith("refused RunAlreadyRunning: ") and f"runner pid {runner} " in said
    assert run.get_status() == "Running" and runners(run.id) == [runner]
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    assert assert_guarantee(run, _names(40)).done == set(_names(40))


def _take_lease_while_paused(ws, runner: int, run_id: str) -> None:
    """Pause the runner and expire its lease, as a host cut off from the workspace would
    leave it; a pause while it holds the write lock (mid-commit) is let go and tried again."""
    deadline = time.time() + 60
    while True:
        os.kill(runner, signal.SIGSTOP)
        try:
            with contextlib.closing(sqlite3.connect(ws.store.path, timeout=0.2)) as db:
                db.execute("UPDATE leases SET expires=? WHERE run_id=?", (time.time() - 1, run_id))
                db.commit()
            return
        except sqlite3.OperationalError:
            os.kill(runner, signal.SIGCONT)
            assert time.time() < deadline, "the runner never let go of the write lock"
            time.sleep(0.05)


def test_a_runner_whose_lease_was_taken_cannot_commit_and_its_rows_are_cut(ws, write_script, files):
    run = _submit(ws, write_script, files, 60, delay="0.1")
    _wait_for(lambda: run.get_metrics()["items_done"] >= 4)
    (old,) = runners(run.id)
    workers = _children(old)
    _take_lease_while_paused(ws, old, run.id)
    try:
        step = run.find_step_run("score-step")[0]
        committed = ws.store.get_run(step.id)["items_done"]  # read only, as get_state() is not
        out = step.get_output_data("scores")
        path = out.datastore.local_path(out.path_on_datastore) / "parallel_run_step.txt"
        # What a runner cut off mid-commit leaves: rows after the last committed offset. The
        # watcher that ends the run cuts them, under the lock, as it lets the lease go.
        with open(path, "ab") as torn:
            torn.write(b"item_000.txt\tnot committed\nitem_0")
        state = run.get_state()
        assert state["status"] == "Failed" and "cut off from the workspace" in state["error"]
        assert assert_guarantee(run, _names(60)).status == "Failed"
        # Rows it could not cut (a watcher that failed to) go before the next owner appends.
        with open(path, "ab") as torn:
            torn.write(b"item_001.txt\tnot committed\nitem_0")
        run.resume()
        _wait_for(lambda: ws.store.get_run(run.id)["runner_pid"] != old)
        assert ws.store.owner(run.id).pid != old
    finally:
        os.kill(old, signal.SIGCONT)
    # Woken up, it finds the run taken: it kills its workers and exits, writing nothing.
    _wait_for(lambda: not _alive(old) and not any(_alive(w) for w in workers))
    log = (ws.path / "runs" / run.id / "runner_stdout.txt").read_text()
    assert f"this runner no longer owns run {run.id}" in log
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    outcome = assert_guarantee(run, _names(60))
    assert outcome.done == set(_names(60))
    assert sum(row.endswith(f"\t{old}") for row in outcome.rows) == committed


def test_a_run_waits_for_a_store_another_connection_keeps_locked(
    ws, write_script, files, monkeypatch
):
    monkeypatch.setenv(LEASE_ENV, "120")  # the runner cannot renew while the store is locked
    run = _submit(ws, write_script, files, 40, delay="0.05", process_count_per_node=1)
    _wait_for(lambda: run.get_metrics()["items_done"] >= 3)
    holder = hold_write_lock(ws, LOCKED_SECONDS)
    assert holder.wait(timeout=LOCKED_SECONDS + 60) == 0
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    assert assert_guarantee(run, _names(40)).done == set(_names(40))


def test_a_commit_that_fails_leaves_the_counters_equal_to_the_file(
    ws, write_script, files, monkeypatch
):
    monkeypatch.setenv(BUSY_SECONDS_ENV, "2")  # the runner's writers give up after 2 seconds
    run = _submit(ws, write_script, files, 40, delay="0.05", process_count_per_node=1)
    monkeypatch.delenv(BUSY_SECONDS_ENV)
    _wait_for(lambda: run.get_metrics()["items_done"] >= 3)
    holder = hold_write_lock(ws, LOCKED_SECONDS)
    assert holder.wait(timeout=LOCKED_SECONDS + 60) == 0
    with pytest.raises(ActivityFailedException, match="locked"):
        run.wait_for_completion(timeout_seconds=120)
    before = assert_guarantee(run, _names(40))
    assert 3 <= len(before.done) < 40
    log = (ws.path / "runs" / run.id / "runner_stdout.txt").read_text()
    assert "stayed locked by another connection for 2s" in log
    run.resume()
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    assert assert_guarantee(run, _names(40)).done == set(_names(40))


def _lock_before_the_runner_takes_its_lease(ws, run) -> sqlite3.Connection:
    """Take the store's write lock right after submit(), before anything else: the runner is
    still starting (its interpreter and imports take far longer), so the claim is still the
    submitter's."""
    lock = sqlite3.connect(ws.store.path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    assert ws.store.owner(run.id).pid == os.getpid(), "the runner took its lease first"
    return lock


def _runner_log(ws, run) -> str:
    log = ws.path / "runs" / run.id / "runner_stdout.txt"
    return log.read_text(errors="replace") if log.exists() else ""


def test_a_runner_waits_past_the_busy_budget_for_a_locked_store_to_take_its_lease(
    ws, write_script, files, monkeypatch
):
    monkeypatch.setenv(BUSY_SECONDS_ENV, "1")  # the runner's writers give up after 1 second
    run = _submit(ws, write_script, files, 8, process_count_per_node=1)
    lock = _lock_before_the_runner_takes_its_lease(ws, run)
    monkeypatch.delenv(BUSY_SECONDS_ENV)
    runner = ws.store.get_run(run.id)["runner_pid"]
    try:
        # Before the fix the runner gave up after its budget and died, leaving the run
        # NotStarted until the claim lapsed, then Failed.
        _wait_for(
            lambda: "waits on to take its lease" in _runner_log(ws, run) or not _alive(runner)
        )
        assert run.get_status() == "NotStarted"
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    assert assert_guarantee(run, _names(8)).done == set(_names(8))


def test_a_runner_whose_claim_lapses_while_the_store_is_locked_leaves_the_run_failed(
    ws, write_script, files, monkeypatch
):
    monkeypatch.setenv(BUSY_SECONDS_ENV, "1")
    run = _submit(ws, write_script, files, 8, process_count_per_node=1)
    monkeypatch.delenv(BUSY_SECONDS_ENV)
    with ws.store.transaction() as db:  # the claim made for the runner lapses in 2 seconds
        db.execute("UPDATE leases SET expires=? WHERE run_id=?", (time.time() + 2, run.id))
    lock = _lock_before_the_runner_takes_its_lease(ws, run)
    runner = ws.store.get_run(run.id)["runner_pid"]
    try:
        _wait_for(lambda: not _alive(runner))  # it waits no longer than its claim holds
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    with pytest.raises(ActivityFailedException, match="stayed locked by another connection"):
        run.wait_for_completion(timeout_seconds=120)
    assert not any(_alive(pid) for pid in runners(run.id))


def test_a_runner_that_dies_before_taking_its_claim_leaves_the_run_failed_saying_so(
    ws, write_script, files
):
    run = _submit(ws, write_script, files, 8, process_count_per_node=1)
    lock = _lock_before_the_runner_takes_its_lease(ws, run)  # it cannot take it while killed
    runner = ws.store.get_run(run.id)["runner_pid"]
    os.kill(runner, signal.SIGKILL)
    lock.execute("UPDATE leases SET expires=? WHERE run_id=?", (time.time() + 1, run.id))
    lock.execute("COMMIT")
    lock.close()
    _wait_for(lambda: not _alive(runner))
    # The claim names the submitting process (this one): its pid must not be blamed.
    with pytest.raises(ActivityFailedException, match="never took it over") as raised:
        run.wait_for_completion(timeout_seconds=120)
    assert f"pid {os.getpid()}" not in str(raised.value)
