"""Exactly-once ``append_row`` output.

The rows of a group of finished mini-batches are appended, flushed and fsynced, and only then
is the new end offset recorded in the run store together with those mini-batches' state (one
transaction, done by the scheduler). A mini-batch is therefore either committed with all of
its rows or not at all; on resume the file is cut back to the last committed offset, so rows
of mini-batches that were written but not recorded cannot appear twice.
"""

from __future__ import annotations

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
    """

    def __init__(self, path: Path, committed_offset: int = 0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - held for the whole step run
        if self._file.tell() != committed_offset:
            self._file.truncate(committed_offset)
            self._file.seek(committed_offset)
        self.offset = committed_offset

    def append(self, payloads: list[bytes]) -> int:
        """Write ``payloads`` durably; returns the new end offset.

        On failure (disk full, folder gone) the file is cut back to where it was, so it never
        ends in a torn row, and the error propagates.
        """
        if not any(payloads):
            return self.offset
        try:
            for payload in payloads:
                self._file.write(payload)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError:
            self._file.truncate(self.offset)
            raise
        self.offset = self._file.tell()
        return self.offset

    def close(self) -> None:
        self._file.close()
