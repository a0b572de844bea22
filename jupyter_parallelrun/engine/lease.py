"""Ownership of a pipeline run in practice: the runner's lease keeper, and the verdict of a
watcher that finds the lease lapsed.

The runner takes over the claim that ``submit()`` or ``resume()`` made for it, renews the lease
from a thread of its own, and fences every write it makes with it (``RunStore.fence``): once
the lease is gone, the next write raises :class:`LeaseLost` and the runner kills its workers and
exits without writing anything more. A watcher (``get_state()``, ``cancel()``, ``resume()``)
that finds a run not final and its lease lapsed marks the run Failed and releases the lease in
one transaction, so a runner that was only cut off and comes back finds itself fenced out.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..store import FINAL_STATUSES, RunStore, StoreBusy
from ..store_lease import (
    RENEWALS_PER_LEASE,
    LeaseLost,
    current,
    holds,
    lease_seconds,
    lost_runner_error,
    release,
)
from ..store_lease import renew as renew_lease

#: A watcher that waited longer than this for the store's write lock does not act on a lapsed
#: lease in that transaction: the runner was waiting for the same lock to renew it.
WAITED_TOO_LONG = 1.0


class RunnerLease:
    """The lease the runner holds on its pipeline run.

    Parameters
    ----------
    store
        The runner's store; :meth:`take` makes this lease its fence.
    run_id
        The pipeline run.
    token
        The claim's token, made by ``submit()`` or ``resume()`` for this runner.
    """

    def __init__(self, store: RunStore, run_id: str, token: str) -> None:
        self.store, self.run_id, self.token = store, run_id, token
        self.seconds = lease_seconds()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name="lease", daemon=True)

    def take(self, waiting: Callable[[str], None] | None = None) -> None:
        """Take over the claim and start renewing.

        A store another connection keeps locked is waited for as long as the claim holds, past
        the store's busy budget: a runner that gave up after the budget could not mark the run
        either, and the run would read NotStarted, with no runner, until the claim lapsed.

        Parameters
        ----------
        waiting
            Gets a line each time the busy budget runs out while the claim still holds (the
            runner's own output, by default).

        Raises
        ------
        LeaseLost
            The claim is not this runner's: another runner owns the run, or a watcher gave it up.
        StoreBusy
            The store stayed locked until the claim lapsed.
        """
        while True:
            try:
                with self.store.transaction() as db:
                    if not renew_lease(db, self.run_id, self.token, self.seconds, adopt=True):
                        raise LeaseLost(self._lost_message(db))
                break
            except StoreBusy as error:
                # Read without the write lock, which WAL readers never wait for.
                claim = self.store.owner(self.run_id)
                if claim is None or not claim.live():
                    raise
                until = time.strftime("%H:%M:%S UTC", time.gmtime(claim.expires))
                (waiting or _print)(
                    f"{error}; the runner waits on to take its lease while its claim holds "
                    f"(until {until})"
                )
        self.store.fence = self.check
        self._thread.start()

    def fail(self, error: str) -> None:
        """Mark the run Failed with ``error`` and let the lease go, if the claim is still this
        runner's, taken over or not: a runner that gave up waiting for its lease must not end
        a run that a watcher settled and someone resumed since."""
        with self.store.transaction() as db:
            if holds(db, self.run_id, self.token):
                self.store.update_run(
                    self.run_id, db=db, status="Failed", ended=time.time(), error=error
                )
                self.release(db)

    def check(self, db: sqlite3.Connection) -> None:
        """The store's fence: raises LeaseLost unless this runner still holds the lease."""
        if self.lost.is_set() or not holds(db, self.run_id, self.token):
            self.lost.set()
            raise LeaseLost(self._lost_message(db))

    def release(self, db: sqlite3.Connection) -> None:
        """Let the lease go inside the runner's last transaction (the run's final status)."""
        release(db, self.run_id)
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _renew_loop(self) -> None:
        interval = pause = self.seconds / RENEWALS_PER_LEASE
        while not self._stop.wait(pause):
            try:
                # The fence checks the token first; renewing then cannot fail.
                with self.store.transaction() as db:
                    renew_lease(db, self.run_id, self.token, self.seconds)
                pause = interval
            except LeaseLost:
                return
            except sqlite3.Error:
                # A busy or failing store: try again at once, so that this thread is waiting
                # for the lock when it comes free (a watcher that waited too yields to it).
                pause = 0.05

    def _lost_message(self, db: sqlite3.Connection) -> str:
        owner = current(db, self.run_id)
        now = time.time()
        if owner is None or owner.released is not None:
            holder = "its lease was released (the run was marked Failed or Canceled without it)"
        else:
            holder = f"the run is owned by {owner.describe(now)}"
        return f"this runner no longer owns run {self.run_id}: {holder}"


def _print(line: str) -> None:
    print(line, flush=True)  # the runner's output is its log (runner_stdout.txt)


def settle_if_unowned(
    store: RunStore, run_id: str, status: str, log: Path, outputs: dict[str, Path]
) -> bool:
    """End pipeline run ``run_id`` and its unfinished steps with ``status`` if no runner owns
    it; returns whether it did. Nothing happens to a final run or one whose lease is live.

    Under the write lock, with the lease let go in the same transaction, the caller is the
    run's owner for that moment: it cuts each unfinished step's append_row file (``outputs``,
    by step run id) back to its last committed row (a runner killed mid-commit leaves rows
    after it), so the counters of the ended run equal its files. ``log`` is the runner's
    output: its last line goes into the error.
    """
    owner = store.owner(run_id)
    if owner is not None and owner.live():
        return False  # the common case, read without taking the write lock
    asked = time.monotonic()
    with store.transaction() as db:
        run = store.get_run(run_id)
        owner = current(db, run_id)
        now = time.time()
        if run is None or run["status"] in FINAL_STATUSES or (owner and owner.live(now)):
            return False
        if time.monotonic() - asked > WAITED_TOO_LONG and status == "Failed":
            return False  # the store was busy: give its runner the first turn to renew
        if status == "Canceled":
            error = "canceled on request (no runner owned the run)"
        else:
            error = lost_runner_error(owner)
            lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
            error += f": {lines[-1]}" if lines else ""
        release(db, run_id)
        for record in [run, *store.list_runs(parent_id=run_id)]:
            if record["status"] not in FINAL_STATUSES:
                if record["id"] in outputs:
                    _cut_back(store, record["id"], outputs[record["id"]])
                store.update_run(record["id"], db=db, status=status, ended=now, error=error)
    return True


def _cut_back(store: RunStore, step_id: str, path: Path) -> None:
    """Cut a step's append_row file back to its last committed row."""
    committed = max((mb["output_end"] or 0 for mb in store.mini_batches(step_id)), default=0)
    with contextlib.suppress(OSError):  # the next owner cuts it again before it appends
        if path.stat().st_size > committed:
            os.truncate(path, committed)
