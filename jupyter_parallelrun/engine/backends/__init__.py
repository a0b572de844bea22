"""Where worker processes run: a small interface, its implementations, and a registry by name.

The scheduler only talks to a :class:`~.base.Backend`. A compute target's stored spec names its
backend (``"backend": "dask"``); the runner asks :func:`make_backend` for it, so neither the
runner nor the API knows which classes exist. The local backend starts joblib (loky) processes
on this machine, the Dask backend starts the same worker on a Dask cluster's workers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import THREAD_VARIABLES, Backend, WorkerHandle, WorkerSettings, worker_environment
from .dask import DaskBackend
from .local import LocalBackend

#: Makes a backend from a compute target's stored spec and the step's worker settings.
BackendFactory = Callable[[dict[str, Any], WorkerSettings], Backend]

BACKENDS: dict[str, BackendFactory] = {"local": LocalBackend, "dask": DaskBackend}


class UnknownBackend(ValueError):
    """A compute target names a backend that is not registered."""


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make ``factory`` the backend of the compute targets whose spec names ``name``.

    Parameters
    ----------
    name : str
        The name a compute target's spec gives as its ``"backend"``.
    factory : callable
        ``factory(compute_spec, settings)`` returns a :class:`Backend`; a ``Backend``
        subclass taking those two arguments is one.

    Examples
    --------
    >>> class Quiet(LocalBackend):  # doctest: +SKIP
    ...     pass
    >>> register_backend("quiet", Quiet)  # doctest: +SKIP
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string; got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable(compute_spec, settings); got {factory!r}")
    BACKENDS[name] = factory


def make_backend(name: str, compute_spec: dict[str, Any], settings: WorkerSettings) -> Backend:
    """The backend registered as ``name``, made for one step run.

    Raises
    ------
    UnknownBackend
        No backend is registered as ``name`` (the message lists those that are).
    """
    factory = BACKENDS.get(name)
    if factory is None:
        raise UnknownBackend(
            f"backend {name!r} of compute target {compute_spec.get('name')!r} is not registered; "
            f"registered backends: {', '.join(sorted(BACKENDS))}"
        )
    return factory(compute_spec, settings)


__all__ = [
    "BACKENDS",
    "THREAD_VARIABLES",
    "Backend",
    "BackendFactory",
    "DaskBackend",
    "LocalBackend",
    "UnknownBackend",
    "WorkerHandle",
    "WorkerSettings",
    "make_backend",
    "register_backend",
    "worker_environment",
]
