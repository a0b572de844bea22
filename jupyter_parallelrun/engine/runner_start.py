"""Starting the runner process, and the home it works in.

The API starts a run's runner through :func:`start_runner` (at ``submit()`` and
``resume()``) without importing the runner's own code: its scheduler, backends and workers
load in the runner process only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..store import RunStore
from ..store_lease import release
from . import python_path

#: The environment variable that hands the runner its claim's token.
TOKEN_ENV = "JUPYTER_PARALLELRUN_LEASE_TOKEN"


@dataclass(frozen=True)
class RunnerHome:
    """Where the runner works: the run store, and the workspace's data folder, which holds a
    folder per run (``runs/<run id>``: logs, snapshot, scratch)."""

    store: RunStore
    folder: Path

    @classmethod
    def at(cls, folder: str | Path) -> RunnerHome:
        """The home of the workspace whose data folder is ``folder``."""
        return cls(RunStore(Path(folder) / "store.sqlite"), Path(folder))

    def run_folder(self, run_id: str) -> Path:
        """The folder of run ``run_id``."""
        return self.folder / "runs" / run_id


def start_runner(store: RunStore, folder: Path, run_id: str, token: str) -> int:
    """Start the runner process for ``run_id``, detached from the caller; returns its pid.

    ``folder`` is the workspace's data folder (``store`` is its run store). ``token`` is the
    claim on the run made for this runner (see ``store_lease.claim``); it travels in the
    environment, which only its user can read, not in argv.
    """
    try:
        log = Path(folder) / "runs" / run_id / "runner_stdout.txt"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-X",
                    "faulthandler",  # a crash in C code still leaves its traceback in the log
                    "-m",
                    "jupyter_parallelrun.engine.runner",
                    str(folder),
                    run_id,
                ],
                env={**os.environ, "PYTHONPATH": python_path(), TOKEN_ENV: token},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except BaseException:
        with store.transaction() as db:  # no runner will take the claim made for it
            release(db, run_id)
        raise
    return process.pid
