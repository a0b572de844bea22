"""Metrics a script logs with ``Run.log``, ``log_list`` and ``log_row``, as Azure's.

The values are checked here (numbers, strings and booleans, numpy's included), kept as JSON
in the run store's ``metrics`` table, and folded back into Azure's ``get_metrics()`` shape by
:func:`fold_metrics`. Outside a run, ``Run.get_context()`` returns an :class:`OfflineRun`
that keeps what is logged in memory, as Azure's offline run does, so a script runs unchanged
in a notebook.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections.abc import Iterable
from typing import Any

_SCALARS = (bool, int, float, str)


def fold_metrics(rows: Iterable[tuple[str, str, Any]]) -> dict[str, Any]:
    """``{name: value}`` from ``(name, kind, value)`` rows in the order they were logged.

    As Azure's: a scalar logged once is its value, logged again a list of its values; a
    ``log_list`` is its list; ``log_row`` rows make a table, ``{column: [values...]}``.
    """
    scalars: dict[str, list] = {}
    folded: dict[str, Any] = {}
    for name, kind, value in rows:
        if kind == "row":
            table = folded.setdefault(name, {})
            for column, cell in value.items():
                table.setdefault(column, []).append(cell)
        elif kind == "list":
            folded[name] = list(value)
        else:
            scalars.setdefault(name, []).append(value)
            folded[name] = scalars[name][0] if len(scalars[name]) == 1 else scalars[name]
    return folded


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string; got {name!r}")
    return name


def plain_value(parameter: str, value: Any) -> Any:
    """``value`` as a JSON-able scalar (numpy scalars become Python ones), or a clear error."""
    if hasattr(value, "item") and not isinstance(value, _SCALARS):
        with contextlib.suppress(TypeError, ValueError):
            value = value.item()
    if value is None or not isinstance(value, _SCALARS):
        raise TypeError(
            f"{parameter} must be a number, a string or a bool; got {type(value).__name__} "
            f"{value!r}"[:300]
        )
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or infinity; Azure shows them as text too
    return value


def plain_list(parameter: str, value: Any) -> list[Any]:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{parameter} must be a list of numbers or strings; got {value!r}"[:300])
    return [plain_value(f"{parameter}[{i}]", item) for i, item in enumerate(value)]


def plain_row(columns: dict[str, Any]) -> dict[str, Any]:
    if not columns:
        raise ValueError("log_row needs at least one column, as keyword arguments: x=1, y=2")
    return {key: plain_value(key, value) for key, value in columns.items()}


class MetricsLogging:
    """``log``, ``log_list`` and ``log_row``: shared by run handles and the offline run, which
    differ only in where a metric goes (:meth:`_add_metric`)."""

    def _add_metric(self, name: str, kind: str, value: Any, description: str | None) -> None:
        raise NotImplementedError

    def log(self, name: str, value: Any, description: str = "") -> None:
        """Log a scalar metric; logging the same name again makes it a list of values.

        Examples
        --------
        >>> run = Run.get_context()                       # doctest: +SKIP
        >>> run.log("accuracy", 0.93)                      # doctest: +SKIP
        """
        self._add_metric(check_name(name), "scalar", plain_value("value", value), description)

    def log_list(self, name: str, value: Any, description: str = "") -> None:
        """Log a list of values as one metric (a numpy array is accepted)."""
        self._add_metric(check_name(name), "list", plain_list("value", value), description)

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        """Log one row of a table metric, its columns as keyword arguments
        (``run.log_row("loss", epoch=1, value=0.3)``)."""
        self._add_metric(check_name(name), "row", plain_row(kwargs), description)


class OfflineRun(MetricsLogging):
    """What ``Run.get_context()`` returns outside a run (Azure's ``_OfflineRun``): metrics
    are kept in memory and shown by :meth:`get_metrics`, so an entry script tried out in a
    notebook runs unchanged."""

    def __init__(self) -> None:
        self.id = f"OfflineRun_{uuid.uuid4()}"
        self._metrics: list[tuple[str, str, Any]] = []

    def _add_metric(self, name: str, kind: str, value: Any, description: str | None) -> None:
        self._metrics.append((name, kind, value))
        logging.getLogger(__name__).info("offline run: %s %s = %r", kind, name, value)

    def get_metrics(self) -> dict[str, Any]:
        """What was logged to this offline run, as ``Run.get_metrics()`` shows a run's."""
        return fold_metrics(self._metrics)

    def get_status(self) -> str:
        return "Running"

    def __repr__(self) -> str:
        return f"OfflineRun(id={self.id!r})"
