"""Dataset.File and Dataset.Tabular: the factories that check a user's arguments and build
the definition of a new dataset from them (as Azure's ``azureml.data.dataset_factory``).

``dataset.py`` makes ``Dataset.File`` and ``Dataset.Tabular`` from these factories, handing
each the class it makes: a factory checks the arguments and builds the definition, and the
class it was given turns that into a dataset.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .column_types import SAMPLE_BYTES, infer_types, type_spec
from .dataset_source import describe_source, source_from_path
from .input_data import source_files, storage_options
from .records import PARTITION_KEY
from .storage import open_file

if TYPE_CHECKING:
    from .dataset import FileDataset, TabularDataset

_ENCODINGS = {"iso88591": "latin-1", "windows1252": "cp1252", "utf8bom": "utf-8-sig"}
_INVALID_LINES = ("error", "drop")


class FileDatasetFactory:
    """``Dataset.File``: makes :class:`FileDataset` objects.

    Parameters
    ----------
    make : callable
        The dataset class, called with the definition of each new dataset.
    """

    def __init__(self, make: Callable[[dict[str, Any]], FileDataset]) -> None:
        self._make = make

    def from_files(
        self,
        path: Any,
        validate: bool = True,
        partition_format: str | None = None,
        is_file: bool = False,
    ) -> FileDataset:
        """A dataset of the files at ``path``.

        Parameters
        ----------
        path : str, DataPath, (Datastore, str) tuple, or a list of these
            A file, a folder (every file under it) or a glob with ``*``, ``?`` and ``**``.
        validate : bool, default True
            Raise ValueError when a pattern matches no file.
        partition_format : str, optional
            Such as ``"{state}/{city}/*.png"``; see :attr:`Dataset.partition_keys`.
        is_file : bool, default False
            Accepted for Azure compatibility.
        """
        return self._make(_definition("file", path, validate, partition_format))


class TabularDatasetFactory:
    """``Dataset.Tabular``: makes :class:`TabularDataset` objects.

    Parameters
    ----------
    make : callable
        The dataset class, called with the definition of each new dataset.
    """

    def __init__(self, make: Callable[[dict[str, Any]], TabularDataset]) -> None:
        self._make = make

    def from_delimited_files(
        self,
        path: Any,
        validate: bool = True,
        include_path: bool = False,
        infer_column_types: bool = True,
        set_column_types: dict[str, str] | None = None,
        separator: str = ",",
        header: bool = True,
        partition_format: str | None = None,
        support_multi_line: bool = False,
        empty_as_string: bool = False,
        encoding: str = "utf8",
    ) -> TabularDataset:
        """A table from CSV-like files (``path`` as in ``Dataset.File.from_files``).

        ``header=True`` means every file starts with the same header line; without a header
        the columns are named ``Column1``, ``Column2``, ... With ``infer_column_types`` (the
        default) each column's type (long, float, bool, datetime or string) is inferred once
        from the start of the first file and kept, so every read agrees; without it every
        column is text. ``set_column_types`` maps columns to a :class:`DataType`
        (``DataType.to_long()``, ``to_float()``, ``to_string()``, ``to_bool()``,
        ``to_datetime(formats)``) or a type name (``"int"``, ``"float"``, ``"str"``,
        ``"bool"``, ``"datetime"``, a pandas dtype), overriding what was inferred.

        Examples
        --------
        >>> ds = Dataset.Tabular.from_delimited_files((datastore, "oj/*.csv"),  # doctest: +SKIP
        ...     set_column_types={"WeekStarting": DataType.to_datetime(["%Y-%m-%d"])})
        """
        if not isinstance(separator, str) or not separator:
            raise ValueError(f"separator must be a non-empty string; got {separator!r}")
        if not isinstance(header, bool):
            raise ValueError(f"header must be True or False; got {header!r}")
        options = {
            "separator": separator,
            "header": header,
            "encoding": _encoding(encoding),
            "infer_column_types": bool(infer_column_types),
            "support_multi_line": bool(support_multi_line),
            "empty_as_string": bool(empty_as_string),
        }
        return self._make(_tabular(path, validate, partition_format, "delimited", options,
                                   include_path, set_column_types))  # fmt: skip

    def from_parquet_files(
        self,
        path: Any,
        validate: bool = True,
        include_path: bool = False,
        set_column_types: dict[str, str] | None = None,
        partition_format: str | None = None,
    ) -> TabularDataset:
        """A table from Parquet files (``path`` as in ``Dataset.File.from_files``)."""
        return self._make(_tabular(path, validate, partition_format, "parquet", {},
                                   include_path, set_column_types))  # fmt: skip

    def from_json_lines_files(
        self,
        path: Any,
        validate: bool = True,
        include_path: bool = False,
        set_column_types: dict[str, str] | None = None,
        partition_format: str | None = None,
        invalid_lines: str = "error",
        encoding: str = "utf8",
    ) -> TabularDataset:
        """A table from JSON-lines files, one object per line; ``invalid_lines`` is
        ``"error"`` or ``"drop"``."""
        if invalid_lines not in _INVALID_LINES:
            raise ValueError(f'invalid_lines must be "error" or "drop"; got {invalid_lines!r}')
        options = {"invalid_lines": invalid_lines, "encoding": _encoding(encoding)}
        return self._make(_tabular(path, validate, partition_format, "json_lines", options,
                                   include_path, set_column_types))  # fmt: skip


# -- building definitions -----------------------------------------------------------------------


def _encoding(encoding: str) -> str:
    name = _ENCODINGS.get(str(encoding).lower(), encoding)
    try:
        return codecs.lookup(name).name
    except (LookupError, TypeError):
        raise ValueError(
            f"encoding must be a known text encoding such as 'utf8', 'latin1', 'utf8bom'; "
            f"got {encoding!r}"
        ) from None


def _tabular(path, validate, partition_format, fmt, options, include_path, set_column_types):
    """The definition of a table: ``_definition``'s, with its format and read options."""
    if set_column_types is not None and not (
        isinstance(set_column_types, dict) and all(isinstance(k, str) for k in set_column_types)
    ):
        raise ValueError(
            "set_column_types must be a dict of column name to DataType such as "
            f'{{"age": DataType.to_long()}}; got {set_column_types!r}'
        )
    given = {column: type_spec("set_column_types", column, value)
             for column, value in (set_column_types or {}).items()}  # fmt: skip
    options = {**options, "include_path": bool(include_path), "set_column_types": given}
    definition = _definition("tabular", path, validate, partition_format)
    if fmt == "delimited" and options["infer_column_types"]:
        options["column_types"] = _inferred_types(definition["sources"], options)
    return {**definition, "format": fmt, "options": options}


