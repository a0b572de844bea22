"""Reading the records of tabular files: a whole file, a byte range of a delimited or JSON-lines
file, or row groups of a Parquet file, into a pandas DataFrame (with the columns that
``partition_format`` takes from the file's path).

``TabularDataset.to_pandas_dataframe`` reads whole files with it; the workers read their
mini-batches' ranges with it.
"""

from __future__ import annotations

import io
import json
import re
from typing import TYPE_CHECKING, Any

from .column_types import apply_types, read_dtypes, type_spec

if TYPE_CHECKING:
    import pandas as pd

#: A ``{column}`` of a ``partition_format``.
PARTITION_KEY = re.compile(r"\{([A-Za-z_][A-Za-z0-9_ ]*)\}")


def partition_values(path: str, partition_format: str | None) -> dict[str, str]:
    """The ``{column}`` values that ``partition_format`` takes from the end of ``path``."""
    if not partition_format:
        return {}
    regex, position = "", 0
    for match in PARTITION_KEY.finditer(partition_format):
        regex += _glob_regex(partition_format[position : match.start()])
        regex += f"(?P<k{len(regex)}>[^/]+)"
        position = match.end()
    regex += _glob_regex(partition_format[position:])
    found = re.search("(?:^|/)" + regex.lstrip("/") + "$", path.replace("\\", "/"))
    if found is None:
        raise ValueError(
            f"partition_format={partition_format!r} does not match the file path {path!r}"
        )
    return dict(zip(PARTITION_KEY.findall(partition_format), found.groups(), strict=True))


def _glob_regex(text: str) -> str:
    return re.escape(text).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")


def read_records(
    path: str,
    fmt: str,
    options: dict[str, Any],
    *,
    start: int | None = None,
    end: int | None = None,
    row_groups: list[int] | None = None,
) -> pd.DataFrame:
    """Read one file of a tabular dataset (or part of it) into a DataFrame.

    Parameters
    ----------
    path : str
        A local path or a datastore URL.
    fmt : {"delimited", "json_lines", "parquet"}
    options : dict
        :meth:`TabularDataset.read_options`.
    start, end : int, optional
        A byte range of a delimited or JSON-lines file, cut on line boundaries; the header
        line of a delimited file is read from the file's start and put back in front.
    row_groups : list of int, optional
        The row groups of a Parquet file to read.
    """
    try:
        frame = _read(path, fmt, options, start, end, row_groups)
    except Exception as error:
        # pyarrow's and pandas' messages ("Parquet magic bytes not found in footer", "Error
        # tokenizing data") do not say which file; the error report must.
        part = f" bytes {start}-{end}" if start is not None else ""
        raise ValueError(
            f"cannot read the {fmt} file {path}{part}: {type(error).__name__}: {error}"
        ) from error
    for column, value in partition_values(path, options.get("partition_format")).items():
        frame[column] = value
    if options.get("include_path"):
        frame["Path"] = path
    chosen = column_types(options)
    return apply_types(frame, chosen, set(options.get("set_column_types") or {}), path)


def _read(
    path: str,
    fmt: str,
    options: dict[str, Any],
    start: int | None,
    end: int | None,
    row_groups: list[int] | None,
) -> pd.DataFrame:
    from .storage import open_file

    storage = options.get("storage")
    with open_file(path, storage) as handle:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(handle)
            table = parquet.read() if row_groups is None else parquet.read_row_groups(row_groups)
            frame = table.to_pandas()
        else:
            header = handle.readline() if fmt == "delimited" and options["header"] else b""
            if start is not None:
                handle.seek(start)
                data = header + handle.read(end - start)
            else:
                data = header + handle.read()
            frame = _parse(data, fmt, options)
    return frame


def column_types(options: dict[str, Any]) -> dict[str, dict]:
    """The type spec of each column: those inferred when the dataset was made, then the
    ones ``set_column_types`` gives (type names, as older definitions keep them, included)."""
    given = {
        column: type_spec("set_column_types", column, value) if isinstance(value, str) else value
        for column, value in (options.get("set_column_types") or {}).items()
    }
    return {**(options.get("column_types") or {}), **given}


def _parse(data: bytes, fmt: str, options: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    if fmt == "json_lines":
        records = []
        for number, line in enumerate(data.decode(options["encoding"]).splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                if options["invalid_lines"] == "error":
                    raise ValueError(
                        f"invalid JSON on line {number} of the batch: {error}"
                    ) from None
        return pd.DataFrame.from_records(records)
    if not data.strip():
        return pd.DataFrame()

    # Typed columns are read as their type (numbers) or as text to convert; a definition
    # made without inference reads everything as text, one whose inference could not read
    # the data when it was made lets pandas guess.
    def typed(nullable: bool = False) -> dict:
        found = read_dtypes(column_types(options), nullable)
        if options["header"]:
            return found
        return {int(c[6:]) - 1: t for c, t in found.items() if re.fullmatch(r"Column\d+", c)}

    def read(dtype: Any) -> pd.DataFrame:
        return pd.read_csv(
            io.BytesIO(data),
            sep=options["separator"],
            header=0 if options["header"] else None,
            encoding=options["encoding"],
            dtype=dtype,
            keep_default_na=not options["empty_as_string"],
            engine="python" if len(options["separator"]) > 1 else "c",
        )

    if not options["infer_column_types"]:
        return _columns_named(read(str), options)
    try:
        return _columns_named(read(typed() or None), options)
    except ValueError:
        if not typed():
            raise
    # An integer column with a missing value, or a value the parser cannot read as its
    # column's type: read nullable integers, then that text, so the conversion after names
    # the column and the value.
    try:
        return _columns_named(read(typed(nullable=True)), options)
    except ValueError:
        return _columns_named(read(dict.fromkeys(typed(), str)), options)


def _columns_named(frame: pd.DataFrame, options: dict[str, Any]) -> pd.DataFrame:
    if not options["header"]:
        frame.columns = [f"Column{i + 1}" for i in range(len(frame.columns))]
    return frame
