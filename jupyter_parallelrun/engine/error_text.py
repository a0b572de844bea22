"""How text from user code and the filesystem is kept: escaped, and bounded.

File names the filesystem returns need not be UTF-8; Python holds their undecodable bytes as
lone surrogates (``"img_\\udcff.png"``), which SQLite, JSON front-ends and UTF-8 log files
refuse. :func:`printable` writes those as ``\\udcff`` escapes wherever such text is recorded.

An exception's message and traceback can be megabytes (a DataFrame in the message); every
failed try is kept in the run store, polled by the widget and summed up in ``job_error.txt``.
:func:`shorten` keeps their start and end and says how much was cut and where the whole text
is: the worker's own log file, which gets every traceback in full.
"""

from __future__ import annotations

#: Characters kept of one error message, and of one traceback, in what the run records.
MAX_MESSAGE_CHARS = 2_000
MAX_TRACEBACK_CHARS = 6_000


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (lone surrogates) written as ``\\udcXX``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def shorten(text: str, limit: int, where: str) -> str:
    """``text`` made printable and cut to about ``limit`` characters, keeping its start and
    its end (a traceback's last line names the exception), with a note in the middle.

    Examples
    --------
    >>> shorten("x" * 50, 20, "logs/workers/process000.txt")[:12]
    'xxxxxxxxxxxx'
    """
    text = printable(text)
    if len(text) <= limit:
        return text
    head, tail = limit * 3 // 4, limit // 4
    cut = len(text) - head - tail
    return (
        f"{text[:head]}\n[... {cut:,} characters cut; the full text is in {where} ...]\n"
        f"{text[-tail:]}"
    )
