"""Where worker processes run: a small interface, its implementations, and a registry by name.

The scheduler only talks to a :class:`~.base.Backend`. A compute target's stored spec names its
backend (``"backend": "dask"``); the runner asks :func:`make_backend` for it, so neither the
runner nor the API knows which classes exist. The local backend (``local.py``) starts joblib
(loky) processes on this machine, the Dask backend (``dask.py``) starts the same worker on a
Dask cluster's workers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .base import THREAD_VARIABLES, Backend, WorkerHandle, WorkerSettings, worker_environment

#: Makes a backend from a compute target's stored spec and the step's worker settings.
BackendFactory = Callable[[dict[str, Any], WorkerSettings], Backend]

#: The backends registered so far, by name.
BACKENDS: dict[str, BackendFactory] = {}
#: The built-in backends' modules and classes, imported when a step first asks for one: a Dask
#: worker imports the Dask backend's module to run its tasks, and needs none of loky's (nor
#: the runner of a local step any of the Dask backend's).
_BUILT_IN = {"local": ("local", "LocalBackend"), "dask": ("dask", "DaskBackend")}


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
    >>> from jupyter_parallelrun.engine.backends.local import LocalBackend
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
    if name not in BACKENDS and name in _BUILT_IN:
        module, attribute = _BUILT_IN[name]
        BACKENDS[name] = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    factory = BACKENDS.get(name)
    if factory is None:
        raise UnknownBackend(
            f"backend {name!r} of compute target {compute_spec.get('name')!r} is not registered; "
            f"registered backends: {', '.join(registered_backends())}"
        )
    return factory(compute_spec, settings)


def registered_backends() -> list[str]:
    """The names a compute target's spec may give as its backend, sorted."""
    return sorted(BACKENDS.keys() | _BUILT_IN.keys())


__all__ = [
    "BACKENDS",
    "THREAD_VARIABLES",
    "Backend",
    "BackendFactory",
    "UnknownBackend",
    "WorkerHandle",
    "WorkerSettings",
    "make_backend",
    "register_backend",
    "registered_backends",
    "worker_environment",
]
