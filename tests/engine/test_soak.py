"""Soak: many mini-batches, random injected faults of every kind, the runner killed once.

The entry script draws a fault for every try of every item from a seeded random generator
(the same draws on every run of the test): a raise, ``os._exit``, SIGKILL, SIGSEGV, a call stuck
past ``run_invocation_timeout``, a partial result, or none; some input files hold bad data. With
``run_max_try=3`` most items succeed in the end. A quarter through, the run is canceled and
resumed by two ``resume()`` calls at once (one runner must get it); halfway, its runner is
SIGKILLed and it is resumed again; three quarters through, another connection holds the store's
write lock past what that runner waits, so a commit fails; the last runner waits through a
shorter lock. Issue 3's guarantee must hold after the cancel, the kill, the failed commit and at
the end; with ``preserve_order`` the output must also be in input order each time.

``PARALLELRUN_SOAK_ITEMS`` sets the number of input files (two per mini-batch). The default is
the short form CI runs in about half a minute; the long form is a few thousand mini-batches::

    PARALLELRUN_SOAK_ITEMS=20000 python -m pytest -m soak tests/engine/test_soak.py
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import assert_guarantee, file_dataset, hold_write_lock, race_resumes, submit_step

from jupyter_parallelrun import ActivityFailedException
from jupyter_parallelrun.store import BUSY_SECONDS_ENV
from jupyter_parallelrun.store_lease import LEASE_ENV

ITEMS = int(os.environ.get("PARALLELRUN_SOAK_ITEMS", "4000"))
SEED = os.environ.get("PARALLELRUN_SOAK_SEED", "3")

SOAK = """
import ctypes
import os
import random
import signal
import time

SEED = os.environ["SOAK_SEED"]
TRIES = os.environ["SOAK_TRIES"]
# Every kind of fault at least once, on the first try of these items; the rest at random.
FORCED = {
    "item_00001.txt": "raise",
    "item_00003.txt": "exit",
    "item_00005.txt": "sigkill",
    "item_00007.txt": "sigsegv",
    "item_00009.txt": "stuck",
    "item_00011.txt": "partial",
}
RATES = [
    ("raise", 0.02),
    ("partial", 0.02),
    ("exit", 0.006),
    ("sigkill", 0.006),
    ("sigsegv", 0.006),
    ("stuck", 0.002),
]


