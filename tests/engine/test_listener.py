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
from pathlib import Path

import pytest
from conftest import assert_guarantee, file_dataset, submit_step
from intruders import KEY_SCRIPT, besiege, half_open, knock, skip_if_nobody_untested

from jupyter_parallelrun import Environment
from jupyter_parallelrun.engine import listener as listener_module
from jupyter_parallelrun.engine.listener import WorkerListener

HANDSHAKE_TIMEOUT = 15  # the run's heartbeat_timeout: a loaded machine starts workers slowly


def names(count: int) -> list[str]:
    return [f"item_{i:03d}.txt" for i in range(count)]


def _besieged_run(ws, write_script, files, folder: Path, **config):
    (folder / "keys").mkdir(parents=True)
    run = submit_step(
        ws,
        write_script(KEY_SCRIPT),
        file_dataset(files(8)),
        mini_batch_size=1,
        node_count=1,
        process_count_per_node=2,
        run_max_try=2,
        run_invocation_timeout=300,
        heartbeat_timeout=HANDSHAKE_TIMEOUT,
        environment_variables={
            "KEY_FOLDER": str(folder / "keys"),
            "GO_FILE": str(folder / "go"),
            "CRASH_ITEM": "item_005.txt",
        },
        **config,
    )
    besiege(ws, run, folder, workers=2, handshake_timeout=HANDSHAKE_TIMEOUT)
    return run


def _assert_all_workers_served(ws, run) -> None:
    assert assert_guarantee(run, names(8)).done == set(names(8))
    step = run.find_step_run("score-step")[0]
    workers = ws.store.workers(step.id)
    assert [(w["state"], w["error"]) for w in workers] == [("stopped", None)] * 2
    # The crashed worker was replaced after the intruders came, and its replacement got in.
    assert sum(w["restarts"] for w in workers) == 1
    log = (ws.path / "runs" / step.id / "logs" / "runner.txt").read_text()
    refused = [line for line in log.splitlines() if "refused a connection from" in line]
    assert len(refused) >= 4, log
    assert any("wrong authkey" in line for line in refused), log
    assert any(f"within {HANDSHAKE_TIMEOUT}s" in line for line in refused), log
    skip_if_nobody_untested()


def test_a_local_run_survives_strangers_on_its_socket(open_ws, write_script, files, tmp_path):
    run = _besieged_run(open_ws, write_script, files, tmp_path / "siege")
    _assert_all_workers_served(open_ws, run)


def test_a_worker_under_another_interpreter_gets_its_key_unseen(
    open_ws, write_script, files, tmp_path
):
    # A different path to a Python makes the backend exec it, with the arguments on stdin.
    interpreter = tmp_path / "python"
    interpreter.write_text(f'#!/bin/sh\nexec "{os.path.realpath(sys.executable)}" "$@"\n')
    interpreter.chmod(0o755)
    env = Environment("other-python")
    env.python.interpreter_path = str(interpreter)
    run = _besieged_run(open_ws, write_script, files, tmp_path / "siege", environment=env)
    _assert_all_workers_served(open_ws, run)


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
