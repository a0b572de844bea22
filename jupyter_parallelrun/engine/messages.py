"""The messages between the runner and a worker process, as types.

Both ends handle these dataclasses; on the connection each travels as a tagged tuple
(:func:`encode`, :func:`decode`): a tuple pickles in a third of the bytes and time of a
dataclass, which counts at tens of thousands of mini-batches a second, and the worker side
needs no class of the runner's to read it. The worker's hello is the listener's handshake
(``("hello", name, pid, incarnation)``, see ``listener.py``), not one of these.

worker → runner: :class:`Ready`, :class:`InitFailed`, :class:`Done`, :class:`Failed`,
:class:`Beat`, :class:`Bye`. runner → worker: :class:`RunMiniBatch`, :class:`Stop`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, ClassVar

from .error_text import printable


class GarbledMessage(Exception):
    """A worker sent bytes that are not one of its messages (user code wrote on the pipe)."""


@dataclass(slots=True)
class Ready:
    """``init()`` returned: the worker takes mini-batches now."""

    KIND: ClassVar[str] = "ready"
    init_seconds: float


@dataclass(slots=True)
class InitFailed:
    """Loading the entry script or its ``init()`` raised; the process ends."""

    KIND: ClassVar[str] = "init_failed"
    exception: str
    traceback: str


@dataclass(slots=True)
class Done:
    """``run()`` returned for a mini-batch: its formatted rows and counts.

    ``note`` says why items have no result (fewer rows than items), or is None.
    """

    KIND: ClassVar[str] = "done"
    mb_id: int
    n_items: int
    n_ok: int
    payload: bytes
    began: float
    ended: float
    note: str | None


@dataclass(slots=True)
class Failed:
    """Loading a mini-batch or its ``run()`` raised: one failed try.

    ``n_items`` is None when the items could not even be counted.
    """

    KIND: ClassVar[str] = "error"
    mb_id: int
    n_items: int | None
    exception: str
    traceback: str
    began: float
    ended: float


@dataclass(slots=True)
class Beat:
    """The worker is alive; with a resource sample (both None between samples)."""

    KIND: ClassVar[str] = "beat"
    rss: int | None
    cpu: float | None


@dataclass(slots=True)
class Bye:
    """``shutdown()`` ran after :class:`Stop`; the process ends now."""

    KIND: ClassVar[str] = "bye"


@dataclass(slots=True)
class RunMiniBatch:
    """Run this mini-batch (its spec as ``partition.py`` made it)."""

    KIND: ClassVar[str] = "mb"
    mb_id: int
    spec: dict


@dataclass(slots=True)
class Stop:
    """No more mini-batches: run ``shutdown()``, say :class:`Bye` and end."""

    KIND: ClassVar[str] = "stop"


WorkerMessage = Ready | InitFailed | Done | Failed | Beat | Bye
RunnerMessage = RunMiniBatch | Stop

_KINDS: dict[str, type] = {
    kind.KIND: kind for kind in (Ready, InitFailed, Done, Failed, Beat, Bye, RunMiniBatch, Stop)
}
_NAMES = {cls: tuple(field.name for field in fields(cls)) for cls in _KINDS.values()}
_FIELDS = {kind: len(_NAMES[cls]) for kind, cls in _KINDS.items()}


def _getter(names: tuple[str, ...]):
    """A function from a message to the tuple of its fields (attrgetter of one name would
    return the bare value)."""
    if len(names) > 1:
        return attrgetter(*names)
    return lambda message: tuple(getattr(message, name) for name in names)


_GET = {cls: _getter(names) for cls, names in _NAMES.items()}


def encode(message: WorkerMessage | RunnerMessage) -> tuple:
    """The tuple that carries ``message`` on a connection."""
    return (message.KIND, *_GET[type(message)](message))


def decode(raw: Any, allowed: tuple[type, ...] = (Ready, InitFailed, Done, Failed, Beat, Bye)):
    """The message a tuple from the connection carries.

    Raises
    ------
    GarbledMessage
        ``raw`` is not a tuple of one of the ``allowed`` kinds with its fields.
    """
    if isinstance(raw, tuple) and raw and isinstance(raw[0], str):
        kind = _KINDS.get(raw[0])
        if kind in allowed and _FIELDS[raw[0]] == len(raw) - 1:
            return kind(*raw[1:])
    raise GarbledMessage(
        f"the worker process sent {printable(repr(raw))[:200]}, which is not a message; "
        "something in it wrote on the runner's connection"
    )
