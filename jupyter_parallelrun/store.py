"""The run store: the one place that reads and writes workspace state.

Everything a notebook, a terminal or a worker needs to know about a workspace lives in one
SQLite database (``store.sqlite`` in the workspace folder): the registries (datastores,
datasets, models, environments, compute targets, experiments), the runs with their counters,
every mini-batch, every worker process and every error. The database runs in WAL mode so the
runner can write while any number of readers watch.

Writers batch their changes: the runner commits the state of many mini-batches, the workers'
heartbeats and the errors of one scheduling round in a single transaction. A writer that finds
the store locked by another connection waits for it (SQLite's busy timeout, then retries with
backoff) rather than failing; the schema and that waiting are ``store_database``'s. One runner
at a time owns a pipeline run: it holds the run's lease in the ``leases`` table (see
``store_lease``), and :meth:`RunStore.owner` tells any reader who.
"""

from __future__ import annotations

import contextlib
import json
import operator
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import store_database
from .metrics import fold_metrics
from .store_database import BUSY_SECONDS_ENV, StoreBusy, begin, connect, create_schema, owner_only
from .store_lease import RunOwner

#: The names other modules take from here; the store's database file is ``store_database``'s.
__all__ = ["BUSY_SECONDS_ENV", "FINAL_STATUSES", "RunStore", "StoreBusy"]

#: The statuses a run ends in, as Azure ML names them.
FINAL_STATUSES = ("Completed", "Failed", "Canceled")

_JSON_COLUMNS = {"spec", "tags"}
_mb_fields = operator.itemgetter(*store_database.MINI_BATCH_FIELDS)


def _encode(column: str, value: Any) -> Any:
    return json.dumps(value) if column in _JSON_COLUMNS and value is not None else value


