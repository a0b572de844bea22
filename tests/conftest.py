"""Shared fixtures: tmp_path workspaces, entry scripts and input files written for real."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from jupyter_parallelrun import (
    Dataset,
    Experiment,
    ParallelRunConfig,
    ParallelRunStep,
    Pipeline,
    PipelineData,
    Workspace,
)
from jupyter_parallelrun.store_lease import LEASE_ENV

# Runners started by the tests (kernels and servers of session fixtures included) hold 6-second
# leases (30 by default), so a test that kills a runner sees its run lost within seconds; a test
# may set a longer one with monkeypatch.
os.environ.setdefault(LEASE_ENV, "6")


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.create("test", path=tmp_path / "ws")


@pytest.fixture
def open_ws():
    """A workspace every user can walk down to, unlike pytest's own 0700 folders: what the
    user nobody cannot read in it is kept from them by the file's own mode."""
    folder = Path(tempfile.mkdtemp(prefix="jpr-open-"))
    folder.chmod(0o755)
    yield Workspace.create("test", path=folder / "ws")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def write_script(tmp_path: Path):
    """Write an entry script into its own source folder; returns the folder."""

    def write(body: str, name: str = "score.py") -> Path:
        folder = tmp_path / f"src_{len(list(tmp_path.glob('src_*')))}"
        folder.mkdir()
        (folder / name).write_text(textwrap.dedent(body))
        return folder

    return write


@pytest.fixture
def files(tmp_path: Path):
    """Make ``count`` small text files ``item_000.txt`` ... holding their index."""

    def make(count: int, folder: str = "inputs") -> Path:
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (root / f"item_{i:03d}.txt").write_text(str(i))
        return root

    return make


ECHO_SCRIPT = """
import os

def init():
    pass

def run(mini_batch):
    return [f"{os.path.basename(p)} {open(p).read()}" for p in mini_batch]
"""


def submit_step(
    ws: Workspace,
    source_directory: Path,
    dataset,
    *,
    entry_script: str = "score.py",
    experiment: str = "tests",
    step_kwargs: dict | None = None,
    pipeline_parameters: dict | None = None,
    **config,
):
    """Submit a one-step pipeline; returns the PipelineRun."""
    config.setdefault("mini_batch_size", 4)
    config.setdefault("error_threshold", -1)
    config.setdefault("process_count_per_node", 2)
    cfg = ParallelRunConfig(
        source_directory=str(source_directory), entry_script=entry_script, **config
    )
    out = PipelineData(name="scores", datastore=ws.get_default_datastore())
    step = ParallelRunStep(
        name="score-step",
        parallel_run_config=cfg,
        inputs=[dataset.as_named_input("items")],
        output=out,
        **{"allow_reuse": False, **(step_kwargs or {})},
    )
    pipeline = Pipeline(workspace=ws, steps=[step])
    return Experiment(ws, experiment).submit(pipeline, pipeline_parameters=pipeline_parameters)


def output_rows(run, name: str = "score-step") -> list[str]:
    """The append_row file of a finished step, as lines."""
    step_run = run.find_step_run(name)[0]
    out = step_run.get_output_data("scores")
    record = step_run._record["spec"]["config"]
    path = out.datastore.local_path(out.path_on_datastore) / record["append_row_file_name"]
    return path.read_text().splitlines() if path.exists() else []


def file_dataset(folder: Path):
    return Dataset.File.from_files(path=str(folder))


def row_key(row: str) -> str:
    """The input item a row of the fault tests' scripts is about: the text before its first tab
    (the scripts write ``f"{file name}\\t{...}"``)."""
    return row.split("\t", 1)[0]


def file_keys(spec: dict) -> list[str]:
    """The input items of a file mini-batch: its files' names."""
    return [os.path.basename(path) for path in spec["paths"]]


