"""D, the cluster path: the W1 job on the local backend and on a one-machine Dask cluster.

The same ParallelRunStep (W1's images, model, batch size and process count) runs on the local
backend and on a Dask cluster of one worker started on this machine
(``DaskCompute.provisioning_configuration(n_workers=1)``, node_count 1). Wall time runs from
``submit()`` to the run's completion; starting the cluster is timed apart, as provisioning a
compute target is. The runs alternate, twice each, and the fastest of each is kept, so that a
passing load on the machine distorts the ratio less.
"""

from __future__ import annotations

import time
from typing import Any

from common import submit_and_watch
from w1_images import images_input, images_job, model_file

RUNS = 2


def run(quick: bool, processes: int = 2) -> dict[str, Any]:
    from jupyter_parallelrun import ComputeTarget, DaskCompute

    count = 2_000 if quick else 20_000
    images, model = images_input(count), model_file()
    print(f"D: W1 ({count:,} images) locally and on a one-machine Dask cluster", flush=True)
    clusters: list = []
    cluster_start: list[float] = []

    def dask_compute(ws):
        started = time.perf_counter()
        config = DaskCompute.provisioning_configuration(n_workers=1)
        clusters.append(ComputeTarget.create(ws, "local-dask", config))
        cluster_start.append(time.perf_counter() - started)
        return clusters[-1]

    local_job = images_job("d-local", images, model, processes)
    try:
        dask_job = images_job("d-dask", images, model, processes, compute=dask_compute)
        walls: dict[str, list[float]] = {"local": [], "dask": []}
        for _ in range(RUNS):
            for name, (experiment, pipeline) in (("local", local_job), ("dask", dask_job)):
                pipeline.steps[0].allow_reuse = False  # W1's job allows it (for W5); not here
                watched = submit_and_watch(experiment, pipeline)
                if watched.status != "Completed" or watched.step["items_done"] != count:
                    raise RuntimeError(f"D ({name}) ended {watched.status}")
                walls[name].append(watched.wall)
                print(f"  {name}: {watched.wall:.2f} s", flush=True)
    finally:
        for compute in clusters:
            compute.delete()
    local, dask = min(walls["local"]), min(walls["dask"])
    lines = [
        f"The W1 job ({count:,} PNG digits, the Keras CNN, {processes} processes on one node): "
        "wall time from `submit()` to the run's completion, the fastest of "
        f"{RUNS} alternating runs each.",
        "",
        "| backend | seconds | ÷ local |",
        "|---|---:|---:|",
        f"| local (one loky process per worker) | {local:.2f} | 1.00 |",
        f"| one-machine Dask cluster (1 worker, `node_count=1`) | {dask:.2f} | "
        f"{dask / local:.2f} |",
        "",
        f"Every run: local {', '.join(f'{t:.2f}' for t in walls['local'])} s; Dask "
        f"{', '.join(f'{t:.2f}' for t in walls['dask'])} s. Starting the cluster (a detached "
        f"`dask scheduler` and `dask worker`), not in the times above: "
        f"{cluster_start[0] if cluster_start else float('nan'):.2f} s.",
    ]
    return {
        "title": "D the cluster path",
        "lines": lines,
        "targets": [],
        "data": {"local": walls["local"], "dask": walls["dask"]},
    }
