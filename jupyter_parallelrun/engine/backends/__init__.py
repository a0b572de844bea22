"""Where worker processes run: a small interface and its implementations.

The scheduler only talks to a :class:`~.base.Backend`; the local backend starts joblib (loky)
processes on this machine, the Dask backend starts the same worker on a Dask cluster's workers.
"""

from .base import Backend, WorkerHandle
from .dask import DaskBackend
from .local import LocalBackend

__all__ = ["Backend", "DaskBackend", "LocalBackend", "WorkerHandle"]
