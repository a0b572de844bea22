"""W1 on a one-machine Dask cluster against the local backend: the overhead of the cluster path.

Run: ``python benchmarks/bench_dask.py [--images 3000] [--processes 2] [--mini-batch-size 100]
[--repeats 1]``. The same ParallelRunStep (digit images, Keras CNN, as ``bench_images.py``) runs
on the local backend and on a Dask cluster of one worker started on this machine
(``DaskCompute.provisioning_configuration(n_workers=1)``, node_count 1) with the same process
count; each time is wall time from ``submit()`` to the last row, model load included. Starting
the cluster is timed apart, as provisioning a compute target is. The runs alternate, and the
fastest of each is kept, so that a busy machine distorts the ratio less.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from jupyter_parallelrun import (
    ComputeTarget,
    DaskCompute,
    Dataset,
    Experiment,
    Model,
    ParallelRunConfig,
    ParallelRunStep,
    Pipeline,
    PipelineData,
    Workspace,
)
from jupyter_parallelrun.demo import job
from jupyter_parallelrun.demo.digits import make_digit_images
from jupyter_parallelrun.demo.train import train_digit_model


def run_step(ws: Workspace, images: Path, processes: int, batch: int, compute=None) -> float:
    """Seconds from submit() to the completed step, which must have scored every image."""
    cfg = ParallelRunConfig(
        source_directory=str(job.SCRIPTS_FOLDER),
        entry_script=job.ENTRY_SCRIPT,
        mini_batch_size=batch,
        process_count_per_node=processes,
        node_count=1,
        error_threshold=0,
        append_row_file_name="rows.txt",
        compute_target=compute,
    )
    step = ParallelRunStep(
        name="bench-images",
        parallel_run_config=cfg,
        inputs=[Dataset.File.from_files(path=str(images / "*.png")).as_named_input("images")],
        output=PipelineData(name="rows", datastore=ws.get_default_datastore()),
        allow_reuse=False,
    )
    started = time.perf_counter()
    run = Experiment(ws, "bench").submit(Pipeline(workspace=ws, steps=[step]))
    while run.get_status() not in ("Completed", "Failed", "Canceled"):
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    run.wait_for_completion()
    count = len(list(images.glob("*.png")))
    assert run.get_metrics()["items_done"] == count, run.get_metrics()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--mini-batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, fastest kept")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        images = make_digit_images(workdir / "images", count=args.images)
        model = train_digit_model(workdir / "model", epochs=2)
        ws = Workspace.create("bench", path=workdir / "ws")
        Model.register(ws, str(model), "mnist")
        started = time.perf_counter()
        config = DaskCompute.provisioning_configuration(n_workers=1)
        compute = ComputeTarget.create(ws, "local-dask", config)
        cluster_start = time.perf_counter() - started
        local, dask = [], []
        try:
            for _ in range(args.repeats):
                local.append(run_step(ws, images, args.processes, args.mini_batch_size))
                dask.append(run_step(ws, images, args.processes, args.mini_batch_size, compute))
        finally:
            compute.delete()
    best_local, best_dask = min(local), min(dask)
    lines = [
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}.",
        f"W1 images: {args.images} PNG digits, Keras CNN, mini_batch_size {args.mini_batch_size}, "
        f"{args.processes} processes on one node; wall time from submit() to the last row, "
        f"fastest of {args.repeats}.",
        "",
        "| backend | seconds | ÷ local |",
        "|---|---:|---:|",
        f"| local (joblib/loky processes) | {best_local:.2f} | 1.00 |",
        f"| one-machine Dask cluster (1 worker) | {best_dask:.2f} | {best_dask / best_local:.2f} |",
        "",
        f"Every run: local {', '.join(f'{t:.2f}' for t in local)} s; "
        f"Dask {', '.join(f'{t:.2f}' for t in dask)} s. "
        f"Starting the cluster (not in the times above): {cluster_start:.2f} s.",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
