"""The Dask path against other users and strangers, on a real cluster on 127.0.0.1.

While a step runs on two Dask workers, the user nobody reads every process's command line and
finds no key, and cannot read the workspace's store; a connect-and-close, garbage, a wrong key
and half-open connections on the runner's TCP port are refused and logged, and the run still
completes with all its workers, a replacement started after them included.
"""

from __future__ import annotations

import pytest
from conftest import assert_guarantee, file_dataset, submit_step
from dask_cluster import Cluster
from intruders import KEY_SCRIPT, besiege, skip_if_nobody_untested

from jupyter_parallelrun import DaskCompute

pytestmark = pytest.mark.dask

HANDSHAKE_TIMEOUT = 15  # the run's heartbeat_timeout: a loaded machine starts workers slowly


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = Cluster(tmp_path_factory.mktemp("dask"))
    yield started
    started.shut_down()


def names(count: int) -> list[str]:
    return [f"item_{i:03d}.txt" for i in range(count)]


def test_a_dask_run_keeps_its_key_and_store_from_others_and_survives_strangers(
    open_ws, write_script, files, cluster, tmp_path
):
    ws, folder = open_ws, tmp_path / "siege"
    (folder / "keys").mkdir(parents=True)
    run = submit_step(
        ws,
        write_script(KEY_SCRIPT),
        file_dataset(files(8)),
        mini_batch_size=1,
        node_count=2,
        process_count_per_node=1,
        run_max_try=2,
        run_invocation_timeout=300,
        heartbeat_timeout=HANDSHAKE_TIMEOUT,
        compute_target=DaskCompute.attach(ws, "dask", cluster.address),
        environment_variables={
            "KEY_FOLDER": str(folder / "keys"),
            "GO_FILE": str(folder / "go"),
            "CRASH_ITEM": "item_005.txt",
        },
    )
    key = besiege(ws, run, folder, workers=2, handshake_timeout=HANDSHAKE_TIMEOUT)

    assert assert_guarantee(run, names(8)).done == set(names(8))
    step = run.find_step_run("score-step")[0]
    workers = ws.store.workers(step.id)
    assert [(w["state"], w["error"]) for w in workers] == [("stopped", None)] * 2
    assert sum(w["restarts"] for w in workers) == 1  # its replacement got in after the siege
    log = (ws.path / "runs" / step.id / "logs" / "runner.txt").read_text()
    refused = [line for line in log.splitlines() if "refused a connection from 127.0.0.1:" in line]
    assert len(refused) >= 4, log
    assert any("wrong authkey" in line for line in refused), log
    assert any(f"within {HANDSHAKE_TIMEOUT}s" in line for line in refused), log
    # The key is the run's own: nothing the run or the cluster leaves behind holds it.
    for path in [*ws.path.rglob("*"), *cluster.folder.rglob("*.log")]:
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    skip_if_nobody_untested()
