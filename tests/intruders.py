"""Other users and strangers on the network, for the tests of what the runner lets in.

``as_nobody`` runs a scan as the user ``nobody`` (root is needed to become it); ``knock`` tries
a live runner's listener the ways a port scan, a wrong key and an idle peer do; ``KEY_SCRIPT``
is an entry script whose ``run()`` hands the test the step's key (found in the worker's own
frames, where only the process itself can see it) and then waits for a go-ahead;
``besieged_run`` submits a run of it, local or on Dask, and lays ``besiege`` to it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import AuthenticationError, Client
from pathlib import Path

import pytest
from conftest import assert_guarantee, file_dataset, submit_step

from jupyter_parallelrun.engine.listener import HANDSHAKE_ENV

KEY_SCRIPT = """
import os
import sys
import time


def _authkey():
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "worker_main":
            return frame.f_locals["authkey"].hex()
        frame = frame.f_back
    raise RuntimeError("run() was not called by worker_main")


def init():
    pass


def run(mini_batch):
    with open(os.path.join(os.environ["KEY_FOLDER"], str(os.getpid())), "w") as out:
        out.write(_authkey())
    while not os.path.exists(os.environ["GO_FILE"]):
        time.sleep(0.05)
    marker = os.environ["GO_FILE"] + ".crashed"
    if any(p.endswith(os.environ["CRASH_ITEM"]) for p in mini_batch):
        if not os.path.exists(marker):  # its replacement must connect after the intruders
            open(marker, "w").close()
            os._exit(3)
    return [f"{os.path.basename(p)}\\t{os.getpid()}" for p in mini_batch]
"""

#: Seconds a connection has to say hello in the sieges (HANDSHAKE_ENV): each siege waits this
#: long for a silent peer to be dropped. Worker handshakes take milliseconds; the workers'
#: start-up (imports, init()) is not part of it.
HANDSHAKE_SECONDS = 3
#: The items of a besieged run.
ITEMS = [f"item_{i:03d}.txt" for i in range(8)]

# Run as nobody: every process's command line (and environment, where readable) searched for
# the key in the forms it could take, and the files given tried for reading.
_SCAN = """
import base64, json, os, sys
job = json.loads(sys.stdin.read())
raw = bytes.fromhex(job["key"])
forms = [job["key"].encode(), job["key"].upper().encode(), raw, base64.b64encode(raw)]
found, seen = [], []
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == os.getpid():
        continue
    for part in ("cmdline", "environ"):
        try:
            with open(f"/proc/{pid}/{part}", "rb") as f:
                data = f.read()
        except OSError:
            continue
        if part == "cmdline":
            seen.append(int(pid))
        if any(form in data for form in forms):
            found.append([int(pid), part, data[:300].decode(errors="replace")])
readable = {}
for path in job["paths"]:
    try:
        with open(path, "rb") as f:
            f.read(1)
        readable[path] = "read"
    except PermissionError:
        readable[path] = "denied"
    except FileNotFoundError:
        readable[path] = "missing"
print(json.dumps({"uid": os.getuid(), "found": found, "seen": seen, "readable": readable}))
"""


def nobody_missing() -> str | None:
    """Why this test process cannot act as the user nobody; None when it can."""
    if os.geteuid() != 0:
        return "becoming the user nobody needs root"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    return None


def as_nobody(key: str, paths: list[str]) -> dict:
    """Scan every process for ``key`` and try to read ``paths``, as the user ``nobody``."""
    missing = nobody_missing()
    if missing:
        pytest.skip(missing)
    scan = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        + [sys.executable, "-I", "-c", _SCAN],
        input=json.dumps({"key": key, "paths": paths}),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(scan.stdout)
    assert result["uid"] != 0
    return result


def listening_addresses(pid: int) -> list[tuple[str, object]]:
    """The sockets process ``pid`` listens on: ``("AF_INET", (host, port))`` or
    ``("AF_UNIX", path)``, found through its descriptors and /proc/net."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found: list[tuple[str, object]] = []
    with open(f"/proc/{pid}/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                host, port = fields[1].split(":")
                address = socket.inet_ntoa(bytes.fromhex(host)[::-1])
                found.append(("AF_INET", (address, int(port, 16))))
    with open(f"/proc/{pid}/net/unix") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            # Num RefCount Protocol Flags Type St Inode Path; flag 0x10000: accepting
            if len(fields) >= 8 and int(fields[3], 16) & 0x10000 and fields[6] in inodes:
                found.append(("AF_UNIX", fields[7]))
    return found


def _connect(family: str, address) -> socket.socket:
    sock = socket.socket(getattr(socket, family), socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(address)
    return sock


def half_open(family: str, address) -> socket.socket:
    """A connection that sends nothing; the caller closes it."""
    return _connect(family, address)


def knock(family: str, address) -> None:
    """A port scanner's connect-and-close, a connection sending garbage, and a client with the
    wrong key, each of which must be answered (refused) at once."""
    _connect(family, address).close()
    with _connect(family, address) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(64))
        try:
            while sock.recv(4096):  # the runner hangs up on it
                pass
        except ConnectionResetError:  # hung up with the garbage unread
            pass
    refused: list[BaseException] = []

    def wrong_key() -> None:
        try:
            Client(address, family=family, authkey=b"not the key").close()
        except (AuthenticationError, OSError, EOFError) as error:
            refused.append(error)

    attempt = threading.Thread(target=wrong_key, daemon=True)
    attempt.start()
    attempt.join(timeout=30)
    assert not attempt.is_alive(), "a client with a wrong key got no answer within 30s"
    assert refused and isinstance(refused[0], AuthenticationError), refused


def _wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g}s"
        time.sleep(0.05)


