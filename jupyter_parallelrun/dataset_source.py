"""A dataset's sources: what each of its patterns points at, and the files it matches.

A dataset definition keeps one source record per pattern it was made from: ``{"path": ...}``
for a local file, folder or glob, ``{"datastore": <Datastore spec>, "path": ...}`` for a path
on a datastore. This module makes those records from what a user passes as ``path``; streaming the
files each one matches and finding the folder they are under is ``input_data.py``'s.
"""

from __future__ import annotations

import os
from typing import Any

from .datastore import DataPath, Datastore


def source_from_path(item: Any) -> dict[str, Any]:
    """The source record of one ``path`` item given to a dataset factory."""
    if isinstance(item, DataPath):
        return {"datastore": item.datastore.to_spec(), "path": item.path_on_datastore}
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Datastore):
        return source_from_path(DataPath(item[0], item[1]))
    if isinstance(item, (str, os.PathLike)) and str(item):
        return {"path": os.path.abspath(os.path.expanduser(str(item)))}
    raise ValueError(
        "path must be a str, a DataPath, a (Datastore, 'relative/path') tuple, or a list of "
        f"these; got {item!r}"
    )


def describe_source(source: dict) -> str:
    """The source as a user wrote it: a path, or ``datastore:path``."""
    if "datastore" in source:
        return f"{source['datastore']['name']}:{source['path']}"
    return source["path"]
