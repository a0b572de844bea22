"""Where worker processes run: a small interface and its implementations.

The scheduler only talks to a :class:`~.base.Backend`; the local backend starts joblib (loky)
processes on this machine, and a cluster backend can start the same worker elsewhere.
"""

from .base import Backend, WorkerHandle
from .local import LocalBackend

__all__ = ["Backend", "LocalBackend", "WorkerHandle"]
