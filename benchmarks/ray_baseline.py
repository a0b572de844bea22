"""W1 baseline (c): Ray Data ``map_batches`` with an actor pool, when ``ray`` is installed.

One actor per process loads the model once (math threads pinned to 1, as in the limit
script); each batch of ``BATCH`` paths is read and scored in one predict. The time runs from
``ray.init()`` (Ray's own start-up is part of using it) to the last scored row. Ray is an
optional extra of the benchmarks (``pip install "ray[data]"``), never a dependency of the
package. Run alone: ``python benchmarks/ray_baseline.py MODEL IMAGE_FOLDER [PROCESSES [BATCH]]``.
"""

from __future__ import annotations

import json
import os
import sys
import time

THREADS = {
    name: "1"
    for name in (
        "OMP_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
        "TF_NUM_INTEROP_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
    )
}


class Scorer:
    """A Ray Data actor: the model, loaded once."""

    def __init__(self, model_path: str) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        self.model = keras.models.load_model(model_path)

    def __call__(self, batch: dict) -> dict:
        import numpy as np
        from PIL import Image

        images = np.stack(
            [
                np.asarray(Image.open(p).convert("L"), dtype="float32")[..., None] / 255.0
                for p in batch["path"]
            ]
        )
        labels = np.argmax(self.model.predict_on_batch(images), axis=1)
        return {"path": batch["path"], "label": labels}


def run_ray(paths: list[str], model_path: str, processes: int, batch_size: int) -> dict:
    import ray

    started = time.perf_counter()
    ray.init(
        num_cpus=processes,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {**THREADS, "TF_CPP_MIN_LOG_LEVEL": "2"}},
    )
    initialised = time.perf_counter() - started
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    scored = ray.data.from_items([{"path": p} for p in paths]).map_batches(
        Scorer,
        fn_constructor_args=(model_path,),
        batch_size=batch_size,
        concurrency=processes,
        num_cpus=1,
    )
    rows = sum(len(batch["label"]) for batch in scored.iter_batches(batch_size=None))
    scored_at = time.time()
    ray.shutdown()
    assert rows == len(paths), (rows, len(paths))
    return {"items": rows, "ended_at": scored_at, "ray_init": initialised, "ray": ray.__version__}


if __name__ == "__main__":
    folder = sys.argv[2]
    files = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".png"))
    args = [int(a) for a in sys.argv[3:5]]
    print(json.dumps(run_ray(files, sys.argv[1], *(args + [2, 100][len(args) :]))))
