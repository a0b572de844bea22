"""The same step on a real Dask cluster: a scheduler and two workers on 127.0.0.1.

The cluster is made of separate ``dask scheduler`` and ``dask worker`` processes, as on three
hosts; the two workers stand for two nodes. Nothing is mocked.
"""

from __future__ import annotations

import os
import time

import pytest
from conftest import assert_guarantee, file_dataset, output_rows, submit_step
from dask_cluster import ONLY_ON_A, Cluster

from jupyter_parallelrun import (
    ActivityFailedException,
    ComputeTarget,
    CondaDependencies,
    DaskCompute,
    Environment,
)
from jupyter_parallelrun.environment import EnvironmentCheckError
from jupyter_parallelrun.progress import summary_text

pytestmark = pytest.mark.dask


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = Cluster(tmp_path_factory.mktemp("dask"))
    yield started
    started.shut_down()
    assert all(p.poll() is not None for p in started.processes.values())


@pytest.fixture
def compute(ws, cluster):
    return DaskCompute.attach(ws, "dask", cluster.address)


SCRIPT = """
import os
import time

def init():
    with open(os.environ["INIT_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    time.sleep(float(os.environ.get("INIT_DELAY", "0")))

def run(mini_batch):
    time.sleep(float(os.environ.get("DELAY", "0")))
    return [f"{os.path.basename(p)}\\t{os.getpid()}" for p in mini_batch]
"""


def names(count: int) -> list[str]:
    return [f"item_{i:03d}.txt" for i in range(count)]


