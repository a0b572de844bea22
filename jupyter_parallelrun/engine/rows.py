"""What ``run()`` returned, as lines of the ``append_row`` file.

One returned element is one record: a list element (or a DataFrame row) is one line, whatever
it holds; what cannot be a record (a ``str``, a dict, ``None``) is an error or a failed item,
never a silent split into several rows or a row ``"None"``.
"""

from __future__ import annotations

from typing import Any


def result_rows(result: Any, n_items: int) -> tuple[list[str], str | None]:
    """The output rows of what ``run()`` returned for ``n_items`` items, and a note when it
    returned fewer results than items (those items count as failed).

    A list (or tuple, or 1-d array) gives one row per element, its ``str``; a DataFrame one row
    per row, its values joined by spaces. A ``None`` element is no row: its item counts as
    failed (Azure would write the row ``"None"``). Anything else is an error naming its type.
    """
    result = _records(result)
    if _is_frame(result):
        result = _dates_as_one_field(result)
        rows = [" ".join(map(str, row)) for row in result.itertuples(index=False, name=None)]
        return rows, _note(len(rows), 0, n_items)
    rows = [str(element) for element in result if element is not None]
    return rows, _note(len(rows), len(result) - len(rows), n_items)


def result_count(result: Any, n_items: int) -> tuple[int, str | None]:
    """What :func:`result_rows` says of ``result`` without making its rows: how many there
    would be, and the note. For ``summary_only``, which keeps no row: turning every value of a
    DataFrame into text took half of a tabular worker's time."""
    result = _records(result)
    if _is_frame(result):
        return len(result), _note(len(result), 0, n_items)
    count = sum(1 for element in result if element is not None)
    return count, _note(count, len(result) - count, n_items)


def _is_frame(result: Any) -> bool:
    return hasattr(result, "itertuples") and hasattr(result, "columns")


def _records(result: Any) -> Any:
    """``result`` as a DataFrame or a list or tuple of records; raises TypeError for what is
    no records."""
    if _is_frame(result):
        return result
    if type(result).__module__ == "numpy" and getattr(result, "ndim", None) == 1:
        result = result.tolist()
    if not isinstance(result, list | tuple):
        kind = type(result)
        name = kind.__qualname__
        if kind.__module__ != "builtins":
            name = f"{kind.__module__}.{name}"
        raise TypeError(
            f"run() returned {'None' if result is None else 'a ' + name}; it must return "
            "a list (one element per output row) or a pandas DataFrame"
        )
    return result


def _note(results: int, missing: int, n_items: int) -> str | None:
    """Why items have no result, when there are fewer ``results`` than items."""
    if results >= n_items:
        return None
    note = f"run() returned {results} results for {n_items} items"
    if missing:
        note += f" ({missing} of its elements were None)"
    return note + "; the items without a result count as failed"


def format_rows(rows: list[str]) -> bytes:
    """The ``append_row`` lines of ``rows``: one line per row, always.

    A line break inside a row is written as the two characters ``\\n`` (``\\r`` for a
    carriage return), so every reader (pandas, ``wc -l``) sees one line per row; text that
    UTF-8 cannot encode (the lone surrogates of a non-UTF-8 file name) as ``\\udcXX``.
    """
    if not rows:
        return b""
    lines = [
        row.replace("\r", "\\r").replace("\n", "\\n") if "\n" in row or "\r" in row else row
        for row in rows
    ]
    return ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace")


def _dates_as_one_field(frame: Any) -> Any:
    """``frame`` with its date columns as ISO text: a timestamp's ``str()`` holds a space,
    which would split it into two fields of a space-separated row. As pandas' ``to_csv``
    writes them, a column whose times are all midnight is written as dates alone."""
    columns = frame.select_dtypes(include=["datetime", "datetimetz"]).columns
    if len(columns) == 0:
        return frame
    frame = frame.copy()
    for column in columns:
        values = frame[column]
        known = values.dropna()
        if (known == known.dt.normalize()).all():
            frame[column] = values.dt.strftime("%Y-%m-%d")
        else:
            frame[column] = values.map(lambda t: t.isoformat() if t == t else t)
    return frame
