"""The run store's database file: its schema and upgrades, its mode, and waiting for the lock.

``store.py``'s :class:`~jupyter_parallelrun.store.RunStore` reads and writes run state through
the connections made here. What is SQLite's alone lives here: the tables, the columns older
stores gain when opened, a file readable by its owner only (it holds datastore credentials),
and a write transaction that waits, with backoff, while another connection holds the lock.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS registry (
    kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
    spec TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (kind, name, version)
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, parent_id TEXT, experiment TEXT NOT NULL, name TEXT,
    kind TEXT NOT NULL, status TEXT NOT NULL, created REAL NOT NULL,
    started REAL, ended REAL, spec TEXT, tags TEXT, error TEXT, runner_pid INTEGER,
    reused_from TEXT, fingerprint TEXT, definition TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    items_total INTEGER, items_done INTEGER NOT NULL DEFAULT 0,
    items_failed INTEGER NOT NULL DEFAULT 0, mb_total INTEGER,
    mb_done INTEGER NOT NULL DEFAULT 0, mb_failed INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0, output_bytes INTEGER NOT NULL DEFAULT 0,
    mb_held INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_by_parent ON runs (parent_id);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (experiment, created);
CREATE TABLE IF NOT EXISTS mini_batches (
    run_id TEXT NOT NULL, mb_id INTEGER NOT NULL, spec TEXT, n_items INTEGER,
    status TEXT NOT NULL, tries INTEGER NOT NULL DEFAULT 0, worker TEXT,
    started REAL, ended REAL, succeeded INTEGER, failed INTEGER, error TEXT,
    output_end INTEGER,
    PRIMARY KEY (run_id, mb_id)
);
CREATE TABLE IF NOT EXISTS workers (
    run_id TEXT NOT NULL, name TEXT NOT NULL, node_id INTEGER NOT NULL, pid INTEGER,
    state TEXT NOT NULL, current_mb INTEGER, done INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0, retries INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0, heartbeat REAL, rss INTEGER, cpu REAL,
    started REAL, ended REAL, exit_code INTEGER, error TEXT, host TEXT,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS errors (
    run_id TEXT NOT NULL, mb_id INTEGER, try INTEGER, item TEXT, worker TEXT,
    exception TEXT, traceback TEXT, time REAL NOT NULL, pid INTEGER, exit_code INTEGER
);
CREATE INDEX IF NOT EXISTS errors_by_run ON errors (run_id);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,
    description TEXT, worker TEXT, time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics (run_id);
-- RunDetails groups a run's errors by their text on every change: from this index alone, not
-- from rows that carry long tracebacks.
CREATE INDEX IF NOT EXISTS errors_by_exception ON errors (run_id, exception, time, mb_id);
CREATE TABLE IF NOT EXISTS leases (
    run_id TEXT PRIMARY KEY, token TEXT NOT NULL, epoch INTEGER NOT NULL, host TEXT,
    pid INTEGER, since REAL NOT NULL, renewed REAL NOT NULL, expires REAL NOT NULL,
    released REAL
);
"""

#: The columns of a mini-batch's row but its spec, in the order UPSERT_MINI_BATCH takes them,
#: then the spec (as JSON).
MINI_BATCH_FIELDS = (
    *("run_id", "mb_id", "n_items", "status", "tries", "worker", "started", "ended"),
    *("succeeded", "failed", "error", "output_end"),
)
UPSERT_MINI_BATCH = (
    f"INSERT OR REPLACE INTO mini_batches ({', '.join(MINI_BATCH_FIELDS)}, spec) "
    f"VALUES ({', '.join('?' * (len(MINI_BATCH_FIELDS) + 1))})"
)

#: Columns added to the schema since workspaces were first made: a workspace folder outlives
#: upgrades of the package (the demo reuses its folder), so older stores gain them when opened.
_ADDED_COLUMNS = (
    ("runs", "definition TEXT"),
    ("workers", "host TEXT"),
    ("errors", "pid INTEGER"),
    ("errors", "exit_code INTEGER"),
    ("runs", "mb_held INTEGER NOT NULL DEFAULT 0"),
)

#: Rows an older store wrote in a format since changed: (what finds them, what brings them up to
#: date). Compute targets have named the backend their workers run on (the runner finds it by
#: that name) since the backend registry; those registered before it are Dask clusters or this
#: machine, by their type. Looked for first, so opening an up-to-date store never writes.
_UPGRADED_ROWS = (
    (
        "SELECT 1 FROM registry WHERE kind = 'compute' AND json_extract(spec, '$.backend') IS NULL",
        "UPDATE registry SET spec = json_set(spec, '$.backend', "
        "CASE json_extract(spec, '$.type') WHEN 'DaskCompute' THEN 'dask' ELSE 'local' END) "
        "WHERE kind = 'compute' AND json_extract(spec, '$.backend') IS NULL",
    ),
)


#: How long a writer keeps trying to take a store locked by another connection (seconds; the
#: environment variable overrides it), and how long one try waits (SQLite's busy timeout).
BUSY_SECONDS_ENV = "JUPYTER_PARALLELRUN_STORE_BUSY_SECONDS"
BUSY_SECONDS = 120.0
BUSY_TRY_SECONDS = 5.0


class StoreBusy(sqlite3.OperationalError):
    """The store stayed locked by another connection for longer than a writer waits."""


def busy_seconds() -> float:
    value = os.environ.get(BUSY_SECONDS_ENV)
    return BUSY_SECONDS if not value else float(value)


def owner_only(path: Path) -> None:
    """Make the database readable by its owner only, before SQLite first opens it.

    It holds the credentials of registered datastores (account keys, SAS tokens). A new file is
    created 0600; an existing one, and its WAL and shared-memory files, are tightened to 0600
    (SQLite gives the files it creates beside the database the database's own mode). A user
    who can open but does not own the store leaves the mode to its owner.

    An existing database is never opened here: closing any descriptor of it would drop every
    SQLite lock this process holds on it (POSIX locks belong to the process, not the descriptor).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if file.stat().st_mode & 0o077:
                os.chmod(file, 0o600)


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the store at ``path`` in WAL mode (readers never block the writer),
    whose rows read as ``sqlite3.Row``, committing only what a transaction commits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    timeout = min(BUSY_TRY_SECONDS, busy_seconds())
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def create_schema(db: sqlite3.Connection) -> set[str]:
    """Create the tables that are missing, add the columns an older store lacks and bring its
    older rows up to date; returns the columns of ``runs``."""
    db.executescript(SCHEMA)
    for table, column in _ADDED_COLUMNS:
        present = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
        if column.split()[0] not in present:
            with contextlib.suppress(sqlite3.OperationalError):  # another process was first
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
    for stale, upgrade in _UPGRADED_ROWS:
        if db.execute(stale).fetchone() is not None:
            with contextlib.suppress(sqlite3.OperationalError):  # locked: the next open does it
                db.execute(upgrade)
    return {row["name"] for row in db.execute("PRAGMA table_info(runs)")}


def begin(db: sqlite3.Connection, path: Path) -> None:
    """``BEGIN IMMEDIATE`` on ``db``: take the write lock, waiting with backoff while another
    connection holds it, for up to :func:`busy_seconds`; then raise :class:`StoreBusy`."""
    budget = busy_seconds()
    deadline, pause = time.monotonic() + budget, 0.05
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
            if time.monotonic() >= deadline:
                raise StoreBusy(
                    f"the run store {path} stayed locked by another connection for "
                    f"{budget:g}s ({BUSY_SECONDS_ENV} sets how long writers wait)"
                ) from error
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 2.0)
