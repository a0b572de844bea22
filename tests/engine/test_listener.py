"""The runner's listener against strangers, on local runs with real worker processes.

A port scan, garbage, a wrong key or a peer that connects and says nothing must cost a line in
the runner log and nothing else: every worker, and every replacement of a lost one, still
connects, and the step's key is never where another user can read it.
"""

from __future__ import annotations

import os
import sys
import time
from multiprocessing.connection import Client

import pytest
from intruders import (
    assert_all_workers_served,
    besieged_run,
    half_open,
    knock,
    skip_if_nobody_untested,
)

from jupyter_parallelrun import Environment
from jupyter_parallelrun.engine import listener as listener_module
from jupyter_parallelrun.engine.listener import HANDSHAKE_ENV, WorkerListener


def test_a_local_run_survives_strangers_on_its_socket(
    open_ws, write_script, files, tmp_path, monkeypatch
):
    run, _ = besieged_run(open_ws, write_script, files, tmp_path / "siege", monkeypatch)
    assert_all_workers_served(open_ws, run)
    skip_if_nobody_untested()


def test_a_worker_under_another_interpreter_gets_its_key_unseen(
    open_ws, write_script, files, tmp_path, monkeypatch
):
    # A different path to a Python makes the backend exec it, with the arguments on stdin.
    interpreter = tmp_path / "python"
    interpreter.write_text(f'#!/bin/sh\nexec "{os.path.realpath(sys.executable)}" "$@"\n')
    interpreter.chmod(0o755)
    env = Environment("other-python")
    env.python.interpreter_path = str(interpreter)
    folder = tmp_path / "siege"
    run, _ = besieged_run(open_ws, write_script, files, folder, monkeypatch, environment=env)
    assert_all_workers_served(open_ws, run)
    skip_if_nobody_untested()


def _events(listener, count: int, timeout: float = 30) -> list:
    deadline, seen = time.monotonic() + timeout, []
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only {seen} within {timeout:g}s"
        seen += list(listener.events())
        time.sleep(0.02)
    return seen


@pytest.mark.parametrize("family", ["AF_UNIX", "AF_INET"])
def test_the_listener_lets_a_worker_in_past_a_silent_peer_and_logs_each_stranger(family):
    address = ("127.0.0.1", 0) if family == "AF_INET" else None
    listener = WorkerListener(family, address, ["process000"], handshake_timeout=2)
    silent = half_open(family, listener.address)
    try:
        knock(family, listener.address)
        worker = Client(listener.address, family=family, authkey=listener.authkey)
        worker.send(("hello", "process000", os.getpid(), 0))
        stranger = Client(listener.address, family=family, authkey=listener.authkey)
        stranger.send(("hello", "someone-else", os.getpid(), 0))
        events = _events(listener, 6)
    finally:
        silent.close()
        listener.close()
    (arrival,) = [e for e in events if not isinstance(e, str)]
    assert arrival[:3] == ("process000", os.getpid(), 0)
    arrival[3].send(("mb", 0, {}))  # the connection is the worker's, open both ways
    assert worker.recv() == ("mb", 0, {})
    refused = sorted(e for e in events if isinstance(e, str))
    assert len(refused) == 5 and all("refused a connection from" in e for e in refused)
    text = "\n".join(refused)
    for reason in ("wrong authkey", "within 2s", "instead of a hello", "broke off the handshake"):
        assert reason in text, text
    listener._thread.join(timeout=5)
    assert not listener._thread.is_alive(), "close() left the accept thread blocked"
    if family == "AF_UNIX":
        assert not os.path.exists(listener.address)


def test_connections_beyond_the_handshakes_in_progress_are_closed_at_once(monkeypatch):
    monkeypatch.setattr(listener_module, "MAX_HANDSHAKES", 1)
    listener = WorkerListener("AF_UNIX", None, ["process000"], handshake_timeout=30)
    silent = half_open("AF_UNIX", listener.address)
    try:
        with half_open("AF_UNIX", listener.address) as extra:
            assert extra.recv(1) == b""  # hung up on at once, not after 30s
        (refused,) = _events(listener, 1)
        assert refused.startswith("refused a connection: 1 handshakes are already in progress")
    finally:
        silent.close()
        listener.close()


@pytest.mark.parametrize("value", ["abc", "0", "-3", "nan", "inf"])
def test_a_handshake_deadline_that_is_no_time_is_refused_naming_it(value, monkeypatch):
    monkeypatch.setenv(HANDSHAKE_ENV, value)
    with pytest.raises(ValueError) as raised:
        WorkerListener("AF_UNIX", None, ["process000"], handshake_timeout=60)
    assert str(raised.value) == (
        f"{HANDSHAKE_ENV} must be a positive number of seconds; got {value!r}"
    )
