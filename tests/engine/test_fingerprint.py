"""The fingerprint a running step records for later runs is taken by a child process: it is
the same as the one taken in the runner, and a failure says why."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from jupyter_parallelrun.dataset import Dataset
from jupyter_parallelrun.engine.fingerprint import fingerprint_apart
from jupyter_parallelrun.input_data import InputData


def test_the_fingerprint_taken_apart_is_the_one_taken_here(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for i in range(5):
        (folder / "sub" / f"{i}.txt").write_text(str(i))
    os.close(os.open(os.path.join(os.fsencode(folder), b"caf\xe9.bin"), os.O_CREAT | os.O_WRONLY))
    data = InputData.of(Dataset.File.from_files(str(folder)).skip(1))
    assert fingerprint_apart(data) == data.fingerprint()
    (folder / "sub" / "3.txt").write_text("changed")
    assert fingerprint_apart(data) == data.fingerprint()


def test_a_fingerprint_that_cannot_be_taken_says_why():
    # A definition the child cannot read: its error comes back with the child's traceback.
    with pytest.raises(RuntimeError, match=r"could not be taken:(.|\n)*KeyError: 'sources'"):
        fingerprint_apart(InputData({"type": "file"}))


PARENT = """
import os, subprocess, sys, time
read, write = os.pipe()
child = subprocess.Popen(
    [sys.executable, "-m", "jupyter_parallelrun.engine.fingerprint", str(os.getpid())], stdin=read
)
# Another process holds the pipe open: the child's stdin never ends on its own.
holder = subprocess.Popen(["sleep", "60"], pass_fds=(write,))
print(child.pid, holder.pid, flush=True)
time.sleep(60)
"""


def test_the_fingerprint_process_ends_with_the_runner_that_started_it():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child, holder = map(int, parent.stdout.readline().split())
    try:
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 20
        while os.path.exists(f"/proc/{child}") and _state(child) != "Z":
            assert time.monotonic() < deadline, "the fingerprint process outlived its runner"
            time.sleep(0.05)
    finally:
        for pid in (child, holder):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"
