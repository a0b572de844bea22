"""A dataset's sources: what each of its patterns points at, and the files it matches.

A dataset definition keeps one source record per pattern it was made from: ``{"path": ...}``
for a local file, folder or glob, ``{"datastore": <Datastore spec>, "path": ...}`` for a path
on a datastore. This module makes those records from what a user passes as ``path``, streams
the files each one matches (sorted), and finds the folder they are under.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .datastore import DataPath, Datastore
from .storage import Listings, iter_local_files

if TYPE_CHECKING:
    from .workspace import Workspace


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


def iter_source_files(
    source: dict, workspace: Workspace | None, listings: Listings | None = None
) -> Iterator[str]:
    """Stream the files the source matches, in sorted order (local folders read through
    ``listings``, when given)."""
    if "datastore" in source:
        datastore = Datastore.from_spec(source["datastore"], workspace)
        return datastore.iter_files(source["path"], listings)
    return iter_local_files(source["path"], listings)


def source_base(source: dict) -> str:
    """The folder (or URL) the source's files are under: the part before any glob."""
    location = source["path"]
    if "datastore" in source:
        location = Datastore.from_spec(source["datastore"])._url(location)
    glob = re.search(r"[*?\[]", location)
    if glob:
        return location[: location.rfind("/", 0, glob.start())] or "/"
    return os.path.dirname(location) if os.path.isfile(location) else location
