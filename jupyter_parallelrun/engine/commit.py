"""Commits of a step run's progress: output rows, mini-batch records, errors, counters, workers.

The exactly-once rule lives here. A commit is one SQLite write transaction: it takes the
store's write lock and checks the runner's lease (the store's fence), appends and fsyncs the
rows of finished mini-batches to the append_row file, and records the mini-batches (each with
the file's new end), their errors, the counters and the workers' state. When any of it fails
the rows are cut back before the lock is let go, so the file never holds a row whose mini-batch
is not recorded, and a runner that lost the run cannot append at all; the next owner cuts the
file back to the last recorded end. The counters in memory move only once a commit succeeded.

Commits are grouped: each fsyncs the output and writes a transaction, so a commit per
mini-batch would cap a run at a few hundred mini-batches a second.

With ``preserve_order`` the scheduler's state hands the results over in input order (it holds
those that finish early), so the committed mini-batches are always the first ones of the input.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..store import RunStore
from .logs import StepLogs, encode_json
from .output import AppendRowWriter

#: Seconds between commits while results keep coming; the first result is committed at once.
COMMIT_INTERVAL = 0.1
#: Seconds between writes of worker state when no mini-batch finished.
STATE_INTERVAL = 1.0


class OutputUnwritable(Exception):
    """The append_row file refused the rows (disk full, file or folder not writable)."""


class StepCommitter:
    """Collects what a step run's workers finish and commits it exactly once.

    Parameters
    ----------
    store, run_id
        Where the step run's records and counters are written.
    writer
        The ``append_row`` output, or None for ``summary_only``.
    logs
        The step's logs (mini-batch records, progress overview).
    workers
        Called at each state write: the rows of the ``workers`` table, the number of
        mini-batches in all (None while not yet counted) and of those held for preserve_order.
    counters
        Counters of mini-batches committed by an earlier runner of this step run (resume).
    """

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        writer: AppendRowWriter | None,
        logs: StepLogs,
        workers: Callable[[], tuple[list[dict[str, Any]], int | None, int]],
        counters: dict[str, int] | None = None,
    ) -> None:
        self.store, self.run_id, self.writer, self.logs = store, run_id, writer, logs
        self._workers = workers
        self.counters = {
            "items_done": 0,
            "items_failed": 0,
            "mb_done": 0,
            "mb_failed": 0,
            "retries": 0,
            **(counters or {}),
        }
        self._results: list[tuple[dict, bytes]] = []
        self._errors: list[dict] = []
        self._retries = 0
        self._last_commit = 0.0
        self._last_state_write = 0.0

    def add_result(self, record: dict[str, Any], rows: bytes) -> None:
        """A mini-batch that finished (done, or failed for good) and its formatted rows."""
        self._results.append((record, rows))

    def add_error(self, error: dict[str, Any]) -> None:
        """A failed try, a failed ``init()`` or a lost process."""
        self._errors.append(error)

    def add_retry(self) -> None:
        """A failed try that will be tried again (counted when its error commits)."""
        self._retries += 1

    def commit(self, force: bool = False) -> None:
        """Commit what finished, unless the last commit was under COMMIT_INTERVAL ago.

        The rows are appended under the store's write lock, after the fence (the runner's
        lease) was checked, and recorded in the same transaction. Memory moves on only once it
        committed: on any failure the rows are cut back (still under the lock), the counters
        stay those of the store, and what finished stays pending for the next commit.

        Raises
        ------
        OutputUnwritable
            The rows could not be appended; nothing of this group was recorded.
        """
        now = time.time()
        if (not self._results and not self._errors) or (
            not force and now - self._last_commit < COMMIT_INTERVAL
        ):
            self.write_state()
            return
        self._last_commit = now
        records = [record for record, _ in self._results]
        # Each spec is written twice (the store's row, the log's record), encoded once.
        specs = [encode_json(record["spec"]) for record in records]
        counters = self._counted(records)
        committed = None if self.writer is None else self.writer.offset
        undo = None if self.writer is None else (lambda: self.writer.truncate(committed))
        with self.store.transaction(on_rollback=undo) as db:
            offset = self._append([rows for _, rows in self._results])
            for record in records:
                record["output_end"] = offset
            self.store.upsert_mini_batches(db, records, specs)
            self.store.add_errors(db, self._errors)
            workers, mb_total = self._write_state(db, counters)
        self._results, self._errors, self._retries = [], [], 0
        self.counters.update(counters)
        self.logs.mini_batches(records, specs)
        self.logs.overview(self.run_id, self.counters, mb_total, workers)

    def _counted(self, records: list[dict[str, Any]]) -> dict[str, int]:
        """The counters once ``records`` and the pending retries are committed."""
        counters = dict(self.counters)
        counters["retries"] += self._retries
        for record in records:
            done = record["status"] == "done"
            counters["mb_done" if done else "mb_failed"] += 1
            counters["items_done"] += record["succeeded"]
            counters["items_failed"] += record["failed"]
        return counters

    def _append(self, payloads: list[bytes]) -> int | None:
        if self.writer is None:
            return None
        try:
            return self.writer.append(payloads)
        except OSError as error:
            raise OutputUnwritable(
                f"cannot write the output file {self.writer.path}: {error}"
            ) from error

    def write_state(self, force: bool = False) -> None:
        """Counters and workers into the store (at most every STATE_INTERVAL unless forced)."""
        if not force and time.time() - self._last_state_write < STATE_INTERVAL:
            return
        with self.store.transaction() as db:
            workers, mb_total = self._write_state(db, self.counters)
        self.logs.overview(self.run_id, self.counters, mb_total, workers)

    def _write_state(self, db, counters: dict[str, int]) -> tuple[list[dict], int | None]:
        self._last_state_write = time.time()
        workers, mb_total, held = self._workers()
        fields = {**counters, "mb_held": held}
        if self.writer is not None:
            fields["output_bytes"] = self.writer.offset
        self.store.upsert_workers(db, workers)
        self.store.update_run(self.run_id, db=db, **fields)
        return workers, mb_total
