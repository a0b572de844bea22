"""EntryScript: what an entry script may ask about the worker process that hosts it.

The worker sets the context through :func:`_set_context` before it calls ``init()``. Outside a
worker (a notebook trying a script out) the answers describe the current process.
"""

from __future__ import annotations

import logging
import os
from typing import Any

#: Set once per worker process, before the entry script's init().
_context: dict[str, Any] = {}


def _set_context(**values: Any) -> None:
    """Record the worker's output_dir, working_dir, node_id, process_name and log_dir."""
    _context.update(values)


class EntryScript:
    """The entry script's view of its worker.

    Examples
    --------
    >>> from jupyter_parallelrun import EntryScript
    >>> entry_script = EntryScript()
    >>> entry_script.logger.info("loading the model")
    >>> entry_script.process_name
    'main'
    """

    @property
    def logger(self) -> logging.Logger:
        """The logger whose records go to this worker's log file."""
        return logging.getLogger("jupyter_parallelrun.user")

    @property
    def output_dir(self) -> str:
        """The step's output folder (the current folder outside a worker)."""
        return _context.get("output_dir") or os.getcwd()

    @property
    def working_dir(self) -> str:
        """The folder the script runs in: the snapshot of its source_directory."""
        return _context.get("working_dir") or os.getcwd()

    @property
    def log_dir(self) -> str:
        """The folder of this worker's log files (the current folder outside a worker)."""
        return _context.get("log_dir") or os.getcwd()

    @property
    def node_id(self) -> int:
        """The index of the node this worker belongs to (0 outside a worker)."""
        return int(_context.get("node_id", 0))

    @property
    def process_name(self) -> str:
        """This worker's name, as the run's monitoring shows it (``"main"`` outside a worker)."""
        return _context.get("process_name", "main")