@dataclass
class Outcome:
    """What :func:`assert_guarantee` found, for a test's own further checks."""

    status: str
    rows: list[str]
    done: set[str]
    failed: set[str]
    mini_batches: list[dict]
    errors: list[dict]


def assert_guarantee(
    run,
    items: Iterable[str],
    *,
    row_key: Callable[[str], str] = row_key,
    mini_batch_keys: Callable[[dict], list[str]] = file_keys,
    step: str = "score-step",
) -> Outcome:
    """Assert issue 3's guarantee on a finished step run, whatever faults it met.

    Every input item appears exactly once, either among the output rows of a successful
    mini-batch or in the failure record with its cause; no output row appears twice; the run's
    counters equal what the output file and the failure record hold.

    Parameters
    ----------
    run : PipelineRun or StepRun
        A finished run (the step called ``step`` of a pipeline run).
    items : iterable of str
        The keys of every input item (file names for file input).
    row_key
        The item key of one output row.
    mini_batch_keys
        The item keys of a mini-batch, from its spec.

    Notes
    -----
    The failure record is the committed mini-batches (the run store) with the errors of
    ``get_details()``; the counters are the run's and ``get_metrics()``. A run that did not
    complete may leave items in no committed mini-batch: its own error is their cause. Rows
    are assumed one per succeeded item, as the test scripts write them.
    """
    step_run = run.find_step_run(step)[0] if hasattr(run, "find_step_run") else run
    store = step_run.experiment.workspace.store
    record = store.get_run(step_run.id)
    assert record["status"] in ("Completed", "Failed", "Canceled"), record["status"]
    items = list(items)
    assert len(set(items)) == len(items), "the test's input keys must be unique"

    # The output file holds whole rows, exactly the committed ones, none twice.
    spec = record["spec"]
    output = step_run.get_output_data(spec["output"]["name"])
    path = output.datastore.local_path(output.path_on_datastore)
    path = path / spec["config"]["append_row_file_name"]
    data = path.read_bytes() if path.exists() else b""
    batches = store.mini_batches(step_run.id)
    committed_end = max((mb["output_end"] or 0 for mb in batches), default=0)
    assert len(data) == committed_end == record["output_bytes"], (
        f"{path} holds {len(data)} bytes; committed: {committed_end} (mini-batches), "
        f"{record['output_bytes']} (run counter)"
    )
    assert not data or data.endswith(b"\n"), f"{path} ends in a torn row: {data[-80:]!r}"
    rows = data.decode("utf-8").splitlines()
    twice = [row for row, n in Counter(rows).items() if n > 1]
    assert not twice, f"rows appear more than once: {twice[:5]}"
    keys = [row_key(row) for row in rows]
    twice = [key for key, n in Counter(keys).items() if n > 1]
    assert not twice, f"items have more than one row: {twice[:5]}"

    # Each committed mini-batch accounts for each of its items once: a row, or a failure.
    errors = step_run.get_details()["errors"]
    causes = defaultdict(list)
    for error in errors:
        causes[error["miniBatch"]].append(error)
    owner: dict[str, int] = {}
    with_rows = set(keys)
    done: set[str] = set()
    failed: set[str] = set()
    for mb in batches:
        mb_keys = mini_batch_keys(mb["spec"])
        for key in mb_keys:
            assert key not in owner, f"{key} is in mini-batches {owner[key]} and {mb['mb_id']}"
            owner[key] = mb["mb_id"]
        ok = with_rows.intersection(mb_keys)
        tries = causes[mb["mb_id"]]
        if mb["status"] == "done":
            assert (mb["succeeded"], mb["failed"]) == (len(ok), len(mb_keys) - len(ok)), mb
            assert len(tries) >= mb["tries"] - 1, (mb, tries)
        else:
            assert mb["status"] == "failed", mb
            assert not ok, f"failed mini-batch {mb['mb_id']} has rows for {sorted(ok)}"
            assert (mb["succeeded"], mb["failed"]) == (0, len(mb_keys)), mb
            assert mb["error"], mb
            last = [e for e in tries if (e["try"], e["exception"]) == (mb["tries"], mb["error"])]
            assert last, f"the cause of failed mini-batch {mb['mb_id']} is not recorded: {tries}"
        done |= ok
        failed |= set(mb_keys) - ok
    stray = with_rows - set(owner)
    assert not stray, f"rows of items no committed mini-batch holds: {sorted(stray)[:5]}"
    unknown = set(owner) - set(items)
    assert not unknown, f"mini-batches hold items that are not input: {sorted(unknown)[:5]}"
    if record["status"] == "Completed":
        missing = set(items) - set(owner)
        assert not missing, f"input items in no output row and no failure: {sorted(missing)[:5]}"
        assert record["mb_total"] == len(batches), (record["mb_total"], len(batches))
    else:
        assert record["error"], "a run that did not complete must say why"

    # The counters equal what the file and the failure record hold.
    metrics = step_run.get_metrics()
    n_done = sum(mb["status"] == "done" for mb in batches)
    assert (
        metrics["items_done"],
        metrics["items_failed"],
        metrics["mini_batches_done"],
        metrics["mini_batches_failed"],
    ) == (len(done), len(failed), n_done, len(batches) - n_done), metrics
    return Outcome(record["status"], rows, done, failed, batches, errors)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """Azurite, the Azure Storage emulator, on a free port of 127.0.0.1 for the whole session
    (``npm install -g azurite``; .ci/run installs it). Stopped at the end."""
    from jupyter_parallelrun.demo.azurite import Azurite

    emulator = Azurite(tmp_path_factory.mktemp("azurite"))
    yield emulator
    emulator.stop()


