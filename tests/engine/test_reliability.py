"""Issue 3's faults, each on a real run with real processes, and the guarantee after each.

The guarantee (checked by ``conftest.assert_guarantee``): every input item appears exactly once,
either among the output rows of a successful mini-batch or in the failure record with its
cause; no output row appears twice; the run's counters equal what the output file and the
failure record hold.

The entry script ``FAULTY`` is the same for most tests; what goes wrong, on which item and how
often comes from environment variables (``ParallelRunConfig(environment_variables=...)``), and
every output row starts with its input file's name, so "exactly once" can be checked.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_guarantee, file_dataset, submit_step

from jupyter_parallelrun import ActivityFailedException, Dataset
from jupyter_parallelrun.engine.scheduler import PREFETCH

FAULTY = """
import ctypes
import os
import signal
import time

from jupyter_parallelrun import EntryScript

CALLS = os.environ["CALLS"]


def fault(kind):
    if kind == "raise":
        raise RuntimeError("injected fault")
    if kind == "sleep":  # C code: the interpreter waits inside the sleep call
        time.sleep(600)
    if kind == "numpy":  # one long LAPACK call that never looks at signals
        import numpy

        numpy.linalg.eigvals(numpy.random.default_rng(0).random((4000, 4000)))
    if kind == "signals_blocked":
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
            signal.signal(number, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            pass
    if kind == "exit":
        os._exit(3)
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "sigsegv":  # a real segmentation fault: reading address 0 from C
        ctypes.string_at(0)
    if kind == "oom":  # into a memory cgroup too small for what follows: the kernel kills us
        with open(os.path.join(os.environ["FAULT_CGROUP"], "cgroup.procs"), "w") as procs:
            procs.write(str(os.getpid()))
        hog = b"x" * (1 << 30)
        raise AssertionError(f"{len(hog)} bytes allocated in a 64 MB cgroup")


def first_time(name):
    try:
        os.close(os.open(f"{CALLS}.{name}.faulted", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def init():
    with open(CALLS + ".init", "a") as log:
        log.write(f"{os.getpid()}\\n")
    kind = os.environ.get("INIT_FAULT")
    if kind and os.environ.get("INIT_FAULT_PROCESS", EntryScript().process_name) == (
        EntryScript().process_name
    ):
        fault(kind)


def run(mini_batch):
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        with open(CALLS, "a") as log:
            log.write(f"{os.getppid()}\\t{os.getpid()}\\t{name}\\n")
        if name == os.environ.get("FAULT_ITEM") and (
            not os.environ.get("FAULT_ONCE") or first_time(name)
        ):
            fault(os.environ["FAULT"])
        value = int(open(path).read())
        time.sleep(float(os.environ.get("DELAY", "0")))
        rows.append(f"{name}\\t{os.getpid()}\\t{value}\\t" + "x" * int(os.environ.get("PAD", "0")))
    return rows
"""


@pytest.fixture
def faulty(write_script, tmp_path):
    """``(source folder, calls log)`` of the FAULTY entry script."""
    return write_script(FAULTY), tmp_path / "calls.txt"


def _names(count: int) -> list[str]:
    return [f"item_{i:03d}.txt" for i in range(count)]


def _submit(ws, faulty, inputs, env=None, **config):
    source, calls = faulty
    variables = {"CALLS": str(calls), **(env or {})}
    return submit_step(ws, source, file_dataset(inputs), environment_variables=variables, **config)


def _step(run):
    return run.find_step_run("score-step")[0]


def _runner_log(ws, step) -> str:
    return (ws.path / "runs" / step.id / "logs" / "runner.txt").read_text()


def _calls(calls: Path) -> list[tuple[int, int, str]]:
    """``(parent pid, pid, file name)`` of every item run() was called on."""
    if not calls.exists():
        return []
    return [
        (int(ppid), int(pid), name)
        for ppid, pid, name in (line.split("\t") for line in calls.read_text().splitlines())
    ]


def _ipython():
    """The test session's IPython shell, with the extension loaded."""
    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()
    ip.run_line_magic("load_ext", "jupyter_parallelrun")
    return ip


def _timestamp(utc: str) -> float:
    """Seconds since the epoch of a time as get_details() shows it."""
    return (
        datetime.datetime.strptime(utc, "%Y-%m-%dT%H:%M:%S.%fZ")
        .replace(tzinfo=datetime.timezone.utc)
        .timestamp()
    )


def _wait_for(condition, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "the run did not get that far"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _as_root(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise OSError(f"{' '.join(command)}: {done.stderr.strip()}")


@pytest.fixture
def root():
    """Skip unless root: the tests below mount file systems, mark files immutable (which even
    root cannot write) or make cgroups. Permissions alone would not stop root."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mount, chattr, cgroups)")


@pytest.fixture
def datastore_folder(ws, root):
    """The default datastore's folder, where the step's output goes."""
    return ws.get_default_datastore().local_path("")


# -- 1. run() stuck past run_invocation_timeout ----------------------------------------------


@pytest.mark.parametrize("stuck", ["sleep", "numpy", "signals_blocked"])
def test_a_stuck_run_is_stopped_retried_then_counted_while_others_go_on(ws, faulty, files, stuck):
    timeout = 1
    run = _submit(
        ws,
        faulty,
        files(12),
        {"FAULT_ITEM": "item_002.txt", "FAULT": stuck, "DELAY": "0.1"},
        mini_batch_size=1,
        run_invocation_timeout=timeout,
        run_max_try=2,
    )
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    outcome = assert_guarantee(run, _names(12))
    assert outcome.failed == {"item_002.txt"}
    (stuck_mb,) = [mb for mb in outcome.mini_batches if mb["status"] == "failed"]
    tries = sorted(
        (e for e in outcome.errors if e["miniBatch"] == stuck_mb["mb_id"]), key=lambda e: e["try"]
    )
    assert [e["try"] for e in tries] == [1, 2] and stuck_mb["tries"] == 2
    assert all(f"exceeded run_invocation_timeout={timeout}s" in e["exception"] for e in tries)
    assert all(e["signal"] == signal.SIGKILL for e in tries)
    # Stopped at the limit, not before it, and not when the call would have ended: a sleep of
    # 600 s and a loop that never ends cannot end within the wait above, and an eigvals call
    # that ended would have returned rows, not a try killed by SIGKILL.
    assert stuck_mb["ended"] - stuck_mb["started"] >= timeout
    # Each killed process was replaced, and no process ran a mini-batch without running init()
    # first, once. Whether a replacement gets work here is a race (its start against the other
    # worker finishing the rest; on a loaded machine both replacements lose it and are stopped
    # before their init()): the next test makes a replacement's init() certain.
    step = _step(run)
    assert sum(w["restarts"] for w in step.get_details()["workers"]) == 2
    inits = [int(pid) for pid in faulty[1].with_name("calls.txt.init").read_text().split()]
    assert len(inits) == len(set(inits))
    killed = {e["pid"] for e in tries}
    assert len(killed) == 2 and killed <= set(inits)
    assert {pid for _, pid, _ in _calls(faulty[1])} <= set(inits)
    # The other worker kept finishing mini-batches while a stuck call ran.
    assert any(
        mb["worker"] != error["process"]
        and _timestamp(error["timeUtc"]) - timeout - 0.5 <= mb["ended"]
        and mb["ended"] <= _timestamp(error["timeUtc"])
        for error in tries
        for mb in outcome.mini_batches
    ), "no other worker finished a mini-batch while the stuck call ran"


def test_each_replacement_of_a_stuck_process_runs_init_before_its_work(ws, faulty, files):
    # One process, and more input than it holds queued when it is killed (a retry goes behind
    # what was queued, input not yet sent behind the retry): after each kill the rest waits for
    # the replacement, so each one must start, run init() and take over, however slowly.
    run = _submit(
        ws,
        faulty,
        files(6),
        {"FAULT_ITEM": "item_001.txt", "FAULT": "sleep", "DELAY": "0.1"},
        mini_batch_size=1,
        process_count_per_node=1,
        run_invocation_timeout=1,
        run_max_try=2,
    )
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    outcome = assert_guarantee(run, _names(6))
    assert outcome.failed == {"item_001.txt"}
    (worker,) = _step(run).get_details()["workers"]
    assert worker["restarts"] == 2
    inits = [int(pid) for pid in faulty[1].with_name("calls.txt.init").read_text().split()]
    assert len(set(inits)) == len(inits) == 3
    ran: dict[int, list[str]] = {}
    for _, pid, name in _calls(faulty[1]):
        ran.setdefault(pid, []).append(name)
    # The first process and its replacement were each killed stuck on item_001; the second
    # replacement, a new process that ran init() again, did the rest.
    first, second, third = inits
    assert set(ran) == {first, second, third}
    assert ran[first][-1] == ran[second][-1] == "item_001.txt"
    assert ran[third] and "item_001.txt" not in ran[third]


# -- 2. a worker process that dies mid-mini-batch --------------------------------------------


@pytest.fixture
def memory_cgroup(root):
    """A memory cgroup of 64 MB without swap: a process moved into it that allocates more is
    killed by the kernel's OOM killer, exactly as on a machine out of memory (SIGKILL)."""
    name = f"jupyter_parallelrun_test_{os.getpid()}"
    v1, v2 = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")
    limit = str(64 << 20)
    try:
        if (v1 / "memory.limit_in_bytes").exists():
            group = v1 / name
            group.mkdir()
            (group / "memory.limit_in_bytes").write_text(limit)
            if (group / "memory.memsw.limit_in_bytes").exists():
                (group / "memory.memsw.limit_in_bytes").write_text(limit)
            events = group / "memory.oom_control"
        elif "memory" in (v2 / "cgroup.controllers").read_text().split():
            subtree = v2 / "cgroup.subtree_control"
            if "memory" not in subtree.read_text().split():
                subtree.write_text("+memory")
            group = v2 / name
            group.mkdir()
            (group / "memory.max").write_text(limit)
            if (group / "memory.swap.max").exists():
                (group / "memory.swap.max").write_text("0")
            events = group / "memory.events"
        else:
            pytest.skip("no memory cgroup controller on this machine")
    except OSError as error:
        pytest.skip(f"cannot create a memory cgroup here: {error}")
    try:
        yield group, events
    finally:
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


DEATHS = {
    "exit": {"exitCode": 3, "signal": None, "log": "(exit code 3)"},
    "sigkill": {"exitCode": -9, "signal": 9, "log": "(killed by signal 9, SIGKILL; the kernel"},
    "sigsegv": {"exitCode": -11, "signal": 11, "log": "(killed by signal 11, SIGSEGV)"},
    "oom": {"exitCode": -9, "signal": 9, "log": "(killed by signal 9, SIGKILL; the kernel kills"},
}


@pytest.mark.parametrize("death", list(DEATHS))
def test_a_dead_worker_costs_one_try_of_its_mini_batch_only(ws, faulty, files, request, death):
    env = {"FAULT_ITEM": "item_003.txt", "FAULT": death, "FAULT_ONCE": "1", "DELAY": "0.05"}
    if death == "oom":
        group, events = request.getfixturevalue("memory_cgroup")
        env["FAULT_CGROUP"] = str(group)
    run = _submit(ws, faulty, files(10), env, mini_batch_size=1, run_max_try=2)
    assert run.wait_for_completion(timeout_seconds=60) == "Completed"
    outcome = assert_guarantee(run, _names(10))
    assert outcome.done == set(_names(10))
    if death == "oom":
        oom_kills = dict(line.split() for line in events.read_text().splitlines())["oom_kill"]
        assert int(oom_kills) >= 1, events.read_text()
    # Only the dying process's running mini-batch counts a failed try; it is redone elsewhere.
    (dead,) = outcome.errors
    expected = DEATHS[death]
    assert (dead["exitCode"], dead["signal"]) == (expected["exitCode"], expected["signal"])
    assert dead["try"] == 1 and "item_003.txt" in dead["item"]
    (mb,) = [mb for mb in outcome.mini_batches if mb["mb_id"] == dead["miniBatch"]]
    assert mb["tries"] == 2
    assert all(m["tries"] == 1 for m in outcome.mini_batches if m is not mb)
    row = next(r for r in outcome.rows if r.startswith("item_003.txt\t"))
    assert int(row.split("\t")[1]) != dead["pid"]
    step = _step(run)
    (worker,) = [w for w in step.get_details()["workers"] if w["process"] == dead["process"]]
    assert worker["restarts"] == 1
    log = _runner_log(ws, step)
    assert f"{dead['process']} (pid {dead['pid']}) lost" in log and expected["log"] in log
    assert f"mini-batch {mb['mb_id']} try 1 failed on {dead['process']}" in log


# -- 3. init() that fails or hangs ------------------------------------------------------------


def test_init_failing_in_one_process_leaves_the_others_working(ws, faulty, files):
    run = _submit(
        ws,
        faulty,
        files(8),
        {"INIT_FAULT": "raise", "INIT_FAULT_PROCESS": "process000", "DELAY": "0.2"},
        mini_batch_size=1,
    )
    assert run.wait_for_completion(timeout_seconds=60) == "Completed"
    outcome = assert_guarantee(run, _names(8))
    assert outcome.done == set(_names(8))
    (error,) = outcome.errors
    assert (error["process"], error["item"]) == ("process000", "init()")
    assert "RuntimeError: injected fault" in error["exception"]
    assert 'raise RuntimeError("injected fault")' in error["traceback"]
    assert {mb["worker"] for mb in outcome.mini_batches} == {"process001"}


@pytest.mark.parametrize("kind", ["raise", "exit", "hang"])
def test_no_process_can_initialise_fails_the_run_with_the_cause(ws, faulty, files, kind):
    env = {"INIT_FAULT": "sleep" if kind == "hang" else kind}
    config = {"first_task_creation_timeout": 2} if kind == "hang" else {}
    run = _submit(ws, faulty, files(4), env, **config)
    cause = {
        "raise": "no worker process could start: RuntimeError: injected fault",
        "exit": "no worker process could start: died before init() finished",
        "hang": "first_task_creation_timeout=2s: no worker finished init() in that time",
    }[kind]
    with pytest.raises(ActivityFailedException, match=re.escape(cause)):
        run.wait_for_completion(timeout_seconds=60)
    outcome = assert_guarantee(run, _names(4))
    assert outcome.rows == [] and outcome.mini_batches == []
    step = _step(run)
    assert cause in step.get_details()["error"]["message"]
    if kind == "raise":
        assert all('raise RuntimeError("injected fault")' in e["traceback"] for e in outcome.errors)
    if kind == "exit":
        assert {e["exitCode"] for e in outcome.errors} == {3}
    assert not _calls(faulty[1])


# -- 4. the error budget exceeded --------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "summary"),
    [
        ({"error_threshold": 1}, "error_threshold=1 exceeded: 2 input items failed"),
        ({"allowed_failed_count": 1}, "allowed_failed_count=1 exceeded: 2 mini-batches failed"),
    ],
)
def test_an_exceeded_budget_starts_nothing_new_and_keeps_the_rows(
    ws, faulty, files, budget, summary
):
    inputs = files(40)
    (inputs / "item_006.txt").write_text("not a number")
    (inputs / "item_007.txt").write_text("not a number")
    run = _submit(ws, faulty, inputs, {"DELAY": "0.05"}, mini_batch_size=1, run_max_try=1, **budget)
    with pytest.raises(ActivityFailedException, match=summary):
        run.wait_for_completion(timeout_seconds=60)
    outcome = assert_guarantee(run, _names(40))
    assert outcome.status == "Failed" and outcome.failed == {"item_006.txt", "item_007.txt"}
    assert len(outcome.done) >= 6
    step = _step(run)
    assert summary in step.get_details()["error"]["message"]
    result = (ws.path / "runs" / step.id / "logs" / "job_result.txt").read_text()
    assert result.startswith("Failed\n") and summary in result
    # Only what was already handed to the two workers ran after the budget was spent (calls
    # this slow get the base prefetch).
    started = {name for _, _, name in _calls(faulty[1])}
    assert len(started) <= len(outcome.mini_batches) + 2 * PREFETCH < 40


# -- 5. cancel() from the magic and from another process ---------------------------------------


@pytest.mark.parametrize("where", ["magic", "another process"])
def test_cancel_from_the_magic_or_another_process(ws, faulty, files, monkeypatch, where):
    run = _submit(ws, faulty, files(60), {"DELAY": "0.2"}, mini_batch_size=1)
    _wait_for(lambda: run.get_metrics()["mini_batches_done"] >= 2)
    if where == "magic":
        monkeypatch.chdir(ws.config_file.parent)
        ip = _ipython()
        ip.run_line_magic("parallelrun", f"cancel {run.id}")
    else:
        subprocess.run(
            [sys.executable, "-m", "jupyter_parallelrun.cli", "cancel", run.id],
            cwd=ws.config_file.parent,
            check=True,
            capture_output=True,
            timeout=60,
        )
    with pytest.raises(ActivityFailedException, match="Canceled"):
        run.wait_for_completion(timeout_seconds=30)
    outcome = assert_guarantee(run, _names(60))
    assert outcome.status == "Canceled" and 2 <= len(outcome.done) < 60
    for worker in _step(run).get_details()["workers"]:
        assert worker["state"] == "stopped"
        with pytest.raises(ProcessLookupError):
            os.kill(worker["pid"], 0)


# -- 6. the runner SIGKILLed mid-run, then resumed ---------------------------------------------


def test_a_killed_runner_resumes_without_rerunning_or_losing_a_mini_batch(
    ws, faulty, files, monkeypatch
):
    calls = faulty[1]
    run = _submit(
        ws,
        faulty,
        files(30),
        {"FAULT_ITEM": "item_005.txt", "FAULT": "sleep", "FAULT_ONCE": "1", "DELAY": "0.1"},
        mini_batch_size=2,
        heartbeat_timeout=4,
    )
    _wait_for(
        lambda: (
            any(name == "item_005.txt" for *_, name in _calls(calls))
            and run.get_metrics()["mini_batches_done"] >= 3
        )
    )
    killed_runner = ws.store.get_run(run.id)["runner_pid"]
    os.kill(killed_runner, signal.SIGKILL)
    with pytest.raises(ActivityFailedException, match="runner process .* ended"):
        run.wait_for_completion(timeout_seconds=30)
    before = assert_guarantee(run, _names(30))
    assert before.status == "Failed" and 6 <= len(before.done) < 30
    # The runner's workers do not outlive it, not even one stuck in run().
    (stuck,) = [pid for _, pid, name in _calls(calls) if name == "item_005.txt"]
    _wait_for(lambda: not _alive(stuck))

    monkeypatch.chdir(ws.config_file.parent)
    _ipython().run_line_magic("parallelrun", f"resume {run.id}")
    assert run.wait_for_completion(timeout_seconds=60) == "Completed"
    after = assert_guarantee(run, _names(30))
    assert after.done == set(_names(30))
    # What was committed before the kill stays as it was and was not run again.
    kept = {mb["mb_id"]: mb for mb in after.mini_batches}
    assert all(kept[mb["mb_id"]] == mb for mb in before.mini_batches)
    resumed_runner = ws.store.get_run(run.id)["runner_pid"]
    assert resumed_runner != killed_runner
    rerun = {name for ppid, _, name in _calls(calls) if ppid == resumed_runner}
    assert "item_005.txt" in rerun and not rerun & before.done


def test_resuming_after_the_input_changed_fails_instead_of_skipping_items(ws, faulty, files):
    inputs = files(20)
    run = _submit(ws, faulty, inputs, {"DELAY": "0.1"}, mini_batch_size=2)
    _wait_for(lambda: run.get_metrics()["mini_batches_done"] >= 2)
    os.kill(ws.store.get_run(run.id)["runner_pid"], signal.SIGKILL)
    with pytest.raises(ActivityFailedException, match="runner process .* ended"):
        run.wait_for_completion(timeout_seconds=30)
    before = assert_guarantee(run, _names(20))
    # Every later mini-batch would now start one file earlier: committed ones are found by id.
    (inputs / "item_000.txt").unlink()
    run.resume()
    with pytest.raises(ActivityFailedException, match="the input changed since this run started"):
        run.wait_for_completion(timeout_seconds=30)
    after = assert_guarantee(run, _names(20))
    assert after.mini_batches == before.mini_batches and after.rows == before.rows


# -- 7. output that cannot be written ----------------------------------------------------------


@pytest.fixture
def mounted(datastore_folder):
    """Mount something on the datastore folder for one test; unmounted afterwards."""
    mounts = []

    def mount(*options: str) -> Path:
        try:
            _as_root("mount", *options, str(datastore_folder))
        except OSError as error:
            pytest.skip(f"cannot mount here: {error}")
        mounts.append(datastore_folder)
        return datastore_folder

    yield mount
    for folder in reversed(mounts):
        with contextlib.suppress(OSError):
            _as_root("umount", str(folder))


def test_a_full_disk_fails_the_run_and_leaves_only_whole_committed_rows(ws, faulty, files, mounted):
    mounted("-t", "tmpfs", "-o", "size=32k", "tmpfs")
    run = _submit(ws, faulty, files(80), {"PAD": "1000", "DELAY": "0.02"}, mini_batch_size=2)
    with pytest.raises(ActivityFailedException, match="No space left on device"):
        run.wait_for_completion(timeout_seconds=60)
    outcome = assert_guarantee(run, _names(80))
    assert outcome.status == "Failed" and 0 < len(outcome.done) < 80
    message = _step(run).get_details()["error"]["message"]
    assert "cannot write the output file" in message and "parallel_run_step.txt" in message
    assert all(row.endswith("\t" + "x" * 1000) for row in outcome.rows)


def test_an_output_file_made_unwritable_mid_run_fails_the_run(ws, faulty, files, datastore_folder):
    probe = datastore_folder / "probe"
    probe.write_text("")
    try:
        _as_root("chattr", "+i", str(probe))
        _as_root("chattr", "-i", str(probe))
    except OSError as error:
        pytest.skip(f"this file system cannot make a file immutable: {error}")
    probe.unlink()
    run = _submit(ws, faulty, files(60), {"DELAY": "0.1"}, mini_batch_size=1)
    step = _step(run)
    output = step.get_output_data("scores")
    path = output.datastore.local_path(output.path_on_datastore) / "parallel_run_step.txt"
    _wait_for(lambda: run.get_metrics()["items_done"] >= 3)
    # Immutable: not even root may write it (chmod would not stop root).
    _as_root("chattr", "+i", str(path))
    try:
        with pytest.raises(ActivityFailedException, match="Operation not permitted"):
            run.wait_for_completion(timeout_seconds=60)
        outcome = assert_guarantee(run, _names(60))
    finally:
        _as_root("chattr", "-i", str(path))
    assert outcome.status == "Failed" and 3 <= len(outcome.done) < 60
    assert f"cannot write the output file {path}" in step.get_details()["error"]["message"]


def test_a_read_only_output_folder_fails_the_run_before_any_work(
    ws, faulty, files, mounted, datastore_folder
):
    mounted("--bind", str(datastore_folder))
    try:
        _as_root("mount", "-o", "remount,bind,ro", str(datastore_folder))
    except OSError as error:
        pytest.skip(f"cannot make a read-only bind mount here: {error}")
    run = _submit(ws, faulty, files(6))
    with pytest.raises(ActivityFailedException, match="Read-only file system"):
        run.wait_for_completion(timeout_seconds=60)
    outcome = assert_guarantee(run, _names(6))
    assert outcome.rows == [] and not _calls(faulty[1])
    message = _step(run).get_details()["error"]["message"]
    assert message.startswith(f"cannot write the output folder {datastore_folder}")


def test_a_run_store_that_cannot_be_written_leaves_no_uncommitted_rows(ws, faulty, files, root):
    wal = ws.store.path.with_name(ws.store.path.name + "-wal")
    try:
        _as_root("chattr", "+i", str(wal))
        _as_root("chattr", "-i", str(wal))
    except OSError as error:
        pytest.skip(f"this file system cannot make a file immutable: {error}")
    run = _submit(ws, faulty, files(60), {"DELAY": "0.05"}, mini_batch_size=1)
    _wait_for(lambda: run.get_metrics()["items_done"] >= 3)
    # The runner's next commit appends rows, then cannot record them: they must go again.
    _as_root("chattr", "+i", str(wal))
    try:
        _wait_for(lambda: not _alive(ws.store.get_run(run.id)["runner_pid"]))
    finally:
        _as_root("chattr", "-i", str(wal))
    with pytest.raises(ActivityFailedException, match="runner"):
        run.wait_for_completion(timeout_seconds=30)
    outcome = assert_guarantee(run, _names(60))
    assert outcome.status == "Failed" and 3 <= len(outcome.done) < 60


# -- 8. bad data --------------------------------------------------------------------------------

IMAGES = """
import os

from PIL import Image


def init():
    pass


def run(mini_batch):
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        if name == "a_trigger.png":  # the input was listed long ago; now a file goes away
            os.remove(os.path.join(os.path.dirname(path), "zz_deleted.png"))
        with Image.open(path) as image:
            image.load()
            rows.append(f"{name}\\t{image.size[0]}x{image.size[1]}")
    return rows
"""


def test_bad_image_files_are_failed_items_naming_the_file(ws, write_script, tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    good = ["a_trigger.png", "good 1.png", "gööd_2.png", "日本語.png", "zz_deleted.png"]
    for name in good:
        Image.new("L", (4, 3)).save(folder / name)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    (folder / "empty.png").write_bytes(b"")
    run = submit_step(
        ws,
        write_script(IMAGES),
        Dataset.File.from_files(path=str(folder)),
        mini_batch_size=1,
        run_max_try=2,
        process_count_per_node=1,
    )
    assert run.wait_for_completion(timeout_seconds=60) == "Completed"
    names = [*good, "corrupt.png", "empty.png"]
    outcome = assert_guarantee(run, names)
    bad = {"corrupt.png", "empty.png", "zz_deleted.png"}
    assert outcome.failed == bad and outcome.done == set(names) - bad
    assert all(row.endswith("\t4x3") for row in outcome.rows)
    final = {e["item"]: e["exception"] for e in outcome.errors if e["try"] == 2}
    assert set(final) == {f"1 file: {name}" for name in bad}
    assert final["1 file: corrupt.png"].startswith("OSError")  # PIL: "Truncated File Read"
    assert final["1 file: empty.png"].startswith("UnidentifiedImageError")
    assert final["1 file: zz_deleted.png"].startswith("FileNotFoundError")
    report = (ws.path / "runs" / _step(run).id / "logs" / "job_error.txt").read_text()
    assert all(name in report for name in bad)


TABLE = """
def init():
    pass


def run(mini_batch):
    return [f"{row.id}\\t{row.value * 2}" for row in mini_batch.itertuples()]
"""


def test_a_csv_row_that_does_not_parse_fails_its_mini_batch_items(ws, write_script, tmp_path):
    lines = [f"{i},{i * 10}" for i in range(200)]
    lines[123] = "123,1230,surplus,fields"
    (tmp_path / "table.csv").write_text("id,value\n" + "\n".join(lines) + "\n")
    data = Dataset.Tabular.from_delimited_files(path=str(tmp_path / "table.csv"))
    run = submit_step(ws, write_script(TABLE), data, mini_batch_size="256", run_max_try=2)
    assert run.wait_for_completion(timeout_seconds=60) == "Completed"
    raw = (tmp_path / "table.csv").read_bytes()

    def keys(spec: dict) -> list[str]:
        text = raw[spec["start"] : spec["end"]].decode()
        return [line.split(",")[0] for line in text.splitlines() if line.strip()]

    outcome = assert_guarantee(run, [str(i) for i in range(200)], mini_batch_keys=keys)
    (bad,) = [mb for mb in outcome.mini_batches if mb["status"] == "failed"]
    assert "123" in keys(bad["spec"]) and outcome.failed == set(keys(bad["spec"]))
    assert len(outcome.done) == 200 - len(outcome.failed) > 150
    cause = next(e for e in outcome.errors if e["miniBatch"] == bad["mb_id"])
    assert "table.csv bytes" in cause["item"] and "Expected 2 fields" in cause["exception"]
