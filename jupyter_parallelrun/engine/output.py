"""Exactly-once ``append_row`` output.

The rows of a group of finished mini-batches are appended, flushed and fsynced, and only then
is the new end offset recorded in the run store together with those mini-batches' state (one
transaction, done by the scheduler). A mini-batch is therefore either committed with all of
its rows or not at all; on resume the file is cut back to the last committed offset, so rows
of mini-batches that were written but not recorded cannot appear twice.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class AppendRowWriter:
    """Appends whole groups of rows to the one ``append_row`` file of a step run.

    Parameters
    ----------
    path : Path
        The output file; created when missing.
    committed_offset : int
        Bytes known to be committed (from the run store); anything after it is discarded.

    Raises
    ------
    RuntimeError
        When the file is shorter than ``committed_offset``: committed rows were removed from
        it outside the run, and appending would hide that.
    """

    def __init__(self, path: Path, committed_offset: int = 0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered on purpose: a buffered file that failed to write still holds the rest of
        # the rows, and flushes them (after the cut) when it is truncated or closed.
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        size = os.fstat(self._fd).st_size
        if size < committed_offset:
            os.close(self._fd)
            raise RuntimeError(
                f"the output file {self.path} holds {size} bytes but {committed_offset} bytes of "
                "rows were committed: it was cut or replaced outside this run"
            )
        if size > committed_offset:
            os.ftruncate(self._fd, committed_offset)
        self.offset = committed_offset

    def append(self, payloads: list[bytes]) -> int:
        """Write ``payloads`` durably after the last committed row; returns the new end offset.

        On failure (disk full, folder gone) the file is cut back to where it was, so it never
        ends in a torn row, and the error propagates.
        """
        data = b"".join(payloads)
        if not data:
            return self.offset
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += os.pwrite(self._fd, view[written:], self.offset + written)
            os.fsync(self._fd)
        except OSError:
            self.truncate(self.offset)
            raise
        self.offset += len(data)
        return self.offset

    def truncate(self, offset: int) -> None:
        """Cut the file back to ``offset`` bytes: the rows after it were never committed.

        The scheduler calls it when recording a group of appended rows in the run store fails.
        A failure to cut is ignored: the committed offset in the store stays the truth, and
        resuming the run cuts the file again.
        """
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, offset)
        self.offset = offset

    def close(self) -> None:
        os.close(self._fd)