def attempt(name):
    # Which try of this item this is: the count of its earlier tries, kept as marker files.
    number = 1
    while True:
        try:
            marker = os.open(
                os.path.join(TRIES, f"{name}.{number}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY
            )
        except FileExistsError:
            number += 1
            continue
        os.close(marker)
        return number


def draw(name, number):
    if number == 1 and name in FORCED:
        return FORCED[name]
    x = random.Random(f"{SEED}:{name}:{number}").random()
    for kind, rate in RATES:
        if x < rate:
            return kind
        x -= rate
    return None


def init():
    pass


def run(mini_batch):
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        kind = draw(name, attempt(name))
        value = int(open(path).read())  # a file of bad data fails here, on every try
        if kind == "partial":
            continue
        if kind == "raise":
            raise RuntimeError(f"injected fault on {name}")
        if kind == "exit":
            os._exit(3)
        if kind == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "sigsegv":
            ctypes.string_at(0)
        if kind == "stuck":
            time.sleep(600)
        rows.append(f"{name}\\t{value}")
    return rows
"""


def assert_in_order(outcome) -> None:
    """With preserve_order: the committed mini-batches are the first ones of the input, and
    the rows follow the input."""
    ids = sorted(mb["mb_id"] for mb in outcome.mini_batches)
    assert ids == list(range(len(ids))), f"committed mini-batches are not a prefix: {ids[-5:]}"
    keys = [row.split("\t", 1)[0] for row in outcome.rows]
    assert keys == sorted(keys), "rows out of input order"


@pytest.mark.soak
@pytest.mark.parametrize("preserve_order", [False, True], ids=["as-finished", "ordered"])
def test_soak_random_faults_a_cancel_and_a_killed_runner_keep_the_guarantee(
    ws, write_script, files, tmp_path, preserve_order, monkeypatch
):
    names = [f"item_{i:05d}.txt" for i in range(ITEMS)]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i, name in enumerate(names):
        (inputs / name).write_text("bad data" if i % 97 == 13 else str(i))
    tries = tmp_path / "tries"
    tries.mkdir()
    run = submit_step(
        ws,
        write_script(SOAK),
        file_dataset(inputs),
        mini_batch_size=2,
        node_count=2,
        process_count_per_node=2,
        run_max_try=3,
        run_invocation_timeout=2,
        heartbeat_timeout=8,
        environment_variables={"SOAK_SEED": SEED, "SOAK_TRIES": str(tries)},
        preserve_order=preserve_order,
    )
    checks = [assert_in_order] if preserve_order else []
    mb_total = (ITEMS + 1) // 2
    step = run.find_step_run("score-step")[0]

    def wait_until(condition) -> None:
        deadline = time.time() + 600
        while not condition():
            assert time.time() < deadline and run.get_status() in ("NotStarted", "Running")
            time.sleep(0.1)

    def finished() -> int:
        """Mini-batches finished: committed, or (preserve_order) held for earlier ones. The
        committed count alone jumps when a slow mini-batch lets the ones behind it go."""
        record = ws.store.get_run(step.id)
        return record["mb_done"] + record["mb_failed"] + record["mb_held"]

    # A quarter in, and after the stuck call of the first items (so no fault hides another),
    # a cancel; then the run is resumed.
    wait_until(
        lambda: (
            finished() >= mb_total // 4
            and any(
                "run_invocation_timeout" in e["exception"] for e in step.get_details()["errors"]
            )
        )
    )
    run.cancel()
    with pytest.raises(ActivityFailedException, match="Canceled"):
        run.wait_for_completion(timeout_seconds=60)
    canceled = assert_guarantee(run, names)
    for check in checks:
        check(canceled)
    assert canceled.status == "Canceled" and len(canceled.mini_batches) < mb_total
    race_resumes(ws, run, tmp_path)  # two resume() calls at once: one runner

    # Halfway from the cancel to the end, the runner is killed; the run is resumed again.
    wait_until(lambda: finished() >= (len(canceled.mini_batches) + mb_total) // 2)
    os.kill(ws.store.get_run(run.id)["runner_pid"], signal.SIGKILL)
    with pytest.raises(ActivityFailedException, match="runner process .* ended"):
        run.wait_for_completion(timeout_seconds=60)
    before = assert_guarantee(run, names)
    for check in checks:
        check(before)
    assert before.status == "Failed" and len(before.mini_batches) < mb_total
    if preserve_order:  # what finished may all wait behind one slow mini-batch, and is lost
        assert len(before.mini_batches) >= len(canceled.mini_batches)
    else:
        assert len(before.mini_batches) > len(canceled.mini_batches)

    # This runner waits 2 s at most for a locked store; another connection holds the lock for
    # longer, three quarters of the way through: its commit fails, and the run with it. (Its
    # lease outlasts the lock: the commit, not a lapsed lease, is what fails here.)
    monkeypatch.setenv(BUSY_SECONDS_ENV, "2")
    monkeypatch.setenv(LEASE_ENV, "12")
    run.resume()
    monkeypatch.delenv(BUSY_SECONDS_ENV)
    monkeypatch.setenv(LEASE_ENV, "6")
    # Running: the new runner holds its lease (a killed ordered runner's held count lingers in
    # the store, so the count alone can be met before the new runner has even started).
    wait_until(
        lambda: (
            run.get_status() == "Running"
            and finished() >= (len(before.mini_batches) + mb_total) // 2
        )
    )
    assert hold_write_lock(ws, 6).wait(timeout=60) == 0
    with pytest.raises(ActivityFailedException, match="locked"):
        run.wait_for_completion(timeout_seconds=60)
    locked = assert_guarantee(run, names)
    for check in checks:
        check(locked)
    assert locked.status == "Failed" and len(locked.mini_batches) < mb_total

    # The last runner waits for the store through a lock of a few seconds, and carries on.
    run.resume()
    wait_until(lambda: finished() >= len(locked.mini_batches) + 10)
    assert hold_write_lock(ws, 4).wait(timeout=60) == 0
    assert run.wait_for_completion(timeout_seconds=1200) == "Completed"
    after = assert_guarantee(run, names)
    for check in checks:
        check(after)
    assert len(after.mini_batches) == mb_total
    assert len(after.done) > 0.8 * ITEMS
    # Every kind of fault happened, and each was recorded with its cause.
    exceptions = [e["exception"] for e in after.errors]
    assert any("RuntimeError: injected fault" in e for e in exceptions)
    assert any("ValueError: invalid literal for int()" in e for e in exceptions)
    assert any("exceeded run_invocation_timeout=2s" in e for e in exceptions)
    assert {3, -9, -11} <= {e["exitCode"] for e in after.errors}
    assert any(mb["status"] == "done" and mb["failed"] for mb in after.mini_batches)
