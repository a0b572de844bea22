"""The run store: schema upgrades of workspaces made by earlier versions."""

from __future__ import annotations

import os
import socket
import sqlite3
import time

import pytest

from jupyter_parallelrun.store import RunStore
from jupyter_parallelrun.store_lease import (
    LeaseLost,
    RunAlreadyRunning,
    claim,
    holds,
    release,
    renew,
)


def test_a_store_made_before_new_columns_gains_them_and_keeps_its_rows(tmp_path):
    path = tmp_path / "store.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE errors (run_id TEXT NOT NULL, mb_id INTEGER, try INTEGER, item TEXT, "
            "worker TEXT, exception TEXT, traceback TEXT, time REAL NOT NULL)"
        )
        db.execute("INSERT INTO errors (run_id, time) VALUES ('old', 1.0)")
    store = RunStore(path)
    error = {"run_id": "new", "mb_id": 1, "try": 1, "item": "1 file: a.png", "worker": "p0"}
    error |= {"exception": "killed", "traceback": None, "time": 2.0, "pid": 42, "exit_code": -9}
    with store.transaction() as db:
        store.add_errors(db, [error])
    assert store.errors("new")[0]["exit_code"] == -9
    assert store.errors("old")[0]["pid"] is None


def test_a_runs_table_made_before_mb_held_gains_it_at_zero(tmp_path):
    path = tmp_path / "store.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE runs (id TEXT PRIMARY KEY, parent_id TEXT, experiment TEXT NOT NULL, "
            "name TEXT, kind TEXT NOT NULL, status TEXT NOT NULL, created REAL NOT NULL, "
            "started REAL, ended REAL, spec TEXT, tags TEXT, error TEXT, runner_pid INTEGER, "
            "reused_from TEXT, fingerprint TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0, "
            "items_total INTEGER, items_done INTEGER NOT NULL DEFAULT 0, "
            "items_failed INTEGER NOT NULL DEFAULT 0, mb_total INTEGER, "
            "mb_done INTEGER NOT NULL DEFAULT 0, mb_failed INTEGER NOT NULL DEFAULT 0, "
            "retries INTEGER NOT NULL DEFAULT 0, output_bytes INTEGER NOT NULL DEFAULT 0)"
        )
        db.execute(
            "INSERT INTO runs (id, experiment, kind, status, created) "
            "VALUES ('old', 'e', 'step', 'Completed', 1.0)"
        )
    store = RunStore(path)
    assert store.get_run("old")["mb_held"] == 0 and store.get_run("old")["definition"] is None
    store.update_run("old", mb_held=3)
    assert store.get_run("old")["mb_held"] == 3


def _claimed_run(store: RunStore, seconds: float) -> str:
    store.create_run(id="pipe", experiment="e", kind="pipeline", status="Running")
    store.create_run(id="step", parent_id="pipe", experiment="e", kind="step", status="Running")
    with store.transaction() as db:
        return claim(db, "pipe", seconds)


def test_the_owner_of_a_run_and_of_its_steps_is_read_without_writing(tmp_path):
    store = RunStore(tmp_path / "store.sqlite")
    store.create_run(id="never", experiment="e", kind="pipeline", status="NotStarted")
    _claimed_run(store, 30)
    db = store._connect()
    changes = db.total_changes
    owner, step_owner = store.owner("pipe"), store.owner("step")
    assert owner == step_owner and owner.live()
    assert (owner.host, owner.pid, owner.epoch) == (socket.gethostname(), os.getpid(), 1)
    assert owner.since <= owner.renewed < owner.expires and owner.released is None
    assert "expires in" in owner.describe() and f"pid {os.getpid()}" in owner.describe()
    assert store.owner("never") is None and store.owner("no such run") is None
    assert db.total_changes == changes and not db.in_transaction
    with store.transaction() as tx:
        release(tx, "pipe")
    assert not store.owner("pipe").live() and "released" in store.owner("pipe").describe()


def test_a_live_lease_refuses_a_second_claim_and_a_lapsed_one_passes_to_the_next(tmp_path):
    store = RunStore(tmp_path / "store.sqlite")
    first = _claimed_run(store, 30)
    refused = pytest.raises(RunAlreadyRunning, match="run pipe is already running: runner pid")
    with refused, store.transaction() as db:
        claim(db, "pipe", 30)
    with store.transaction() as db:
        db.execute("UPDATE leases SET expires=? WHERE run_id='pipe'", (time.time() - 1,))
    assert not store.owner("pipe").live() and "expired" in store.owner("pipe").describe()
    with store.transaction() as db:
        second = claim(db, "pipe", 30)
        assert holds(db, "pipe", second) and not holds(db, "pipe", first)
        assert not renew(db, "pipe", first, 30)
    assert store.owner("pipe").epoch == 2


def test_a_fenced_store_writes_nothing_once_its_lease_is_taken(tmp_path):
    store = RunStore(tmp_path / "store.sqlite")
    token = _claimed_run(store, 30)
    fenced = RunStore(store.path)

    def fence(db):
        if not holds(db, "pipe", token):
            raise LeaseLost("taken")

    fenced.fence = fence
    fenced.update_run("step", items_done=1)
    with store.transaction() as db:
        release(db, "pipe")
        claim(db, "pipe", 30)
    cut = []
    refused = pytest.raises(LeaseLost)
    with refused, fenced.transaction(on_rollback=lambda: cut.append(True)) as db:
        fenced.update_run("step", db=db, items_done=2)
    assert store.get_run("step")["items_done"] == 1 and cut == [True]
