"""Column types of tabular datasets: Azure's ``DataType``, inference, and conversion.

``Dataset.Tabular.from_delimited_files(..., infer_column_types=True)`` (the default) looks at
the start of the first file once, when the dataset is made, and keeps a type per column in
the dataset's definition: long, float, bool, datetime (with the format that read every
value) or string. ``set_column_types={"col": DataType.to_long(), ...}`` overrides them. Every
read (a whole table, a worker's byte range) then converts the same way, so two mini-batches
of one file never disagree on a column's type.

A type is kept as a small JSON-able spec (``{"type": "datetime", "formats": [...]}``); the
string names ``"int"``, ``"float"``, ``"str"``, ``"bool"``, ``"datetime"`` and any pandas
dtype name are accepted as well.
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: How much of the first file inference reads: enough rows to see a column's kind.
SAMPLE_BYTES = 256 * 1024
#: Date formats inference tries, in order (a column is a date when one format reads it all).
DATE_FORMATS = (
    "%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f", "%Y/%m/%d", "%m/%d/%Y", "%m/%d/%Y %H:%M:%S", "%d.%m.%Y",
)  # fmt: skip
_TRUE = ("true", "1", "yes", "y", "t")
_FALSE = ("false", "0", "no", "n", "f")
_NAMES = {"int": "long", "long": "long", "int64": "long", "float": "float", "float64": "float",
          "str": "string", "string": "string", "bool": "bool", "boolean": "bool",
          "datetime": "datetime"}  # fmt: skip
_INT = re.compile(r"^[+-]?\d+$")


class DataType:
    """How ``set_column_types`` converts a column (Azure's ``azureml.data.DataType``).

    Examples
    --------
    >>> from jupyter_parallelrun import DataType
    >>> DataType.to_datetime(["%d/%m/%Y"])
    DataType.to_datetime(formats=['%d/%m/%Y'])
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = dict(spec)

    @staticmethod
    def to_string() -> DataType:
        """Text."""
        return DataType({"type": "string"})

    @staticmethod
    def to_long() -> DataType:
        """64-bit integers (nullable ``Int64`` where a value is missing)."""
        return DataType({"type": "long"})

    @staticmethod
    def to_float(decimal_mark: str = ".") -> DataType:
        """Floating-point numbers; ``decimal_mark`` is ``"."`` or ``","``."""
        if decimal_mark not in (".", ","):
            raise ValueError(f'decimal_mark must be "." or ","; got {decimal_mark!r}')
        return DataType({"type": "float", "decimal_mark": decimal_mark})

    @staticmethod
    def to_bool(
        true_values: list[str] | None = None,
        false_values: list[str] | None = None,
        mismatch_as: str = "error",
    ) -> DataType:
        """Booleans from ``true_values`` and ``false_values`` (compared case-insensitively;
        default true/1/yes/y/t and false/0/no/n/f); another value is an error, or read as
        ``"true"`` or ``"false"`` per ``mismatch_as``."""
        if mismatch_as not in ("error", "true", "false"):
            raise ValueError(f'mismatch_as must be "error", "true" or "false"; got {mismatch_as!r}')
        return DataType({"type": "bool", "true_values": list(true_values or _TRUE),
                         "false_values": list(false_values or _FALSE),
                         "mismatch_as": mismatch_as})  # fmt: skip

    @staticmethod
    def to_datetime(formats: str | list[str] | None = None) -> DataType:
        """Dates and times read with the first of ``formats`` (``strftime`` codes such as
        ``"%Y-%m-%d"``) that reads the value; without formats, pandas' own parsing."""
        if isinstance(formats, str):
            formats = [formats]
        if formats is not None and not (
            isinstance(formats, (list, tuple)) and all(isinstance(f, str) for f in formats)
        ):
            raise ValueError(f"formats must be a format string or a list of them; got {formats!r}")
        return DataType({"type": "datetime", "formats": list(formats) if formats else None})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataType) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.spec.items() if k != "type")
        return f"DataType.to_{self.spec['type']}({args})"


def type_spec(parameter: str, column: str, value: Any) -> dict[str, Any]:
    """The JSON-able spec of one ``set_column_types`` value, or a clear error."""
    if isinstance(value, DataType):
        return dict(value.spec)
    if isinstance(value, str) and value.strip():
        name = _NAMES.get(value.strip().lower())
        return {"type": name} if name else {"type": "dtype", "dtype": value}
    raise ValueError(
        f"{parameter}[{column!r}] must be a DataType (DataType.to_long(), to_float(), "
        f"to_string(), to_bool(), to_datetime(formats)) or a type name such as 'int'; "
        f"got {value!r}"
    )


def infer_types(sample: bytes, separator: str, header: bool, encoding: str) -> dict[str, dict]:
    """A type spec per column from the start of a delimited file (its last, possibly cut,
    line is left out)."""
    import pandas as pd

    cut = sample.rfind(b"\n")
    text = sample[: cut + 1] if cut != -1 else sample
    if not text.strip():
        return {}
    frame = pd.read_csv(io.BytesIO(text), sep=separator, header=0 if header else None,
                        dtype=str, encoding=encoding,
                        engine="python" if len(separator) > 1 else "c")  # fmt: skip
    if not header:
        frame.columns = [f"Column{i + 1}" for i in range(len(frame.columns))]
    return {str(column): _infer(frame[column].dropna()) for column in frame.columns}


