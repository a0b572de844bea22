"""Baseline (b): plain ``joblib.Parallel`` over the mini-batches, model cached per process."""

from __future__ import annotations

import time

from joblib import Parallel, delayed

_MODEL = {}


def _score(model_path: str, batch: list[str]) -> int:
    import keras
    import numpy as np
    from PIL import Image

    if model_path not in _MODEL:
        _MODEL[model_path] = keras.models.load_model(model_path)
    images = np.stack(
        [np.asarray(Image.open(p).convert("L"), dtype="float32")[..., None] / 255.0 for p in batch]
    )
    return len(np.argmax(_MODEL[model_path](images, training=False), axis=1))


def run_joblib(paths: list[str], model_path: str, processes: int, batch_size: int) -> float:
    """Score every image with joblib's defaults; returns the wall time in seconds."""
    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    started = time.perf_counter()
    scored = sum(Parallel(n_jobs=processes)(delayed(_score)(model_path, b) for b in batches))
    elapsed = time.perf_counter() - started
    assert scored == len(paths), (scored, len(paths))
    return elapsed