@pytest.fixture
def container(azurite, request) -> str:
    """A new, empty container in Azurite, named after the test."""
    name = "t" + "".join(ch for ch in request.node.name.lower() if ch.isalnum())[-40:]
    name = f"{name}{len(_containers)}"
    _containers.append(name)
    azurite.create_container(name)
    return name


_containers: list[str] = []
# -- issue 11: racing owners and a locked store ------------------------------------------------

#: A second user: resumes the run when told to go, and says what came of it.
RESUME = """
import os, sys, time
from jupyter_parallelrun import Run, Workspace

ws_dir, run_id, go = sys.argv[1:4]
run = Run.get(Workspace(path=ws_dir), run_id)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
try:
    run.resume()
except Exception as error:
    print(f"refused {type(error).__name__}: {error}", flush=True)
else:
    print("resumed", flush=True)
"""


def race_resumes(ws: Workspace, run, folder: Path) -> None:
    """Two processes call ``run.resume()`` at the same moment: exactly one must get the run,
    the other an error naming its runner, and one runner at most must be running it."""
    go = folder / f"go-{time.monotonic_ns()}"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RESUME, str(ws.config_file.parent), run.id, str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in processes:
        assert process.stdout.readline().strip() == "ready"
    go.touch()
    said = sorted(process.communicate(timeout=120)[0].strip() for process in processes)
    assert said[0].startswith("refused RunAlreadyRunning: ") and said[1] == "resumed", said
    assert "is already running: runner pid" in said[0], said
    assert len(runners(run.id)) <= 1


def runners(run_id: str) -> list[int]:
    """Pids of the live runner processes of ``run_id`` on this machine."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
            if b"jupyter_parallelrun.engine.runner" in args and run_id.encode() in args:
                found.append(int(entry))
    return found


#: Another connection that holds the store's write lock for a while (argv: store, seconds).
LOCK = """
import sqlite3, sys, time

db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""
#: Past the 30 seconds sqlite3 waited for a lock before the store waited with retries.
LOCKED_SECONDS = 33


def hold_write_lock(ws: Workspace, seconds: float) -> subprocess.Popen:
    """Start a process that holds the store's write lock for ``seconds``; returns once it
    holds it (wait on the process for the end)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK, str(ws.store.path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder
