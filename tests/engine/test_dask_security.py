"""The Dask path against other users and strangers, on a real cluster on 127.0.0.1.

While a step runs on two Dask workers, the user nobody reads every process's command line and
finds no key, and cannot read the workspace's store; a connect-and-close, garbage, a wrong key
and half-open connections on the runner's TCP port are refused and logged, and the run still
completes with all its workers, a replacement started after them included.
"""

from __future__ import annotations

import pytest
from dask_cluster import Cluster
from intruders import assert_all_workers_served, besieged_run, skip_if_nobody_untested

from jupyter_parallelrun import DaskCompute

pytestmark = pytest.mark.dask


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = Cluster(tmp_path_factory.mktemp("dask"))
    yield started
    started.shut_down()


def test_a_dask_run_keeps_its_key_and_store_from_others_and_survives_strangers(
    open_ws, write_script, files, cluster, tmp_path, monkeypatch
):
    ws = open_ws
    run, key = besieged_run(
        ws,
        write_script,
        files,
        tmp_path / "siege",
        monkeypatch,
        node_count=2,
        process_count_per_node=1,
        compute_target=DaskCompute.attach(ws, "dask", cluster.address),
    )
    assert_all_workers_served(ws, run, peer="127.0.0.1:")
    # The key is the run's own: nothing the run or the cluster leaves behind holds it.
    for path in [*ws.path.rglob("*"), *cluster.folder.rglob("*.log")]:
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    skip_if_nobody_untested()
