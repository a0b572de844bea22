"""The runner's side of the bytes on a worker's connection: many messages per system call.

A worker talks through a ``multiprocessing.connection.Connection``: each message is a frame, a
4-byte big-endian length (or -1 and an 8-byte length) and that many bytes of pickle. The worker
keeps reading and writing frame by frame with the standard ``Connection``. The runner, which
serves every worker from one thread, reads and writes the same frames in bulk instead: one
``read`` takes every message waiting (at mini_batch_size 1 a round finds dozens), one
``write`` carries every mini-batch sent to a worker in a round. ``Connection.recv_bytes`` makes
two reads and a poll per message, ``send_bytes`` one write per message, and those system calls
were most of the scheduler thread's time at tens of thousands of mini-batches a second.
"""

from __future__ import annotations

import os
import pickle
import struct

from .messages import GarbledMessage, WorkerMessage, decode

#: Bytes taken from a connection in one read: every message waiting, as a rule.
READ_SIZE = 1 << 20
_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")


def split(data: bytes) -> tuple[list[memoryview], bytes]:
    """The whole frames at the front of ``data``, and the bytes of the unfinished one after.

    Raises
    ------
    GarbledMessage
        A length that no ``Connection`` writes (below -1): something else wrote on the
        connection.
    """
    view, pos, end, frames = memoryview(data), 0, len(data), []
    while end - pos >= 4:
        (size,) = _SHORT.unpack_from(data, pos)
        head = 4
        if size < 0:
            if size != -1:
                raise GarbledMessage(
                    f"the worker process sent a frame of length {size}, which is not a "
                    "message; something in it wrote on the runner's connection"
                )
            if end - pos < 12:
                break
            (size,) = _LONG.unpack_from(data, pos + 4)
            head = 12
        if end - pos - head < size:
            break
        frames.append(view[pos + head : pos + head + size])
        pos += head + size
    return frames, data[pos:]


def load(frame: memoryview | bytes) -> WorkerMessage:
    """The message one frame carries.

    Raises
    ------
    GarbledMessage
        The frame is no pickle, or not of a message a worker sends.
    """
    try:
        raw = pickle.loads(frame)
    except Exception as error:  # noqa: BLE001 - any junk: UnpicklingError, EOFError, ...
        raise GarbledMessage(
            f"the worker process sent {len(frame)} bytes that are not a message "
            f"({type(error).__name__}: {str(error)[:200]}); something in it wrote on the "
            "runner's connection"
        ) from None
    return decode(raw)


def read(fd: int) -> bytes:
    """What waits on ``fd`` (call it when ``fd`` is readable, or it blocks).

    Raises
    ------
    EOFError
        The other end closed the connection.
    """
    data = os.read(fd, READ_SIZE)
    if not data:
        raise EOFError
    return data


def frame(payload: bytes) -> bytes:
    """``payload`` as one frame, the way ``Connection.send_bytes`` writes it."""
    size = len(payload)
    if size > 0x7FFFFFFF:
        return _SHORT.pack(-1) + _LONG.pack(size) + payload
    return _SHORT.pack(size) + payload


def write(fd: int, payloads: list[bytes]) -> None:
    """Write ``payloads`` on ``fd``, each as one frame, in as few system calls as the
    connection takes; the worker reads them one by one.

    Raises
    ------
    OSError
        The connection is closed: the process ended.
    """
    data = memoryview(b"".join(map(frame, payloads)))
    while data:
        data = data[os.write(fd, data) :]
