"""The worker's inbox: messages from the runner, with blob files fetched ahead of ``run()``.

The scheduler sends each worker a few mini-batches ahead (``scheduler.PREFETCH``); they wait
in the worker's pipe. For a file mini-batch on a blob datastore the worker must download the
files before ``run()`` can open them (``run()`` gets local paths, as with Azure's mount and
download modes). The inbox takes the queued messages out of the pipe as soon as they are there
and downloads the files of the next ``FETCH_AHEAD`` mini-batches on a background thread, so
the bytes of the next mini-batch arrive while ``run()`` works on the current one. Local files
need none of this and pass straight through.

Each fetched mini-batch has its own folder under the worker's cache folder, removed once the
mini-batch's result is sent: a step over a million blobs never holds more than a few
mini-batches of them on disk.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any

from .credentials import with_credentials

#: Mini-batches whose files are downloaded ahead of the one ``run()`` works on.
FETCH_AHEAD = 2
#: The Azure SDK's logger of every HTTP request and response, headers and all, at INFO.
SDK_REQUEST_LOG = "azure.core.pipeline.policies.http_logging_policy"
#: An inbox entry's second item for a message with no files to download.
_NOTHING = object()


def _downloads(message: tuple) -> bool:
    """Whether ``message`` is a mini-batch of blob files, which are downloaded before run()."""
    if message[0] != "mb":
        return False
    spec = message[2]
    return spec.get("kind") == "files" and bool(spec.get("storage"))


class Fetched:
    """The local paths of one mini-batch's files, downloading or downloaded."""

    def __init__(self, future: Future, folder: str) -> None:
        self.future, self.folder = future, folder

    def paths(self) -> list[str]:
        """Wait for the download; raises what the download raised."""
        return self.future.result()

    def discard(self) -> None:
        """Remove the downloaded files (waiting for a download still running)."""
        self.future.cancel()
        if not self.future.cancelled():
            self.future.exception()
        shutil.rmtree(self.folder, ignore_errors=True)


class Inbox:
    """Messages from the runner in order, with blob file downloads started ahead.

    A reader thread takes each message out of the pipe as soon as it arrives (the scheduler
    sends the next mini-batch when the previous result reaches it, which is just after
    ``run()`` began on the current one), so its download starts at once.

    Parameters
    ----------
    channel
        Has ``recv()`` (the worker's ``_Channel``); only this inbox may read from it.
    cache_dir : str
        Where this worker's downloads go; each mini-batch gets a folder below it.
    credentials : dict, optional
        The step's blob credentials, given to this worker once at its start; each mini-batch
        spec names only the datastores it reads, and gets them back here (see credentials.py).
    read_ahead : bool
        Whether the step's mini-batches have files to download. Without, there is no reader
        thread: each message is read when it is wanted, on the caller's thread. (At
        mini_batch_size 1 the reader thread and the main one took the interpreter's lock from
        each other at every message: a fifth of a worker's time, and stalls the runner saw.)
    """

    def __init__(
        self,
        channel: Any,
        cache_dir: str,
        credentials: dict | None = None,
        read_ahead: bool = True,
    ) -> None:
        self.channel, self.cache_dir = channel, cache_dir
        self.credentials = credentials or {}
        if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
            # At the worker's default level (INFO) the SDK logs two records for every blob, 33
            # lines of headers: 20,000 images left 660,000 lines in the workers' logs, written
            # while run() works. They are kept at logging_level=DEBUG.
            logging.getLogger(SDK_REQUEST_LOG).setLevel(logging.WARNING)
        self._queued: deque[list] = deque()  # [message, Fetched or None], oldest first
        self._ready = threading.Condition()
        self._pool: ThreadPoolExecutor | None = None
        self._count = 0
        self._downloading = False  # whether any message so far had files to download
        self.read_ahead = read_ahead
        if read_ahead:
            threading.Thread(target=self._read, name="inbox", daemon=True).start()

    def _entry(self) -> list:
        """The next message from the runner, as an entry: [message, what to download]."""
        try:
            message = self.channel.recv()
        except BaseException as error:  # noqa: BLE001 - handed to the main loop to raise
            message = ("__failed__", error)
        if message[0] == "mb" and self.credentials:
            message = (*message[:2], with_credentials(message[2], self.credentials))
        # A message with no files to download is an entry with nothing to start; a step
        # with none (local files, tables) skips the look-ahead altogether, per message.
        entry = [message, _NOTHING]
        if _downloads(message):
            entry[1], self._downloading = None, True
        return entry

    def _read(self) -> None:
        while True:
            entry = self._entry()
            message = entry[0]
            with self._ready:
                self._queued.append(entry)
                if self._downloading:
                    self._start_ahead()
                self._ready.notify()
            if message[0] in ("stop", "__failed__"):
                return  # the runner sends nothing after stop

    def recv(self) -> tuple[tuple, Fetched | None]:
        """The next message, and the download of its files when it is a blob mini-batch."""
        if not self.read_ahead:
            entry = self._entry()
            self._start(entry)
        else:
            with self._ready:
                while not self._queued:
                    self._ready.wait()
                entry = self._queued.popleft()
                if self._downloading:
                    self._start(entry)
                    self._start_ahead()
        if entry[0][0] == "__failed__":
            raise entry[0][1]
        return entry[0], (None if entry[1] is _NOTHING else entry[1])

    def _start_ahead(self) -> None:
        for entry in islice(self._queued, FETCH_AHEAD):
            self._start(entry)

    def _start(self, entry: list) -> None:
        if entry[1] is not None:  # started already, or nothing to download
            return
        from .blob_get import fetch_files

        message, spec = entry[0], entry[0][2]
        if self._pool is None:
            # One thread: mini-batches download in the order run() needs them; each download
            # is itself concurrent (a mini-batch's files are fetched at once).
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetch")
        self._count += 1
        folder = os.path.join(self.cache_dir, f"{self._count:06d}-mb{message[1]}")
        future = self._pool.submit(fetch_files, spec["paths"], folder, spec["storage"])
        entry[1] = Fetched(future, folder)

    def close(self) -> None:
        """Drop whatever was fetched for mini-batches that will not run."""
        with self._ready:
            queued = list(self._queued)
            self._queued.clear()
        for _, fetched in queued:
            if fetched is not None and fetched is not _NOTHING:
                fetched.discard()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            from .blob_get import close_sessions

            close_sessions()
        shutil.rmtree(self.cache_dir, ignore_errors=True)
