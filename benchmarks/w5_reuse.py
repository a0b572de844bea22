"""W5, reuse: the W1 job submitted again, unchanged, with ``allow_reuse=True``.

Wall time from ``submit()`` to the run's completion, which reuses the first run's output: the
submission's checks, the runner's start, listing the input again for its fingerprint (every
file's path, size and modification time), finding the earlier step run.
"""

from __future__ import annotations

from typing import Any

from common import Target, submit_and_watch

TARGET_SECONDS = 1.0


def run(quick: bool, job=None, processes: int = 2) -> dict[str, Any]:
    from w1_images import images_input, model_file, run_ours

    count = 2_000 if quick else 20_000
    if job is None:
        print(f"W5: running the W1 job once first ({count:,} images)", flush=True)
        _, job = run_ours(images_input(count), model_file(), processes, count)
    experiment, pipeline = job
    walls = []
    for _ in range(3):
        watched = submit_and_watch(experiment, pipeline, poll=0.005)
        if watched.status != "Completed" or not watched.step["reused_from"]:
            raise RuntimeError(f"W5 resubmission ended {watched.status} without reuse")
        walls.append(watched.wall)
    wall = walls[0]
    print(f"W5: resubmission completed in {wall:.3f} s (then {walls[1]:.3f}, {walls[2]:.3f})")
    lines = [
        f"The W1 job ({count:,} images) submitted again, unchanged, `allow_reuse=True`: "
        f"completed by reuse {wall:.3f} s after `submit()` (two more resubmissions: "
        f"{walls[1]:.3f} s, {walls[2]:.3f} s). The step run records `reused_from` and the "
        "earlier counters; its output is the earlier output.",
    ]
    target = Target(
        "W5",
        f"an unchanged resubmission completes in < {TARGET_SECONDS:g} s",
        f"{wall:.3f} s",
        wall < TARGET_SECONDS,
        "" if wall < TARGET_SECONDS else f"{wall - TARGET_SECONDS:.2f} s over",
    )
    return {
        "title": "W5 reuse",
        "lines": lines,
        "targets": [target.as_dict()],
        "data": {"seconds": walls},
    }
