"""Run leases: at most one runner owns a pipeline run, enforced in the store.

A runner owns a pipeline run while it holds the run's lease, a row of the store's ``leases``
table: a random token, an epoch that grows with every claim, who holds it (host and pid, for
messages only) and an expiry the runner keeps pushing forward. A claim is atomic: inside one
write transaction it checks that no live lease exists and writes the new one, so of two
``resume()`` calls at the same moment one gets the run and the other an error naming the owner.
Every write the owning runner makes checks its token under the same write lock (the store's
``fence``), so a runner that lost its lease can never commit again.

Liveness is the lease, never a pid: a pid says nothing on another host sharing the workspace,
in a container or in another PID namespace. A lease that lapsed (its runner died, or was cut
off) counts as lost once a watcher or a new owner acts on it in a write transaction; until then
its runner may still renew it. Expiry times are the writer's wall clock compared with the
reader's, so hosts that share a workspace need clocks in step (NTP) to well within
``LEASE_SECONDS``.

The functions here run inside a transaction their caller opened (``RunStore.transaction``).
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import time
from dataclasses import dataclass

#: Seconds a lease holds unless renewed (the environment variable overrides it); the runner
#: renews it RENEWALS_PER_LEASE times per lease, so a few missed renewals do not lose it.
LEASE_ENV = "JUPYTER_PARALLELRUN_LEASE_SECONDS"
LEASE_SECONDS = 30.0
RENEWALS_PER_LEASE = 6
#: A claim made for a runner about to start holds this much longer: the runner's interpreter
#: and imports come first, and a slow start must not look like a dead runner.
STARTUP_SECONDS = 60.0


class RunAlreadyRunning(ValueError):
    """A runner owns the run: it cannot be resumed (or claimed) now (a ValueError, as resuming
    a run in any other state that does not allow it)."""


class LeaseLost(Exception):
    """This runner no longer owns its run: it must not write, and stops."""


def lease_seconds() -> float:
    """The lease duration: ``LEASE_SECONDS`` unless the environment variable sets it."""
    value = os.environ.get(LEASE_ENV)
    return LEASE_SECONDS if not value else float(value)


@dataclass(frozen=True)
class RunOwner:
    """The runner lease of a pipeline run, as the store holds it (read only; no token).

    A run is owned while its lease is live: not released and not expired. ``host`` and
    ``pid`` name the owning runner for messages only.
    """

    run_id: str
    epoch: int
    host: str | None
    pid: int | None
    since: float
    renewed: float
    expires: float
    released: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunOwner:
        fields = dict(row)
        del fields["token"]  # the owner's own: readers never see it
        return cls(**fields)

    def live(self, now: float | None = None) -> bool:
        """Whether the lease holds: renewed in time and not let go."""
        return self.released is None and (time.time() if now is None else now) < self.expires

    def describe(self, now: float | None = None) -> str:
        """``runner pid 12 on host h, owner since 2026-12-01 20:00:00 UTC, lease ...``."""
        now = time.time() if now is None else now
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        if self.released is not None:
            lease = f"released {now - self.released:.0f}s ago"
        elif now < self.expires:
            lease = f"renewed {now - self.renewed:.0f}s ago, expires in {self.expires - now:.0f}s"
        else:
            lease = f"expired {now - self.expires:.0f}s ago"
        return f"runner pid {self.pid} on host {self.host}, owner since {since}, lease {lease}"


def lost_runner_error(owner: RunOwner | None) -> str:
    """The error of a run that no runner owns any more (shown by watchers, recorded by
    ``get_state``)."""
    if owner is None:
        return "no runner process owns the run (it was never started)"
    expired = time.strftime("%H:%M:%S UTC", time.gmtime(owner.expires))
    if owner.renewed == owner.since:
        # Never renewed: the claim still names the process that made it, not a runner.
        return (
            "the runner process started for the run never took it over (it failed to start, "
            f"or died starting): the claim made for it expired at {expired}"
        )
    return (
        f"the runner process (pid {owner.pid} on host {owner.host}) ended without finishing the "
        f"run, or was cut off from the workspace: its lease expired at {expired}"
    )


def current(db: sqlite3.Connection, run_id: str) -> RunOwner | None:
    """The lease of pipeline run ``run_id`` as ``db`` sees it, or None if never claimed."""
    row = db.execute("SELECT * FROM leases WHERE run_id=?", (run_id,)).fetchone()
    return None if row is None else RunOwner.from_row(row)


def claim(db: sqlite3.Connection, run_id: str, seconds: float) -> str:
    """Take the lease of ``run_id`` for ``seconds``; returns the new owner's token.

    Raises
    ------
    RunAlreadyRunning
        A live lease is held: the message says by whom and since when.
    """
    now = time.time()
    owner = current(db, run_id)
    if owner is not None and owner.live(now):
        raise RunAlreadyRunning(f"run {run_id} is already running: {owner.describe(now)}")
    token = secrets.token_hex(16)
    db.execute(
        "INSERT OR REPLACE INTO leases (run_id, token, epoch, host, pid, since, renewed, "
        "expires, released) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        (run_id, token, (owner.epoch if owner else 0) + 1, socket.gethostname(), os.getpid())
        + (now, now, now + seconds),
    )
    return token


def holds(db: sqlite3.Connection, run_id: str, token: str) -> bool:
    """Whether ``token`` is the run's lease and was not released nor taken over."""
    row = db.execute(
        "SELECT 1 FROM leases WHERE run_id=? AND token=? AND released IS NULL", (run_id, token)
    ).fetchone()
    return row is not None


def renew(
    db: sqlite3.Connection, run_id: str, token: str, seconds: float, *, adopt: bool = False
) -> bool:
    """Push the lease's expiry ``seconds`` ahead; with ``adopt`` also record this process as
    the holder (the runner taking over the claim made for it). False when not held."""
    now = time.time()
    sql, args = "UPDATE leases SET renewed=?, expires=?", [now, now + seconds]
    if adopt:
        sql += ", host=?, pid=?"
        args += [socket.gethostname(), os.getpid()]
    cursor = db.execute(
        sql + " WHERE run_id=? AND token=? AND released IS NULL", [*args, run_id, token]
    )
    return cursor.rowcount == 1


def release(db: sqlite3.Connection, run_id: str) -> None:
    """Let the run's lease go: its runner finished, or a watcher found it lapsed."""
    db.execute(
        "UPDATE leases SET released=? WHERE run_id=? AND released IS NULL", (time.time(), run_id)
    )
