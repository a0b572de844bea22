"""The engine: the runner process, its scheduler, mini-batch partitioning, the workers, output
and the backends."""

from __future__ import annotations

import os
from pathlib import Path

#: The folder that holds the ``jupyter_parallelrun`` package.
PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


def python_path() -> str:
    """PYTHONPATH for a child Python that must import this package, installed or not."""
    return os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")]))
