"""Listing and opening files: local patterns as a sorted stream, and fsspec URLs.

Everything that reads input goes through here, so local folders and blob containers look the
same to datasets and to the workers: ``iter_local_files`` walks a folder or glob lazily in a
fixed order (resume and reuse depend on it), ``open_file`` and ``copy_file`` take either kind
of location.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import fsspec

GLOB_CHARS = re.compile(r"[*?\[]")


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


def iter_local_files(pattern: str) -> Iterator[str]:
    """Stream the local files matching a path, folder or glob pattern, in sorted order.

    A folder stands for every file under it; a glob may use ``*``, ``?``, ``[...]`` within a
    path segment and ``**`` for any number of folders. A folder the pattern matches contributes
    every file under it. Folders are read one at a time with ``os.scandir``, so listing a
    million files never holds a million names. Nothing is yielded when nothing matches.
    """
    pattern = os.path.abspath(os.path.expanduser(pattern))
    match = GLOB_CHARS.search(pattern)
    if match is None:
        if os.path.isfile(pattern):
            yield pattern
        elif os.path.isdir(pattern):
            yield from _walk(pattern, None, [])
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
        yield from _walk(base, (full, prefix), [])


def _walk(folder: str, matcher: tuple | None, relative: list[str]) -> Iterator[str]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        parts = [*relative, entry.name]
        if entry.is_dir():
            if matcher is not None:
                depth = len(parts) - 1
                prefix = matcher[1]
                if depth < len(prefix) and not prefix[depth].fullmatch(entry.name):
                    continue
            yield from _walk(entry.path, matcher, parts)
        elif matcher is None or matcher[0].fullmatch("/".join(parts)):
            yield entry.path


# -- opening files anywhere ---------------------------------------------------------------------


def filesystem(protocol: str, options: dict[str, Any], name: str) -> fsspec.AbstractFileSystem:
    if protocol == "az":
        try:
            import adlfs  # noqa: F401
        except ImportError:
            raise ImportError(
                f"datastore {name!r} is an Azure blob container, read through fsspec's 'az' "
                "protocol, which needs the adlfs package: pip install adlfs"
            ) from None
    return fsspec.filesystem(protocol, **options)


def open_file(path: str, storage: dict[str, dict] | None = None):
    """Open ``path`` for binary reading: a local path, or a URL of a blob datastore.

    ``storage`` maps datastore roots (``"az://container"``) to their storage options.
    """
    if "://" not in path:
        return open(path, "rb")
    return filesystem_for(path, storage).open(path, "rb")


def filesystem_for(path: str, storage: dict[str, dict] | None = None) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem that reaches ``path`` (see :func:`open_file`)."""
    if "://" not in path:
        return fsspec.filesystem("file")
    protocol = path.split("://", 1)[0]
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