def _infer(values: pd.Series) -> dict[str, Any]:
    import pandas as pd

    if values.empty:
        return {"type": "string"}
    if values.map(lambda v: bool(_INT.match(v.strip()))).all():
        return {"type": "long"}
    if pd.to_numeric(values, errors="coerce").notna().all():
        return {"type": "float", "decimal_mark": "."}
    lowered = set(values.str.strip().str.lower())
    if lowered <= {"true", "false"}:
        return DataType.to_bool().spec
    for fmt in DATE_FORMATS:
        if pd.to_datetime(values, format=fmt, errors="coerce").notna().all():
            return {"type": "datetime", "formats": [fmt]}
    return {"type": "string"}


def read_dtypes(types: dict[str, dict], nullable: bool = False) -> dict[str, Any]:
    """The ``dtype`` for ``pandas.read_csv`` that reads typed columns fast: numbers in the
    parser (integers as ``int64``, or ``Int64`` when ``nullable`` because one is missing),
    the rest as text for :func:`apply_types`."""
    import numpy as np
    import pandas as pd

    # dtype objects, not names: the parser would look each name up again for every read
    long, floating = pd.Int64Dtype() if nullable else np.dtype("int64"), np.dtype("float64")
    dtypes = {}
    for column, spec in types.items():
        kind = spec["type"]
        if kind == "long":
            dtypes[column] = long
        elif kind == "float" and spec.get("decimal_mark", ".") == ".":
            dtypes[column] = floating
        else:
            dtypes[column] = str
    return dtypes


def apply_types(frame: pd.DataFrame, types: dict[str, dict], required: set[str], path: str):
    """Convert ``frame``'s columns to ``types``; a ``required`` column (one the user named in
    set_column_types) that the frame lacks is an error."""
    for column, spec in types.items():
        if column not in frame.columns:
            if column in required:
                raise ValueError(
                    f"set_column_types names column {column!r}, which {path!r} does not "
                    f"have; columns: {list(frame.columns)}"
                )
            continue
        try:
            before = frame[column]
            after = _convert(before, spec)
            if after is not before:
                frame[column] = after
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"column {column!r} of {path!r} cannot be read as {_describe(spec)}: {error}"
            ) from None
    return frame


def _describe(spec: dict[str, Any]) -> str:
    return repr(DataType(spec)) if spec["type"] != "dtype" else repr(spec["dtype"])


def _convert(column: pd.Series, spec: dict[str, Any]) -> pd.Series:
    import pandas as pd

    kind, dtype = spec["type"], str(column.dtype)
    # Columns the parser already read as their type (read_dtypes) are only checked.
    if kind == "long":
        if dtype == "int64":
            return column
        values = column if dtype == "Int64" else pd.to_numeric(column).astype("Int64")
        return values if values.hasnans else values.astype("int64")
    if kind == "float":
        if dtype == "float64":
            return column
        if spec.get("decimal_mark", ".") == "," and not pd.api.types.is_numeric_dtype(column):
            column = column.str.replace(",", ".", regex=False)
        return pd.to_numeric(column).astype("float64")
    if kind == "string":
        if dtype in ("object", "str", "string"):
            return column
        text = column.astype(str)
        return text.where(column.notna(), None)
    if kind == "bool":
        return _to_bool(column, spec)
    if kind == "datetime":
        return _to_datetime(column, spec.get("formats"))
    return column.astype(spec["dtype"])


def _to_bool(column: pd.Series, spec: dict[str, Any]) -> pd.Series:
    if column.dtype == bool:
        return column
    true = {str(v).lower() for v in spec.get("true_values") or _TRUE}
    false = {str(v).lower() for v in spec.get("false_values") or _FALSE}
    mismatch = spec.get("mismatch_as", "error")

    def one(value: Any) -> Any:
        if value is None or value != value:  # missing stays missing
            return None
        text = str(value).strip().lower()
        if text in true or text in false:
            return text in true
        if mismatch == "error":
            raise ValueError(f"{value!r} is in neither true_values nor false_values")
        return mismatch == "true"

    converted = column.map(one)
    return converted.astype(bool) if converted.notna().all() else converted.astype("boolean")


def _to_datetime(column: pd.Series, formats: list[str] | None) -> pd.Series:
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(column):
        return column
    if not formats:
        return pd.to_datetime(column)
    result = pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns]")
    left = column.notna()
    for fmt in formats:
        parsed = pd.to_datetime(column[left], format=fmt, errors="coerce")
        result[parsed.index[parsed.notna()]] = parsed[parsed.notna()]
        left &= result.isna()
    if left.any():
        raise ValueError(f"{column[left].iloc[0]!r} matches none of formats {formats}")
    return result
