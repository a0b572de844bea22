"""Backends found by name, and the environment each gives its worker processes explicitly.

The runner runs in this test's process where a test must see what it does to its own
environment (it must do nothing to it) or use a backend registered here; otherwise it is a
runner process of its own, as ``submit()`` starts it.
"""

from __future__ import annotations

import os

import pytest
from conftest import file_dataset, output_rows, submit_step

from jupyter_parallelrun import AmlCompute, ComputeTarget, submission
from jupyter_parallelrun.engine import backends, runner
from jupyter_parallelrun.engine.backends import THREAD_VARIABLES
from jupyter_parallelrun.engine.backends.local import LocalBackend

#: Reports, for each item, the worker's thread variables and the step's own variable.
SCRIPT = """
import os

NAMES = {names!r}

def init():
    pass

def run(mini_batch):
    values = " ".join(os.environ.get(name, "-") for name in NAMES)
    return [f"{{os.path.basename(p)}} {{values}} {{os.environ['GREETING']}}" for p in mini_batch]
"""


def _compute(ws, backend: str) -> str:
    """A compute target whose spec names ``backend``."""
    ComputeTarget.create(ws, "cpu", AmlCompute.provisioning_configuration(max_nodes=2))
    spec = ws.store.lookup("compute", "cpu")[1]
    ws.store.register("compute", "cpu", {**spec, "backend": backend}, new_version=False)
    return "cpu"


def _run_here(monkeypatch, submit):
    """Submit, then carry the run out in this process, as its runner would."""
    tokens: list[str] = []
    monkeypatch.setattr(
        submission, "start_runner", lambda store, folder, run_id, token: tokens.append(token)
    )
    run = submit()
    lease = runner.RunnerLease(run.experiment.workspace.store, run.id, tokens[0])
    lease.take()
    try:
        ws = run.experiment.workspace
        runner.run_pipeline(runner.RunnerHome(ws.store, ws.path), run.id, lease)
    finally:
        lease.stop()
    return run


def test_a_registered_backend_runs_the_step_and_the_runner_leaves_its_environment(
    ws, write_script, files, monkeypatch
):
    started = []

    class Recording(LocalBackend):
        def start_worker(self, name, node_id, address, authkey, spec):
            started.append((name, dict(self.env)))
            return super().start_worker(name, node_id, address, authkey, spec)

    monkeypatch.setitem(backends.BACKENDS, "recording", Recording)
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # set by the user where they submit: kept
    before = dict(os.environ)
    script = write_script(SCRIPT.format(names=list(THREAD_VARIABLES)))
    run = _run_here(
        monkeypatch,
        lambda: submit_step(
            ws,
            script,
            file_dataset(files(6)),
            mini_batch_size=1,
            node_count=2,
            process_count_per_node=1,
            compute_target=_compute(ws, "recording"),
            # The step's own value wins over the share.
            environment_variables={"GREETING": "hello", "MKL_NUM_THREADS": "5"},
        ),
    )
    assert run.get_status() == "Completed"
    assert dict(os.environ) == before
    assert [name for name, _ in started] == ["process000", "process001"]
    share = str(max(1, (os.cpu_count() or 1) // 2))
    wanted = {name: share for name in THREAD_VARIABLES} | {
        "OMP_NUM_THREADS": "3",
        "MKL_NUM_THREADS": "5",
    }
    assert {name: started[0][1][name] for name in THREAD_VARIABLES} == wanted
    rows = {tuple(row.split()[1:]) for row in output_rows(run)}
    assert rows == {(*(wanted[name] for name in THREAD_VARIABLES), "hello")}


def test_a_compute_target_naming_no_registered_backend_fails_its_step(ws, write_script, files):
    script = write_script(SCRIPT.format(names=[]))
    run = submit_step(
        ws,
        script,
        file_dataset(files(2)),
        compute_target=_compute(ws, "nowhere"),
        environment_variables={"GREETING": "hello"},
    )
    assert run.wait_for_completion(timeout_seconds=60, raise_on_error=False) == "Failed"
    error = run.find_step_run("score-step")[0].get_details()["error"]["message"]
    assert "backend 'nowhere' of compute target 'cpu' is not registered" in error
    assert "registered backends: dask, local" in error


def test_each_kind_of_compute_target_names_its_backend(ws):
    from jupyter_parallelrun import DaskCompute

    ComputeTarget.create(ws, "cpu", AmlCompute.provisioning_configuration())
    DaskCompute.attach(ws, "cluster", "tcp://127.0.0.1:9")
    assert ws.store.lookup("compute", "cpu")[1]["backend"] == "local"
    assert ws.store.lookup("compute", "cluster")[1]["backend"] == "dask"
    assert backends.registered_backends() == ["dask", "local"]


def test_register_backend_refuses_what_cannot_be_one():
    with pytest.raises(ValueError, match="name must be a non-empty string; got ''"):
        backends.register_backend("", LocalBackend)
    with pytest.raises(TypeError, match="factory must be callable"):
        backends.register_backend("odd", "LocalBackend")
    assert "odd" not in backends.registered_backends()


def test_compute_targets_registered_before_the_registry_run_on_their_backend(
    ws, write_script, files
):
    """A workspace outlives upgrades of the package: a compute target stored without a backend
    (before the registry) gains the one of its type when the store is opened again, and its
    steps run there."""
    import json
    import sqlite3

    from jupyter_parallelrun import DaskCompute, Workspace

    ComputeTarget.create(ws, "cpu", AmlCompute.provisioning_configuration(max_nodes=2))
    DaskCompute.attach(ws, "cluster", "tcp://127.0.0.1:9")
    with sqlite3.connect(ws.store.path) as db:
        for name, spec in db.execute("SELECT name, spec FROM registry WHERE kind = 'compute'"):
            old = {k: v for k, v in json.loads(spec).items() if k != "backend"}
            db.execute("UPDATE registry SET spec = ? WHERE name = ?", (json.dumps(old), name))
    reopened = Workspace.from_config(path=str(ws.config_file))
    assert reopened.store.lookup("compute", "cpu")[1]["backend"] == "local"
    assert reopened.store.lookup("compute", "cluster")[1]["backend"] == "dask"
    script = write_script(SCRIPT.format(names=[]))
    run = submit_step(
        reopened,
        script,
        file_dataset(files(2)),
        compute_target="cpu",
        environment_variables={"GREETING": "hello"},
    )
    assert run.wait_for_completion(timeout_seconds=120, raise_on_error=False) == "Completed"
    assert len(output_rows(run)) == 2
