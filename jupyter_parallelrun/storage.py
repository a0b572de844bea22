"""Listing and opening files: local patterns as a sorted stream, and fsspec URLs.

Everything that reads input goes through here, so local folders and blob containers look the
same to datasets and to the workers: ``iter_local_files`` walks a folder or glob lazily in a
fixed order (resume and reuse depend on it), ``open_file`` and ``copy_file`` take either kind
of location.
"""

from __future__ import annotations

import heapq
import os
import re
import shutil
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import fsspec


GLOB_CHARS = re.compile(r"[*?\[]")
#: File names of one folder are sorted in runs of this many (see ``_sorted_names``).
_SORT_RUN = 65536


def sort_key(path: str) -> list[str]:
    """The order files are listed in: by path component, as a sorted directory walk gives."""
    return path.split("/")


def _segment_regex(segment: str) -> str:
    out, i = [], 0
    while i < len(segment):
        char = segment[i]
        end = segment.find("]", i + 2) if char == "[" else -1
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif end != -1:
            body = segment[i + 1 : end].replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def iter_local_files(pattern: str, listings: Listings | None = None) -> Iterator[str]:
    """Stream the local files matching a path, folder or glob pattern, in sorted order.

    A folder stands for every file under it; a glob may use ``*``, ``?``, ``[...]`` within a
    path segment and ``**`` for any number of folders. A folder the pattern matches contributes
    every file under it. Folders are read one at a time with ``os.scandir``, so listing a
    million files never holds a million names. Nothing is yielded when nothing matches.

    With ``listings``, each folder is read through it: once, however many listings share it.
    """
    pattern = os.path.abspath(os.path.expanduser(pattern))
    match = GLOB_CHARS.search(pattern)
    if match is None:
        if os.path.isfile(pattern):
            yield pattern
        elif os.path.isdir(pattern):
            yield from _walk(pattern, None, [], listings)
        return
    base = pattern[: pattern.rfind("/", 0, match.start()) + 1].rstrip("/") or "/"
    segments = pattern[len(base) :].strip("/").split("/")
    parts = []
    for index, segment in enumerate(segments):
        if segment == "**":
            parts.append(".*" if index == len(segments) - 1 else "(?:[^/]+/)*")
        else:
            parts.append(_segment_regex(segment) + ("/" if index < len(segments) - 1 else ""))
    full = re.compile("".join(parts) + "(?:/.*)?")
    fixed = segments[: segments.index("**")] if "**" in segments else segments
    prefix = [re.compile(_segment_regex(s)) for s in fixed]
    if os.path.isdir(base):
        yield from _walk(base, (full, prefix), [], listings)


def _walk(
    folder: str, matcher: tuple | None, relative: list[str], listings: Listings | None
) -> Iterator[str]:
    try:
        names, folders = _sorted_names(folder, listings)
    except (FileNotFoundError, NotADirectoryError):
        return
    prefix = os.path.join(folder, "")
    for name in names:
        if name in folders:
            if matcher is not None:
                depth = len(relative)
                if depth < len(matcher[1]) and not matcher[1][depth].fullmatch(name):
                    continue
            yield from _walk(prefix + name, matcher, [*relative, name], listings)
        elif matcher is None or matcher[0].fullmatch("/".join([*relative, name])):
            yield prefix + name


class Listings:
    """Each local folder's sorted names, read once and shared by every listing given this object.

    The runner lists a step's input more than once (the fingerprint a reusable step needs
    first, then the scheduler's mini-batches and the counting thread at once): it gives the
    step's input one ``Listings``, so a large folder's names are held once, and all of them
    see the same files. Nothing is shared between listings given none, or different ones.

    Examples
    --------
    >>> listings = Listings()
    >>> files = list(iter_local_files("data/*.png", listings))  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._folders: dict[str, tuple[list[str], set[str]]] = {}
        self._lock = threading.Lock()  # the scheduler's thread and the counting thread

    def read(self, folder: str) -> tuple[list[str], set[str]]:
        """``folder``'s packed runs of sorted file names and its subfolders, read once."""
        with self._lock:
            if folder not in self._folders:
                self._folders[folder] = _read_names(folder)
            return self._folders[folder]


def _sorted_names(folder: str, listings: Listings | None) -> tuple[Iterator[str], set[str]]:
    """The names in ``folder``, sorted, and which of them are folders.

    The names are read in one pass. File names are sorted in runs of ``_SORT_RUN``, each run
    packed into one string, and the runs are merged as the names are taken: a folder of a
    million files costs about its names' bytes, where a list of a million ``DirEntry``
    objects (or even of strings) costs ten times that.
    """
    runs, folders = _read_names(folder) if listings is None else listings.read(folder)
    if len(runs) == 1 and not folders:
        return _unpack(runs[0]), folders
    return heapq.merge(*map(_unpack, runs), sorted(folders)), folders


def _read_names(folder: str) -> tuple[list[str], set[str]]:
    runs: list[str] = []
    names: list[str] = []
    folders: set[str] = set()
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                folders.add(entry.name)
                continue
            names.append(entry.name)
            if len(names) == _SORT_RUN:
                names.sort()
                runs.append("\0".join(names))
                names = []
    if names:
        names.sort()
        runs.append("\0".join(names))
    return runs, folders


def _unpack(run: str) -> Iterator[str]:
    start = 0
    while True:
        end = run.find("\0", start)
        if end == -1:
            yield run[start:]
            return
        yield run[start:end]
        start = end + 1


# -- opening files anywhere ---------------------------------------------------------------------


def filesystem(protocol: str, options: dict[str, Any], name: str) -> fsspec.AbstractFileSystem:
    # fsspec is imported here, not at the top: local paths never need it, and every runner and
    # worker process would pay for its import (~35 ms) before its first mini-batch.
    import fsspec

    if protocol == "az":
        require_adlfs(name)
    return fsspec.filesystem(protocol, **options)


def require_adlfs(name: str) -> None:
    """Raise ImportError, saying what to install, when adlfs (fsspec's ``az`` protocol, the
    one blob datastores are read through) cannot be imported."""
    try:
        import adlfs  # noqa: F401
    except ImportError:
        raise ImportError(
            f"datastore {name!r} is an Azure blob container, read through fsspec's 'az' "
            "protocol, which needs the adlfs package: pip install adlfs "
            "(or pip install 'jupyter_parallelrun[blob]')"
        ) from None


def open_file(path: str, storage: dict[str, dict] | None = None):
    """Open ``path`` for binary reading: a local path, or a URL of a blob datastore.

    ``storage`` maps datastore roots (``"az://container"``) to their storage options.
    """
    if "://" not in path:
        return open(path, "rb")
    return filesystem_for(path, storage).open(path, "rb")


def filesystem_for(path: str, storage: dict[str, dict] | None = None) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem that reaches ``path`` (see :func:`open_file`)."""
    protocol = path.split("://", 1)[0] if "://" in path else "file"
    options = next(
        (opts for root, opts in (storage or {}).items() if path.startswith(root + "/")), {}
    )
    return filesystem(protocol, options, path)


def copy_file(source: str, destination: str, storage: dict[str, dict] | None = None) -> None:
    """Copy a local path or datastore URL to a local file."""
    if "://" not in source:
        shutil.copyfile(source, destination)
    else:
        filesystem_for(source, storage).get_file(source, destination)
