"""The runner's bulk reads and writes speak ``multiprocessing.connection``'s framing exactly:
what it writes in one call a worker's ``Connection`` reads message by message, what a worker's
``Connection`` sends it reads whole, however the bytes arrive."""

from __future__ import annotations

import pickle
import socket
import struct
from multiprocessing.connection import Connection

import pytest

from jupyter_parallelrun.engine import frames
from jupyter_parallelrun.engine.messages import Done, GarbledMessage, RunMiniBatch, decode, encode
from jupyter_parallelrun.engine.worker_processes import wire, wire_mini_batch


@pytest.fixture
def pair():
    runner, worker = socket.socketpair()
    ends = Connection(runner.detach()), Connection(worker.detach())
    yield ends
    for end in ends:
        end.close()


def test_one_write_of_many_frames_reads_as_many_messages_on_a_connection(pair):
    runner, worker = pair
    payloads = [pickle.dumps(("mb", i, {"paths": [f"{i}.txt"]})) for i in range(50)]
    frames.write(runner.fileno(), payloads)
    assert [worker.recv_bytes() for _ in payloads] == payloads
    assert not worker.poll()


def test_every_message_a_connection_sent_is_read_at_once(pair):
    runner, worker = pair
    sent = [Done(i, 1, 1, b"row\n", 0.0, 1.0, None) for i in range(30)]
    for message in sent:
        worker.send(encode(message))
    whole, rest = frames.split(frames.read(runner.fileno()))
    assert rest == b""
    assert [frames.load(frame) for frame in whole] == sent


def test_a_frame_cut_anywhere_waits_for_its_end():
    data = b"".join(frames.frame(p) for p in (b"first", b"second" * 100, b"third"))
    for cut in range(len(data) + 1):
        whole, rest = frames.split(data[:cut])
        more, end = frames.split(rest + data[cut:])
        assert [bytes(f) for f in whole + more] == [b"first", b"second" * 100, b"third"]
        assert end == b""


def test_the_long_header_of_big_messages_is_read_too():
    # Connection.send_bytes writes -1 and an 8-byte length for a message over 2 GiB.
    data = struct.pack("!i", -1) + struct.pack("!Q", 5) + b"12345" + frames.frame(b"next")
    whole, rest = frames.split(data)
    assert [bytes(f) for f in whole] == [b"12345", b"next"] and rest == b""


def test_a_length_no_connection_writes_is_junk():
    with pytest.raises(GarbledMessage, match="frame of length -7"):
        frames.split(struct.pack("!i", -7) + b"x" * 10)


def test_bytes_that_are_no_pickle_are_junk():
    with pytest.raises(GarbledMessage, match="20 bytes that are not a message"):
        frames.load(b"this is not a pickle")


def test_a_closed_connection_reads_as_its_end(pair):
    runner, worker = pair
    worker.close()
    with pytest.raises(EOFError):
        frames.read(runner.fileno())


def test_a_mini_batch_goes_on_the_wire_as_its_message_would():
    spec = {"kind": "files", "paths": ["caf\u00e9.png"]}
    assert wire_mini_batch(3, spec) == wire(RunMiniBatch(3, spec))
    assert decode(pickle.loads(wire_mini_batch(3, spec)), (RunMiniBatch,)) == RunMiniBatch(3, spec)
