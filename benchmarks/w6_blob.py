"""W6, blob input: the W1 job reading its images from Azurite, against the same job on local files.

The same ParallelRunStep (W1's images, model, mini_batch_size and process count) runs over the
images in a local folder and over the same images in a container of Azurite, the Azure
Storage emulator, started on 127.0.0.1 by this workload (``npm install -g azurite``) and
reached through ``register_azure_blob_container`` and adlfs as an Azure account would be. The
workers download each mini-batch's blobs while ``run()`` scores the one before. Wall time runs
from ``submit()`` to the run's completion, listing the container included; uploading the
images is done once and kept (Azurite's data lives in ``benchmarks/data``). The runs
alternate, the fastest of each kept. The CPU time Azurite itself uses during the blob runs is
read from ``/proc``: it shares the machine's cores with the workers.
"""

from __future__ import annotations

import os
import time
from typing import Any

import common
from common import Target, submit_and_watch
from w1_images import images_input, images_job, model_file

RUNS = 2
CONTAINER = "w6-images"


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(quick: bool, processes: int = 2, count: int | None = None) -> dict[str, Any]:
    from jupyter_parallelrun import Dataset, Datastore
    from jupyter_parallelrun.demo.azurite import Azurite

    count = count or (2_000 if quick else 20_000)
    images, model = images_input(count), model_file()
    print(f"W6: W1 ({count:,} images) from local files and from Azurite", flush=True)
    walls: dict[str, list[float]] = {"local": [], "blob": []}
    azurite_cpu: list[float] = []
    # Azurite keeps its blobs in its folder: the upload is made once per image count.
    folder = common.DATA / f"azurite-{count}"
    with Azurite(folder) as emulator:
        emulator.create_container(CONTAINER)

        def blob_dataset(ws):
            store = Datastore.register_azure_blob_container(
                ws,
                datastore_name="images_blob",
                container_name=CONTAINER,
                account_name=emulator.account_name,
                account_key=emulator.account_key,
                endpoint=emulator.endpoint,
            )
            return Dataset.File.from_files(path=store.path("images/*.png"), validate=False)

        upload_seconds = []
        if not (folder / "uploaded").exists():
            from jupyter_parallelrun import Workspace

            ws = Workspace.create("w6-upload", path=common.workspace_folder("w6-upload"))
            started = time.perf_counter()
            blob_dataset(ws)  # registers the datastore
            Datastore.get(ws, "images_blob").upload(
                images, target_path="images", show_progress=False
            )
            upload_seconds.append(time.perf_counter() - started)
            (folder / "uploaded").write_text(str(count))
        jobs = {
            "local": images_job("w6-local", images, model, processes),
            "blob": images_job("w6-blob", images, model, processes, dataset=blob_dataset),
        }
        for _ in range(1 if quick else RUNS):
            for name, (experiment, pipeline) in jobs.items():
                pipeline.steps[0].allow_reuse = False  # W1's job allows it (for W5); not here
                before = _cpu_seconds(emulator.process.pid)
                watched = submit_and_watch(experiment, pipeline)
                if watched.status != "Completed" or watched.step["items_done"] != count:
                    raise RuntimeError(
                        f"W6 ({name}) ended {watched.status} with {watched.step['items_done']} "
                        f"of {count}"
                    )
                walls[name].append(watched.wall)
                if name == "blob":
                    azurite_cpu.append(_cpu_seconds(emulator.process.pid) - before)
                print(f"  {name}: {watched.wall:.2f} s", flush=True)
    local, blob = min(walls["local"]), min(walls["blob"])
    ratio = local / blob  # throughput ratio: images/s from blob ÷ images/s from local files
    per_get = min(azurite_cpu) / count * 1000
    lines = [
        f"The W1 job ({count:,} PNG digits, the Keras CNN, mini_batch_size 100, {processes} "
        "processes) over local files and over the same files in an Azurite container on "
        "127.0.0.1 (account key, `endpoint` the emulator's URL); wall time from `submit()` to "
        f"completion, listing included, the fastest of {len(walls['local'])} alternating runs "
        "each.",
        "",
        "| input | seconds | images/s | ÷ local throughput |",
        "|---|---:|---:|---:|",
        f"| local folder | {local:.2f} | {count / local:,.0f} | 1.00 |",
        f"| Azurite blob container | {blob:.2f} | {count / blob:,.0f} | {ratio:.2f} |",
        "",
        f"Every run: local {', '.join(f'{t:.2f}' for t in walls['local'])} s; blob "
        f"{', '.join(f'{t:.2f}' for t in walls['blob'])} s. Azurite's own CPU during a blob "
        f"run: {min(azurite_cpu):.2f} s ({per_get:.2f} ms per image), on the same cores as the "
        "workers. "
        + (
            f"Uploading the images (once, kept): {upload_seconds[0]:.1f} s."
            if upload_seconds
            else "The images were uploaded by an earlier invocation."
        ),
    ]
    met = ratio >= 0.8
    gap = ""
    if not met:
        gap = (
            f"each image is one HTTP GET served by Azurite (one Node.js process) at "
            f"{per_get:.2f} ms of its CPU, on the same cores as the workers, which need "
            f"{local / count * 1000 * processes:.2f} ms of core time per image for the whole "
            "local job; the workers' own downloads (the Azure SDK) cost CPU there too"
        )
    targets = [
        Target(
            "W6",
            "≥ 0.8 × the local job's throughput, reading from Azurite",
            f"{ratio:.2f} × ({count / blob:,.0f} vs {count / local:,.0f} images/s)",
            met,
            gap,
        )
    ]
    return {
        "title": "W6 blob input",
        "lines": lines,
        "targets": [t.as_dict() for t in targets],
        "data": {"local": walls["local"], "blob": walls["blob"], "azurite_cpu": azurite_cpu},
    }
