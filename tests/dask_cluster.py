"""A real Dask cluster for the tests: ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1, started as separate processes, as on three hosts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jupyter_parallelrun.engine import python_path

#: A pip package that only worker "a" has (a distribution's metadata on its sys.path).
ONLY_ON_A = "jpr-only-on-a"


class Cluster:
    """``dask scheduler`` and ``dask worker`` processes started for the tests."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.scheduler_file = folder / "scheduler.json"
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "PYTHONPATH": python_path()}
        self.processes["scheduler"] = self._start(
            "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"
        )
        deadline = time.time() + 60
        while not self.scheduler_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        site = folder / "site-a"
        (site / "jpr_only_on_a-1.0.dist-info").mkdir(parents=True)
        (site / "jpr_only_on_a-1.0.dist-info" / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {ONLY_ON_A}\nVersion: 1.0\n"
        )
        self.start_worker("a", site)
        self.start_worker("b")
        self.wait_for(2)

    def _start(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        name = args[0] if args[0] == "scheduler" else args[args.index("--name") + 1]
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - kept by the process
        return subprocess.Popen(
            [sys.executable, "-m", "dask", *args, "--scheduler-file", str(self.scheduler_file)],
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def start_worker(self, name: str, site: Path | None = None) -> None:
        env = dict(self.env)
        if site is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
        # No nanny: killing the worker's pid kills the worker, as losing its host would.
        self.processes[name] = self._start(
            "worker",
            "--name",
            name,
            "--nthreads",
            "1",
            "--no-nanny",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
            "--local-directory",
            str(self.folder / name),
            env=env,
        )

    def workers(self) -> dict[str, str]:
        """Dask worker name -> address."""
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            info = client.scheduler_info()["workers"]
        return {w["name"]: address for address, w in info.items()}

    def wait_for(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=60)

    def kill_worker(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()

    @contextlib.contextmanager
    def killed(self, address: str):
        """SIGKILL the Dask worker at ``address``; a new one takes its place afterwards."""
        name = {a: n for n, a in self.workers().items()}[address]
        self.kill_worker(name)
        try:
            yield
        finally:
            self.start_worker(f"{name}-again")
            self.wait_for(2)

    def shut_down(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
