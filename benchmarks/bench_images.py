"""W1, the main job's workload: PNG digits scored by a Keras CNN, against two baselines.

Run: ``python benchmarks/bench_images.py [--images 3000] [--processes 2] [--mini-batch-size 100]``.
Every figure comes from this one invocation, so the ratios compare like with like; the
results are printed and written to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from joblib_baseline import run_joblib  # noqa: E402
from limit_baseline import run_limit  # noqa: E402

from jupyter_parallelrun import (  # noqa: E402
    Dataset,
    Experiment,
    Model,
    ParallelRunConfig,
    ParallelRunStep,
    Pipeline,
    PipelineData,
    Workspace,
)
from jupyter_parallelrun.demo import job  # noqa: E402
from jupyter_parallelrun.demo.digits import make_digit_images  # noqa: E402
from jupyter_parallelrun.demo.train import train_digit_model  # noqa: E402


def run_ours(workdir: Path, images: Path, processes: int, batch: int) -> tuple[float, float]:
    """Wall time from submit() to completion, and from submit() to the first output row."""
    ws = Workspace.create("bench", path=workdir / "ws")
    Model.register(ws, str(workdir / "model" / "digit_model.keras"), "mnist")
    cfg = ParallelRunConfig(
        source_directory=str(job.SCRIPTS_FOLDER),
        entry_script=job.ENTRY_SCRIPT,
        mini_batch_size=batch,
        process_count_per_node=processes,
        error_threshold=0,
        append_row_file_name="rows.txt",
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
    first_row = None
    while run.get_status() not in ("Completed", "Failed", "Canceled"):
        if first_row is None and ws.store.get_run(run.get_steps()[0].id)["output_bytes"]:
            first_row = time.perf_counter() - started
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    run.wait_for_completion()
    return elapsed, first_row if first_row is not None else elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--mini-batch-size", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        images = make_digit_images(workdir / "images", count=args.images)
        model = train_digit_model(workdir / "model", epochs=2)
        paths = sorted(str(p) for p in images.glob("*.png"))
        limit = run_limit(paths, str(model), args.processes, args.mini_batch_size)
        plain = run_joblib(paths, str(model), args.processes, args.mini_batch_size)
        ours, first_row = run_ours(workdir, images, args.processes, args.mini_batch_size)
    rows = [
        ("hand-tuned limit (a)", limit, ours / limit),
        ("plain joblib.Parallel (b)", plain, ours / plain),
    ]
    lines = [
        "# Benchmark results",
        "",
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}.",
        "",
        f"W1 images: {args.images} PNG digits, Keras CNN, mini_batch_size {args.mini_batch_size}, "
        f"{args.processes} processes; wall time from start (submit) to the last row, model load "
        "included.",
        "",
        "| | seconds | jupyter_parallelrun ÷ this |",
        "|---|---:|---:|",
        f"| jupyter_parallelrun | {ours:.2f} | 1.00 |",
        *[f"| {name} | {seconds:.2f} | {ratio:.2f} |" for name, seconds, ratio in rows],
        "",
        f"First output row {first_row:.2f} s after submit; "
        f"{args.images / ours:.0f} images/s overall.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "RESULTS.md").write_text(text)


if __name__ == "__main__":
    main()
