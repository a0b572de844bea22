"""The run store: schema upgrades of workspaces made by earlier versions."""

from __future__ import annotations

import sqlite3

from jupyter_parallelrun.store import RunStore


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