def _inferred_types(sources: list[dict], options: dict[str, Any]) -> dict[str, dict]:
    """Column types inferred from the start of the first file, as Azure infers them when a
    dataset is made. Best effort: data not readable yet (``validate=False``) or in a wide
    encoding leaves the types to pandas at each read."""
    if codecs.lookup(options["encoding"]).name.startswith(("utf-16", "utf-32")):
        return {}
    for source in sources:
        datastore = source.get("datastore")
        storage = None
        if datastore is not None and datastore["datastore_type"] != "Local":
            storage = {datastore["root"]: storage_options(datastore)}
        try:
            first = next(source_files(source), None)
            if first is None:
                continue
            with open_file(first, storage) as handle:
                sample = handle.read(SAMPLE_BYTES)
            return infer_types(sample, options["separator"], options["header"], options["encoding"])
        except Exception:  # noqa: BLE001 - unreadable now is not an error until it is read
            return {}
    return {}


def _definition(kind: str, path: Any, validate: bool, partition_format: str | None) -> dict:
    items = path if isinstance(path, list) else [path]
    if not items:
        raise ValueError("path must name at least one file, folder or pattern; got []")
    if partition_format is not None and not (
        isinstance(partition_format, str) and PARTITION_KEY.search(partition_format)
    ):
        raise ValueError(
            "partition_format must be a string with {column} segments such as "
            f'"{{state}}/{{city}}/*.csv"; got {partition_format!r}'
        )
    sources = [source_from_path(item) for item in items]
    if validate:
        for source in sources:
            if next(source_files(source), None) is None:
                raise ValueError(f"path {describe_source(source)!r} matches no file")
    return {"type": kind, "sources": sources, "partition_format": partition_format,
            "transforms": []}  # fmt: skip