def _decode_row(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    for column in _JSON_COLUMNS & record.keys():
        if record[column] is not None:
            record[column] = json.loads(record[column])
    return record


class RunStore:
    """Access to one workspace's ``store.sqlite``; safe to share between threads.

    Parameters
    ----------
    path : str or Path
        The database file. Created with its schema when missing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        owner_only(self.path)
        #: Set by the runner that owns a run: called in every transaction, right after the
        #: write lock is taken; it raises when the runner no longer holds its lease.
        self.fence: Callable[[sqlite3.Connection], None] | None = None
        self._run_columns = create_schema(self._connect())

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = connect(self.path)
        return db

    @contextmanager
    def transaction(
        self, on_rollback: Callable[[], None] | None = None
    ) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything done on the yielded connection commits together.

        The write lock is taken first (waiting while another connection holds it) and the
        ``fence`` checked under it. When anything fails, ``on_rollback`` runs before the
        ROLLBACK, still under the lock, so what it undoes outside the store (cutting rows off
        the output file) cannot interleave with the next owner's writes.
        """
        db = self._connect()
        begin(db, self.path)
        try:
            if self.fence is not None:
                self.fence(db)
            yield db
            db.execute("COMMIT")
        except BaseException:
            if on_rollback is not None:
                on_rollback()
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- registries -------------------------------------------------------------------------

    def register(
        self, kind: str, name: str, spec: dict[str, Any], *, new_version: bool = True
    ) -> int:
        """Store ``spec`` under ``kind``/``name``; returns its version.

        With ``new_version`` the spec gets the next version number; without it the latest
        version is replaced (version 1 when there is none).
        """
        with self.transaction() as db:
            (latest,) = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM registry WHERE kind=? AND name=?",
                (kind, name),
            ).fetchone()
            version = latest + 1 if new_version or latest == 0 else latest
            db.execute(
                "INSERT OR REPLACE INTO registry VALUES (?, ?, ?, ?, ?)",
                (kind, name, version, json.dumps(spec), time.time()),
            )
        return version

    def lookup(self, kind: str, name: str, version: int | None = None) -> tuple[int, dict] | None:
        """The spec of ``kind``/``name`` at ``version`` (latest when None), or None."""
        query = "SELECT version, spec FROM registry WHERE kind=? AND name=?"
        args: tuple = (kind, name)
        if version is None:
            query += " ORDER BY version DESC LIMIT 1"
        else:
            query += " AND version=?"
            args += (int(version),)
        row = self._connect().execute(query, args).fetchone()
        return None if row is None else (row["version"], json.loads(row["spec"]))

    def entries(self, kind: str, *, latest_only: bool = True) -> list[tuple[str, int, dict]]:
        """``(name, version, spec)`` of every entry of ``kind``, sorted by name then version."""
        rows = self._connect().execute(
            "SELECT name, version, spec FROM registry WHERE kind=? ORDER BY name, version", (kind,)
        )
        found = [(r["name"], r["version"], json.loads(r["spec"])) for r in rows]
        if latest_only:
            latest = {name: (name, version, spec) for name, version, spec in found}
            found = list(latest.values())
        return found

    def unregister(self, kind: str, name: str) -> None:
        """Forget every version of ``kind``/``name``."""
        with self.transaction() as db:
            db.execute("DELETE FROM registry WHERE kind=? AND name=?", (kind, name))

    # -- runs -------------------------------------------------------------------------------

    def create_run(self, db: sqlite3.Connection | None = None, **fields: Any) -> None:
        """Insert a run (inside ``db``'s transaction when given); ``id``, ``experiment``,
        ``kind`` and ``status`` are required."""
        fields.setdefault("created", time.time())
        columns = list(fields)
        unknown = set(columns) - self._run_columns
        if unknown:
            raise KeyError(f"unknown run fields: {sorted(unknown)}")
        sql = f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        with contextlib.nullcontext(db) if db is not None else self.transaction() as tx:
            tx.execute(sql, [_encode(c, fields[c]) for c in columns])

    def update_run(self, run_id: str, db: sqlite3.Connection | None = None, **fields: Any) -> None:
        """Set fields of a run (inside ``db``'s transaction when given)."""
        assignments = ", ".join(f"{c}=?" for c in fields)
        args = [_encode(c, v) for c, v in fields.items()] + [run_id]
        sql = f"UPDATE runs SET {assignments} WHERE id=?"
        if db is not None:
            db.execute(sql, args)
            return
        with self.transaction() as tx:
            tx.execute(sql, args)

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        row = self._connect().execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return None if row is None else _decode_row(row)

    def list_runs(
        self,
        *,
        experiment: str | None = None,
        parent_id: str | None = None,
        top_level: bool = False,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Runs, newest first (steps of a pipeline in the order they were created)."""
        where, args = [], []
        if experiment is not None:
            where.append("experiment=?")
            args.append(experiment)
        if parent_id is not None:
            where.append("parent_id=?")
            args.append(parent_id)
        if top_level:
            where.append("parent_id IS NULL")
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created ASC, rowid ASC" if parent_id else " ORDER BY created DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_decode_row(r) for r in self._connect().execute(sql, args)]

    def completed_with_definition(self, definition: str) -> bool:
        """Whether a step run of this definition (script, settings, arguments) completed."""
        row = (
            self._connect()
            .execute(
                "SELECT 1 FROM runs WHERE definition=? AND status='Completed' LIMIT 1",
                (definition,),
            )
            .fetchone()
        )
        return row is not None

    def find_reusable(self, fingerprint: str) -> dict[str, Any] | None:
        """The newest completed step run with this fingerprint, if any."""
        row = (
            self._connect()
            .execute(
                "SELECT * FROM runs WHERE fingerprint=? AND status='Completed' "
                "ORDER BY created DESC LIMIT 1",
                (fingerprint,),
            )
            .fetchone()
        )
        return None if row is None else _decode_row(row)

    def owner(self, run_id: str) -> RunOwner | None:
        """Who owns the pipeline run ``run_id`` (or the one of step run ``run_id``); read only.

        Returns None for a run no runner ever claimed. ``owner(run_id).live()`` says whether a
        runner holds it now; ``expires``, ``host``, ``pid`` and ``since`` say until when and who
        (for messages such as "runner lost"). Writes nothing.
        """
        row = (
            self._connect()
            .execute(
                "SELECT leases.* FROM runs JOIN leases "
                "ON leases.run_id = COALESCE(runs.parent_id, runs.id) WHERE runs.id=?",
                (run_id,),
            )
            .fetchone()
        )
        return None if row is None else RunOwner.from_row(row)

    # -- mini-batches, workers, errors ------------------------------------------------------

    def mini_batches(self, run_id: str, status: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM mini_batches WHERE run_id=?"
        args: list = [run_id]
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        rows = self._connect().execute(sql + " ORDER BY mb_id", args)
        return [_decode_mini_batch(r) for r in rows]

    def upsert_mini_batches(self, db: sqlite3.Connection, records: list, specs: list) -> None:
        """Write mini-batch ``records``, each with its spec as JSON (``specs``)."""
        rows = [(*_mb_fields(r), spec) for r, spec in zip(records, specs, strict=True)]
        db.executemany(store_database.UPSERT_MINI_BATCH, rows)

    def workers(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._connect().execute(
            "SELECT * FROM workers WHERE run_id=? ORDER BY node_id, name", (run_id,)
        )
        return [dict(r) for r in rows]

    def upsert_workers(self, db: sqlite3.Connection, records: Iterable[dict]) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO workers (run_id, name, node_id, pid, state, current_mb, done, "
            "failed, retries, restarts, heartbeat, rss, cpu, started, ended, exit_code, error, "
            "host) VALUES (:run_id, :name, :node_id, :pid, :state, :current_mb, :done, :failed, "
            ":retries, :restarts, :heartbeat, :rss, :cpu, :started, :ended, :exit_code, :error, "
            ":host)",
            list(records),
        )

    def errors(self, run_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM errors WHERE run_id=? ORDER BY time DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [dict(r) for r in self._connect().execute(sql, (run_id,))]

    def add_errors(self, db: sqlite3.Connection, records: Iterable[dict]) -> None:
        db.executemany(
            "INSERT INTO errors (run_id, mb_id, try, item, worker, exception, traceback, time, "
            "pid, exit_code) VALUES (:run_id, :mb_id, :try, :item, :worker, :exception, "
            ":traceback, :time, :pid, :exit_code)",
            list(records),
        )

    # -- for the views: bounded reads, however many rows a run has -------------------------

    def version(self, table: str, run_id: str) -> tuple[int, int]:
        """``(count, newest rowid)`` of the run's rows in ``table`` ("errors" or "metrics"):
        it changes whenever a row is added, so a view reads them again only then."""
        name = {"errors": "errors", "metrics": "metrics"}[table]
        sql = f"SELECT COUNT(*), COALESCE(MAX(rowid), 0) FROM {name} WHERE run_id=?"
        row = self._connect().execute(sql, (run_id,)).fetchone()
        return row[0], row[1]

    def error_groups(self, run_id: str, groups: int, rows: int) -> tuple[int, list[dict]]:
        """How many distinct ``exception`` texts the run has; its ``groups`` latest ones with
        count ``n``, ``first`` and ``last`` time, ``n_mb`` mini-batches, their ``rows`` latest
        errors (``latest``) and the newest ``traceback``. Read from ``errors_by_exception``."""
        db = self._connect()
        found = db.execute(
            "SELECT exception, COUNT(*) n, MIN(time) first, MAX(time) last, "
            "COUNT(DISTINCT mb_id) n_mb FROM errors WHERE run_id=? GROUP BY exception",
            (run_id,),
        ).fetchall()
        latest = sorted(map(dict, found), key=lambda g: g["last"], reverse=True)[: int(groups)]
        for group in latest:
            group["latest"] = [
                dict(r)
                for r in db.execute(
                    "SELECT mb_id, try, item, worker, time, traceback FROM errors WHERE rowid IN "
                    "(SELECT rowid FROM errors WHERE run_id=? AND exception IS ? "
                    "ORDER BY time DESC LIMIT ?) ORDER BY time DESC",
                    (run_id, group["exception"], int(rows)),
                )
            ]
            group["traceback"] = group["latest"][0].pop("traceback")
            for row in group["latest"][1:]:
                del row["traceback"]
        return len(found), latest

    def finished_mini_batches_after(self, run_id: str, rowid: int) -> list[tuple]:
        """``(rowid, mb_id, worker, started, ended, done, items)`` of the run's finished
        mini-batches written after ``rowid`` (a rewritten record gets a new rowid)."""
        return (
            self._connect()
            .execute(
                "SELECT rowid, mb_id, worker, started, ended, status='done', "
                "COALESCE(succeeded, 0) + COALESCE(failed, 0) FROM mini_batches "
                # "+run_id": read the rows after `rowid`, not every row of the run through its key.
                "WHERE rowid>? AND +run_id=? AND ended IS NOT NULL ORDER BY rowid",
                (int(rowid), run_id),
            )
            .fetchall()
        )

    # -- metrics (Run.log, log_list, log_row) ------------------------------------------------

    def add_metric(
        self,
        run_id: str,
        name: str,
        kind: str,
        value: Any,
        description: str | None = None,
        worker: str | None = None,
    ) -> None:
        """Record one ``Run.log`` (kind ``"scalar"``), ``log_list`` or ``log_row`` call."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO metrics (run_id, name, kind, value, description, worker, time) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, name, kind, json.dumps(value), description, worker, time.time()),
            )

    def run_metrics(self, run_id: str) -> dict[str, Any]:
        """The metrics logged to a run and, for a pipeline run, to its steps, as Azure's
        ``get_metrics()`` shows them (see :func:`fold_metrics`); read-only, for any viewer."""
        ids = [run_id, *(r["id"] for r in self.list_runs(parent_id=run_id))]
        rows = self._connect().execute(
            f"SELECT name, kind, value FROM metrics WHERE run_id IN ({', '.join('?' * len(ids))}) "
            "ORDER BY time, rowid",
            ids,
        )
        return fold_metrics((r["name"], r["kind"], json.loads(r["value"])) for r in rows)


def _decode_mini_batch(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    if record["spec"] is not None:
        record["spec"] = json.loads(record["spec"])
    return record
