"""W1 baseline (b): plain ``joblib.Parallel`` over the mini-batches, model cached per process.

joblib's defaults otherwise (loky processes, its own thread settings). Run alone:
``python benchmarks/joblib_baseline.py MODEL IMAGE_FOLDER [PROCESSES [BATCH]]``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from joblib import Parallel, delayed

_MODEL = {}


def _score(model_path: str, batch: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    from PIL import Image

    if model_path not in _MODEL:
        _MODEL[model_path] = keras.models.load_model(model_path)
    images = np.stack(
        [np.asarray(Image.open(p).convert("L"), dtype="float32")[..., None] / 255.0 for p in batch]
    )
    return len(np.argmax(_MODEL[model_path].predict_on_batch(images), axis=1))


def run_joblib(paths: list[str], model_path: str, processes: int, batch_size: int) -> float:
    """Score every image with joblib's defaults; returns when (``time.time()``) every row was
    scored."""
    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    scored = sum(Parallel(n_jobs=processes)(delayed(_score)(model_path, b) for b in batches))
    scored_at = time.time()
    assert scored == len(paths), (scored, len(paths))
    return scored_at


if __name__ == "__main__":
    folder = sys.argv[2]
    files = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".png"))
    args = [int(a) for a in sys.argv[3:5]]
    scored_at = run_joblib(files, sys.argv[1], *(args + [2, 100][len(args) :]))
    print(json.dumps({"items": len(files), "ended_at": scored_at}))