def wait_until(condition, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "the run did not get there in time"
        time.sleep(0.05)


def test_file_step_runs_on_two_dask_workers_with_one_init_per_process(
    ws, write_script, files, compute, cluster, tmp_path
):
    init_log = tmp_path / "inits.txt"
    run = submit_step(
        ws,
        write_script(SCRIPT),
        file_dataset(files(24)),
        mini_batch_size=2,
        node_count=2,
        process_count_per_node=2,
        compute_target=compute,
        environment_variables={"INIT_LOG": str(init_log), "DELAY": "0.05"},
    )
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    outcome = assert_guarantee(run, names(24))
    assert outcome.done == set(names(24))
    inits = init_log.read_text().split()
    assert len(inits) == len(set(inits)) == 4
    assert {row.split("\t")[1] for row in outcome.rows} <= set(inits)
    step = run.find_step_run("score-step")[0]
    workers = ws.store.workers(step.id)
    assert [(w["node_id"], w["restarts"]) for w in workers] == [(0, 0), (0, 0), (1, 0), (1, 0)]
    assert {w["host"] for w in workers} == set(cluster.workers().values())
    assert workers[0]["host"] == workers[1]["host"] != workers[2]["host"] == workers[3]["host"]
    assert "2 node(s) on tcp://127.0.0.1:" in summary_text(run.get_state())


def test_an_ordered_tabular_step_through_the_command_line(ws, write_script, compute, tmp_path):
    from jupyter_parallelrun.cli import execute, parse

    table = tmp_path / "table.csv"
    table.write_text("id,value\n" + "".join(f"{i},{i * 3}\n" for i in range(300)))
    script = write_script(
        """
        def init():
            pass

        def run(mini_batch):
            return mini_batch.assign(double=mini_batch["value"] * 2)[["id", "double"]]
        """
    )
    command = [
        "--workspace",
        str(ws.config_file.parent),
        "submit",
        str(script / "score.py"),
        "--input",
        str(table),
        "--tabular",
        "--mini-batch-size",
        "512",
        "--node-count",
        "2",
        "--process-count-per-node",
        "1",
        "--compute",
        "dask",
        "--name",
        "score-step",
        "--no-reuse",
        "--preserve-order",
    ]
    run = execute(parse(command), out=lambda text: None)
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    step = run.find_step_run("score-step")[0]
    output = step.get_output_data("output")
    path = output.datastore.local_path(output.path_on_datastore) / "parallel_run_step.txt"
    rows = path.read_text().splitlines()
    assert rows == [f"{i} {i * 6}" for i in range(300)]  # in input order, from both nodes
    metrics = run.get_metrics()
    assert (metrics["items_done"], metrics["items_failed"]) == (300, 0)
    assert metrics["mini_batches_done"] > 2
    assert {w["node_id"] for w in ws.store.workers(step.id)} == {0, 1}


def test_a_dask_hosted_process_gets_its_share_of_threads_and_the_steps_variables(
    ws, write_script, files, compute
):
    script = write_script(
        """
        import os

        def init():
            pass

        def run(mini_batch):
            names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "GREETING")
            return [" ".join(os.environ.get(name, "-") for name in names) for _ in mini_batch]
        """
    )
    run = submit_step(
        ws,
        script,
        file_dataset(files(4)),
        node_count=2,
        process_count_per_node=1,
        compute_target=compute,
        # The step's own value wins over the share; both Dask workers are on one host.
        environment_variables={"MKL_NUM_THREADS": "5", "GREETING": "hello"},
    )
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    share = str(max(1, (os.cpu_count() or 1) // 2))
    assert set(output_rows(run)) == {f"{share} 5 hello"}


def test_a_stuck_call_is_killed_on_its_dask_worker_and_retried(ws, write_script, files, compute):
    script = write_script(
        """
        import time

        def init():
            pass

        def run(mini_batch):
            if any(p.endswith("item_002.txt") for p in mini_batch):
                time.sleep(60)
            return [f"{p.rsplit('/', 1)[1]}\\tok" for p in mini_batch]
        """
    )
    run = submit_step(
        ws,
        script,
        file_dataset(files(6)),
        mini_batch_size=1,
        node_count=2,
        process_count_per_node=1,
        run_invocation_timeout=1,
        run_max_try=2,
        compute_target=compute,
    )
    assert run.wait_for_completion(timeout_seconds=90) == "Completed"
    outcome = assert_guarantee(run, names(6))
    assert outcome.failed == {"item_002.txt"}
    assert len(outcome.errors) == 2
    assert all("run_invocation_timeout=1s" in e["exception"] for e in outcome.errors)
    step = run.find_step_run("score-step")[0]
    assert sum(w["restarts"] for w in ws.store.workers(step.id)) == 2


def test_cancel_stops_the_worker_processes_and_resume_finishes(ws, write_script, files, compute):
    run = submit_step(
        ws,
        write_script(SCRIPT),
        file_dataset(files(30)),
        mini_batch_size=1,
        node_count=2,
        process_count_per_node=1,
        compute_target=compute,
        environment_variables={"INIT_LOG": os.devnull, "DELAY": "0.2"},
    )
    wait_until(lambda: run.get_metrics()["mini_batches_done"] >= 2)
    run.cancel()
    with pytest.raises(ActivityFailedException, match="Canceled"):
        run.wait_for_completion(timeout_seconds=60)
    outcome = assert_guarantee(run, names(30))
    assert 0 < len(outcome.done) < 30
    step = run.find_step_run("score-step")[0]
    for worker in ws.store.workers(step.id):
        assert worker["state"] == "stopped"
        with pytest.raises(ProcessLookupError):
            os.kill(worker["pid"], 0)

    run.resume()
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    assert assert_guarantee(run, names(30)).done == set(names(30))


def test_what_cannot_run_is_refused_at_submit(ws, write_script, files, compute, cluster):
    script, data = write_script(SCRIPT), file_dataset(files(2))
    with pytest.raises(ValueError, match=r"node_count=3 exceeds the 2 Dask worker\(s\)"):
        submit_step(ws, script, data, node_count=3, compute_target=compute)
    with pytest.raises(ValueError, match="no compute target 'elsewhere'"):
        submit_step(ws, script, data, compute_target="elsewhere")
    gone = DaskCompute.attach(ws, "gone", "127.0.0.1:9", timeout=1)
    assert gone.address == "tcp://127.0.0.1:9"
    with pytest.raises(ConnectionError, match="the Dask scheduler at 'tcp://127.0.0.1:9' does"):
        submit_step(ws, script, data, compute_target=gone)
    assert gone.get_status().provisioning_state == "Failed"

    env = Environment("needs-a")
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=[ONLY_ON_A])
    with pytest.raises(EnvironmentCheckError) as refused:
        submit_step(ws, script, data, node_count=1, compute_target=compute, environment=env)
    worker_b = cluster.workers()["b"]
    message = str(refused.value)
    assert f"Dask worker {worker_b}: environment 'needs-a': pip package '{ONLY_ON_A}'" in message
    assert cluster.workers()["a"] not in message
    assert ws.store.list_runs() == []

    with pytest.raises(ValueError, match="tls:// is not supported"):
        DaskCompute.attach(ws, "secure", "tls://10.0.0.1:8786")


def test_a_dask_worker_killed_mid_run_keeps_the_guarantee(
    ws, write_script, files, compute, cluster
):
    run = submit_step(
        ws,
        write_script(SCRIPT),
        file_dataset(files(40)),
        mini_batch_size=1,
        node_count=2,
        process_count_per_node=1,
        run_max_try=3,
        compute_target=compute,
        environment_variables={"INIT_LOG": os.devnull, "DELAY": "0.25"},
    )
    step = run.find_step_run("score-step")[0]
    wait_until(lambda: [w["done"] >= 2 for w in ws.store.workers(step.id)] == [True, True])
    victim = next(w for w in ws.store.workers(step.id) if w["node_id"] == 1)
    with cluster.killed(victim["host"]):
        assert run.wait_for_completion(timeout_seconds=120) == "Completed"
        outcome = assert_guarantee(run, names(40))
        assert outcome.done == set(names(40))
        moved = next(w for w in ws.store.workers(step.id) if w["name"] == victim["name"])
        assert moved["restarts"] >= 1 and moved["host"] != victim["host"]
        log = (ws.path / "runs" / step.id / "logs" / "runner.txt").read_text()
        assert f"on {victim['host']}) lost" in log


def test_a_process_whose_dask_worker_dies_during_init_starts_on_another(
    ws, write_script, files, compute, cluster
):
    run = submit_step(
        ws,
        write_script(SCRIPT),
        file_dataset(files(12)),
        mini_batch_size=1,
        node_count=2,
        process_count_per_node=1,
        compute_target=compute,
        environment_variables={"INIT_LOG": os.devnull, "INIT_DELAY": "3", "DELAY": "0.1"},
    )
    step = run.find_step_run("score-step")[0]

    def starting_on_node_1():
        return [w for w in ws.store.workers(step.id) if w["node_id"] == 1 and w["host"]]

    wait_until(starting_on_node_1)
    (victim,) = starting_on_node_1()
    assert victim["state"] == "starting"
    with cluster.killed(victim["host"]):
        assert run.wait_for_completion(timeout_seconds=120) == "Completed"
        outcome = assert_guarantee(run, names(12))
        assert outcome.done == set(names(12))
        moved = next(w for w in ws.store.workers(step.id) if w["name"] == victim["name"])
        # It was started again on the other Dask worker rather than given up as failed.
        assert moved["restarts"] == 1 and moved["host"] != victim["host"]
        assert moved["state"] != "failed" and moved["error"] is None


def test_a_cluster_started_on_this_machine_runs_a_step_and_is_stopped(ws, write_script, files):
    config = DaskCompute.provisioning_configuration(n_workers=1)
    compute = ComputeTarget.create(ws, "local-dask", config)
    try:
        assert isinstance(ws.compute_targets["local-dask"], DaskCompute)
        status = compute.get_status()
        assert (status.provisioning_state, status.current_node_count) == ("Succeeded", 1)
        run = submit_step(
            ws,
            write_script(SCRIPT),
            file_dataset(files(8)),
            node_count=1,
            compute_target="local-dask",
            environment_variables={"INIT_LOG": os.devnull},
        )
        assert run.wait_for_completion(timeout_seconds=120) == "Completed"
        assert sorted(r.split("\t")[0] for r in output_rows(run)) == names(8)
    finally:
        pids = compute.to_spec()["cluster"]["pids"]
        compute.delete()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "local-dask" not in ws.compute_targets
