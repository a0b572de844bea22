"""W1 baseline (a): the hand-tuned limit for the images workload.

N processes started directly, math threads pinned to 1 before TensorFlow loads, the model
loaded once per process, the images split into the same mini-batches, one batched predict per
mini-batch. No tracking, no retries, no output file: the floor our scheduler is measured against.
Run alone: ``python benchmarks/limit_baseline.py MODEL IMAGE_FOLDER [PROCESSES [BATCH]]``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def _work(model_path: str, batches: list[list[str]], results) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    from PIL import Image

    model = keras.models.load_model(model_path)
    loaded = time.time()
    rows = 0
    for batch in batches:
        images = np.stack(
            [
                np.asarray(Image.open(p).convert("L"), dtype="float32")[..., None] / 255.0
                for p in batch
            ]
        )
        labels = np.argmax(model.predict_on_batch(images), axis=1)
        rows += len(labels)
    results.put((rows, loaded))


def run_limit(
    paths: list[str], model_path: str, processes: int, batch_size: int
) -> tuple[float, float]:
    """Score every image; returns the wall-clock times (``time.time()``) when every row was
    scored and when the first process had its model loaded."""
    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: "1" for name in THREAD_VARIABLES})
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=_work, args=(model_path, batches[i::processes], results))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    reports = [results.get() for _ in workers]
    # Every row is scored: the rest is the interpreters' teardown (a second or more with
    # TensorFlow loaded), which a hand-tuned script need not wait for.
    scored_at = time.time()
    for worker in workers:
        worker.join()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    scored = sum(rows for rows, _ in reports)
    assert scored == len(paths), (scored, len(paths))
    return scored_at, min(loaded for _, loaded in reports)


if __name__ == "__main__":
    folder = sys.argv[2]
    files = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".png"))
    args = [int(a) for a in sys.argv[3:5]]
    scored_at, loaded_at = run_limit(files, sys.argv[1], *(args + [2, 100][len(args) :]))
    print(json.dumps({"items": len(files), "ended_at": scored_at, "loaded_at": loaded_at}))