def besiege(ws, run, folder: Path, workers: int, handshake_timeout: float) -> str:
    """Attack a live run of ``KEY_SCRIPT`` whose ``workers`` processes all wait in ``run()``,
    then let it go on; returns the step's key.

    As nobody: no command line or readable environment of any process holds the key, and the
    workspace's store and run logs cannot be read (its config can, so the folders are open to
    nobody; so can the output file once the run is done). On
    the runner's listener: a half-open connection, and while it is open a connect-and-close,
    garbage and a wrong key, each answered; then, once the half-open one is dropped and logged,
    a second one held open while the run goes on (a worker's replacement must get through).
    """
    step = run.find_step_run("score-step")[0]
    keys = folder / "keys"

    def all_waiting():
        found = {path.name: path.read_text() for path in keys.iterdir() if path.stat().st_size}
        return found if len(found) >= workers else None

    found = _wait_until(all_waiting, 120, f"{workers} workers reaching run()")
    assert len(set(found.values())) == 1, "the workers of one run hold different keys"
    key = next(iter(found.values()))

    store = ws.path / "store.sqlite"
    log = ws.path / "runs" / step.id / "logs" / "runner.txt"
    private = [str(store), f"{store}-wal", f"{store}-shm", str(log)]
    missing = nobody_missing()  # without root the rest is still tested (see below)
    if not missing:
        scan = as_nobody(key, [*private, str(ws.config_file)])
        assert scan["found"] == [], f"the key is visible to nobody in /proc: {scan['found']}"
        assert {int(pid) for pid in found} <= set(scan["seen"]), "the scan missed the workers"
        # The config can be read: the folders are open to nobody, the private files are not.
        assert scan["readable"] == {
            **dict.fromkeys(private, "denied"),
            str(ws.config_file): "read",
        }, scan["readable"]

    (family, address), *rest = listening_addresses(ws.store.get_run(run.id)["runner_pid"])
    assert not rest, f"the runner listens on more than one socket: {rest}"
    first = half_open(family, address)
    try:
        knock(family, address)
        _wait_until(
            lambda: f"within {handshake_timeout:g}s" in log.read_text(),
            handshake_timeout + 60,
            "the half-open connection being dropped",
        )
    finally:
        first.close()
    second = half_open(family, address)
    try:
        (folder / "go").touch()
        assert run.wait_for_completion(timeout_seconds=180) == "Completed"
    finally:
        second.close()

    # What the user shares stays readable: the output file in its datastore.
    output = step.get_output_data(step._record["spec"]["output"]["name"])
    rows = output.datastore.local_path(output.path_on_datastore)
    rows = rows / step._record["spec"]["config"]["append_row_file_name"]
    if not missing:
        assert as_nobody(key, [str(rows)])["readable"] == {str(rows): "read"}
    return key


def skip_if_nobody_untested() -> None:
    """End a test whose other-user checks could not run as skipped, saying why."""
    missing = nobody_missing()
    if missing:
        pytest.skip(f"{missing}: the listener was tested, not what other users can see")


def besieged_run(
    ws, write_script, files, folder: Path, monkeypatch, *, workers: int = 2, **config
) -> tuple:
    """Submit a run of ``KEY_SCRIPT`` over 8 items on ``workers`` processes (local, or as the
    ``config`` places them) and lay :func:`besiege` to it; returns the run and its key.

    The runner takes its handshake deadline from the environment (``HANDSHAKE_SECONDS``); the
    workers keep the default ``heartbeat_timeout``, so a loaded machine does not lose them.
    """
    (folder / "keys").mkdir(parents=True)
    monkeypatch.setenv(HANDSHAKE_ENV, str(HANDSHAKE_SECONDS))
    config = {"node_count": 1, "process_count_per_node": workers, **config}
    run = submit_step(
        ws,
        write_script(KEY_SCRIPT),
        file_dataset(files(len(ITEMS))),
        mini_batch_size=1,
        run_max_try=2,
        run_invocation_timeout=300,
        environment_variables={
            "KEY_FOLDER": str(folder / "keys"),
            "GO_FILE": str(folder / "go"),
            "CRASH_ITEM": "item_005.txt",
        },
        **config,
    )
    monkeypatch.delenv(HANDSHAKE_ENV)
    key = besiege(ws, run, folder, workers=workers, handshake_timeout=HANDSHAKE_SECONDS)
    return run, key


def assert_all_workers_served(ws, run, peer: str = "") -> None:
    """Every item done once, both workers stopped cleanly, the crashed one's replacement got in
    after the siege, and each kind of stranger (``peer``: where they came from) was logged."""
    assert assert_guarantee(run, ITEMS).done == set(ITEMS)
    step = run.find_step_run("score-step")[0]
    workers = ws.store.workers(step.id)
    assert [(w["state"], w["error"]) for w in workers] == [("stopped", None)] * 2
    assert sum(w["restarts"] for w in workers) == 1
    log = (ws.path / "runs" / step.id / "logs" / "runner.txt").read_text()
    refused = [line for line in log.splitlines() if f"refused a connection from {peer}" in line]
    assert len(refused) >= 4, log
    assert any("wrong authkey" in line for line in refused), log
    assert any(f"within {HANDSHAKE_SECONDS}s ({HANDSHAKE_ENV})" in line for line in refused), log
