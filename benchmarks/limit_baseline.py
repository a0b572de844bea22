"""Baseline (a): the hand-tuned limit for the images workload.

N processes started directly, math threads pinned to 1 before TensorFlow loads, the model
loaded once per process, the images split into the same mini-batches, one batched predict per
mini-batch. No tracking, no retries, no output file: the floor our scheduler is measured against.
"""

from __future__ import annotations

import multiprocessing
import os
import time

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def _work(model_path: str, batches: list[list[str]], results) -> None:
    import keras
    import numpy as np
    from PIL import Image

    model = keras.models.load_model(model_path)
    rows = 0
    for batch in batches:
        images = np.stack(
            [
                np.asarray(Image.open(p).convert("L"), dtype="float32")[..., None] / 255.0
                for p in batch
            ]
        )
        labels = np.argmax(model(images, training=False), axis=1)
        rows += len(labels)
    results.put(rows)


def run_limit(paths: list[str], model_path: str, processes: int, batch_size: int) -> float:
    """Score every image; returns the wall time in seconds (process start and load included)."""
    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: "1" for name in THREAD_VARIABLES})
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    started = time.perf_counter()
    workers = [
        context.Process(target=_work, args=(model_path, batches[i::processes], results))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    scored = sum(results.get() for _ in workers)
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    assert scored == len(paths), (scored, len(paths))
    return elapsed
