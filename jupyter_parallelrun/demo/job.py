"""The demo batch job: Azure ML's digit-identification ParallelRunStep tutorial, run locally.

:func:`run_demo` makes a workspace, writes handwritten digit images, trains and registers a
model, runs the ParallelRunStep pipeline over the images with the entry script in
``scripts/digit_identification.py``, reads the output back the way Azure's tutorial does, and
checks it against the true labels. :func:`summarize` turns a finished step run into the numbers
the demo reports.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from jupyter_parallelrun import (
    AmlCompute,
    ComputeTarget,
    CondaDependencies,
    Dataset,
    DatasetConsumptionConfig,
    Datastore,
    Environment,
    Experiment,
    Model,
    ParallelRunConfig,
    ParallelRunStep,
    Pipeline,
    PipelineData,
    PipelineParameter,
    Workspace,
)

from ..follow import follow
from .digits import LABELS_FILE, make_digit_images, split_digits
from .train import evaluate_digit_model, train_digit_model

SCRIPTS_FOLDER = Path(__file__).parent / "scripts"
ENTRY_SCRIPT = "digit_identification.py"
STEP_NAME = "predict-digits"
OUTPUT_FILE = "digit_outputs.txt"
#: Below this share of correctly identified images the demo counts as failed.
MIN_ACCURACY = 0.85


def run_demo(
    workdir: str | Path,
    images: int = 3000,
    processes: int = 2,
    mini_batch_size: int = 100,
    show_output: bool = True,
) -> dict[str, Any]:
    """Run the digit-identification batch job end to end and summarise it.

    Parameters
    ----------
    workdir : str or pathlib.Path
        Folder for the workspace, the images (``images/``), the model (``model/``) and the
        downloaded output (``outputs/``); created if missing. Images left there by an earlier
        run are replaced.
    images : int, default 3000
        Number of digit images to score.
    processes : int, default 2
        Worker processes (``process_count_per_node``, on one node).
    mini_batch_size : int, default 100
        Images per mini-batch.
    show_output : bool, default True
        Print each phase as it starts and ends, the step's live progress line (with every
        failed try as it happens) and its summary.

    Returns
    -------
    dict
        What :func:`summarize` returns, plus ``generate_seconds``, ``train_seconds`` and
        ``model_test_accuracy`` (the model's accuracy on digits held out of training).

    Examples
    --------
    >>> summary = run_demo("demo_workspace", images=300)     # doctest: +SKIP
    >>> summary["passed"]                                     # doctest: +SKIP
    True
    """
    say = _printer(show_output)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    images_dir = workdir / "images"
    # Stale files from a larger earlier run would otherwise be scored too.
    shutil.rmtree(images_dir, ignore_errors=True)
    train_idx, held_out_idx = split_digits()
    say(
        f"rendering {images} digit images (28x28 PNG) from the {len(held_out_idx)} scikit-learn "
        f"digits held out of training, into {images_dir}"
    )
    started = time.perf_counter()
    make_digit_images(images_dir, count=images)
    generate_seconds = time.perf_counter() - started
    say(f"  written in {generate_seconds:.1f} s")

    say(f"training the Keras CNN on the other {len(train_idx)} digits (tensorflow-cpu)")
    started = time.perf_counter()
    model_file = train_digit_model(workdir / "model")
    train_seconds = time.perf_counter() - started
    model_test_accuracy = evaluate_digit_model(model_file)
    say(
        f"  trained in {train_seconds:.1f} s; accuracy on the {len(held_out_idx)} held-out "
        f"digits {model_test_accuracy:.4f}"
    )

    say(f"registering the model 'mnist' and the images' datastore in the workspace {workdir}")
    ws = Workspace.create("digits-demo", path=workdir, exist_ok=True)
    local = Datastore.register_local_folder(ws, "images", images_dir, overwrite=True)
    digits_ds = Dataset.File.from_files(path=local.path("*.png"))
    digits_param = PipelineParameter(name="digits_param", default_value=digits_ds)
    input_digits = DatasetConsumptionConfig("digits_param_config", digits_param).as_mount()
    output_dir = PipelineData(
        name="inferences",
        datastore=ws.get_default_datastore(),
        output_path_on_compute="digits/results",
    )
    Model.register(
        workspace=ws,
        model_path=str(model_file),
        model_name="mnist",
        tags={"data": "sklearn digits 28x28", "model": "cnn"},
        description="Small Keras CNN identifying handwritten digits",
    )
    batch_env = Environment(name="batch_environment")
    batch_env.python.conda_dependencies = CondaDependencies.create(
        pip_packages=["tensorflow-cpu", "pillow"]
    )
    compute = ComputeTarget.create(
        ws, "cpucluster", AmlCompute.provisioning_configuration(max_nodes=1)
    )
    parallel_run_config = ParallelRunConfig(
        source_directory=str(SCRIPTS_FOLDER),
        entry_script=ENTRY_SCRIPT,
        mini_batch_size=PipelineParameter(
            name="batch_size_param", default_value=str(mini_batch_size)
        ),
        error_threshold=10,
        output_action="append_row",
        append_row_file_name=OUTPUT_FILE,
        environment=batch_env,
        compute_target=compute,
        process_count_per_node=PipelineParameter(
            name="process_count_param", default_value=processes
        ),
        node_count=1,
    )
    step = ParallelRunStep(
        name=STEP_NAME,
        parallel_run_config=parallel_run_config,
        inputs=[input_digits],
        output=output_dir,
        allow_reuse=False,
    )
    say(
        f"submitting the ParallelRunStep {STEP_NAME!r}: {images} images, mini-batches of "
        f"{mini_batch_size}, {processes} worker processes"
    )
    started = time.perf_counter()
    pipeline_run = Experiment(ws, "digit_identification").submit(
        Pipeline(workspace=ws, steps=[step])
    )
    if show_output:
        follow(pipeline_run, prog=f"parallelrun --workspace {workdir}")
    else:
        pipeline_run.wait_for_completion(raise_on_error=False)
    wall_seconds = time.perf_counter() - started

    step_run = pipeline_run.find_step_run(STEP_NAME)[0]
    step_output = step_run.get_output_data("inferences")
    target_dir = workdir / "outputs"
    step_output.download(local_path=str(target_dir), overwrite=True)
    result_file = os.path.join(
        target_dir, step_output.path_on_datastore, parallel_run_config.append_row_file_name
    )
    summary = summarize(step_run, result_file, images_dir / LABELS_FILE, wall_seconds)
    summary.update(
        generate_seconds=generate_seconds,
        train_seconds=train_seconds,
        model_test_accuracy=model_test_accuracy,
    )
    return summary


def _printer(show_output: bool):
    def say(text: str) -> None:
        if show_output:
            print(text, flush=True)  # each phase as it starts, even when stdout is a pipe

    return say


def summarize(
    step_run: Any, result_file: str | Path, labels_csv: str | Path, wall_seconds: float
) -> dict[str, Any]:
    """The numbers of a finished digit-identification step run, checked against the labels.

    Parameters
    ----------
    step_run : StepRun
        The run of the ParallelRunStep; its status and metrics are read.
    result_file : str or pathlib.Path
        The downloaded append_row file: header-less CSV rows ``<file name>,<digit>``.
        A missing file reads as no rows.
    labels_csv : str or pathlib.Path
        ``labels.csv`` of :func:`~jupyter_parallelrun.demo.digits.make_digit_images`.
    wall_seconds : float
        Seconds from submit to the end of the run.

    Returns
    -------
    dict
        ``status``, ``items`` (images in the input), ``items_done``, ``items_failed``,
        ``mini_batches``, ``mini_batches_failed``, ``processes``, ``wall_seconds``,
        ``images_per_second``, ``result_file``, ``rows``, ``duplicate_rows`` (files with more
        than one row), ``missing_rows`` (images with no row), ``unknown_rows`` (rows naming no
        input image), ``accuracy`` (over all images; an image without a row counts as wrong)
        and ``passed``: the run completed, every image has exactly one row and the accuracy
        is at least 0.85.
    """
    labels = pd.read_csv(labels_csv)
    if Path(result_file).is_file() and Path(result_file).stat().st_size:
        predictions = pd.read_csv(result_file, header=None, names=["file", "predicted"])
    else:
        predictions = pd.DataFrame({"file": pd.Series(dtype=str), "predicted": []})
    counts = predictions["file"].value_counts()
    known = set(labels["file"])
    first_rows = predictions.drop_duplicates("file")
    scored = labels.merge(first_rows, on="file", how="left")
    correct = int((scored["predicted"] == scored["label"]).sum())
    metrics = step_run.get_metrics()
    status = step_run.get_status()
    rows = len(predictions)
    summary = {
        "status": status,
        "items": len(labels),
        "items_done": metrics.get("items_done", rows),
        "items_failed": metrics.get("items_failed", len(labels) - rows),
        "mini_batches": metrics.get("mini_batches_done", 0) + metrics.get("mini_batches_failed", 0),
        "mini_batches_failed": metrics.get("mini_batches_failed", 0),
        "processes": metrics.get("processes"),
        "wall_seconds": wall_seconds,
        "images_per_second": rows / wall_seconds if wall_seconds > 0 else 0.0,
        "result_file": str(result_file),
        "rows": rows,
        "duplicate_rows": int((counts > 1).sum()),
        "missing_rows": int(scored["predicted"].isna().sum()),
        "unknown_rows": int((~predictions["file"].isin(known)).sum()),
        "accuracy": correct / len(labels) if len(labels) else 0.0,
    }
    summary["passed"] = (
        status == "Completed"
        and summary["duplicate_rows"] == summary["missing_rows"] == summary["unknown_rows"] == 0
        and summary["accuracy"] >= MIN_ACCURACY
    )
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The summary of :func:`run_demo` as the lines the command prints.

    Parameters
    ----------
    summary : dict
        As returned by :func:`run_demo` or :func:`summarize`.

    Returns
    -------
    str
    """
    lines = [
        f"status           {summary['status']}",
        f"images           {summary['items']}  (done {summary['items_done']}, "
        f"failed {summary['items_failed']})",
        f"mini-batches     {summary['mini_batches']}  (failed {summary['mini_batches_failed']})",
        f"processes        {summary['processes']}",
        f"wall time        {summary['wall_seconds']:.1f} s from submit to completion",
        f"throughput       {summary['images_per_second']:.0f} images/s",
        f"output rows      {summary['rows']}  (duplicates {summary['duplicate_rows']}, "
        f"missing {summary['missing_rows']}, unknown {summary['unknown_rows']})",
        f"output file      {summary['result_file']}",
        f"accuracy         {summary['accuracy']:.4f}  on images of held-out digits only, none "
        f"trained on (at least {MIN_ACCURACY} to pass)",
    ]
    if "train_seconds" in summary:
        lines[:0] = [
            f"images written   in {summary['generate_seconds']:.1f} s",
            f"model trained    in {summary['train_seconds']:.1f} s, "
            f"accuracy on the held-out digits {summary['model_test_accuracy']:.4f}",
        ]
    lines.append("PASSED" if summary["passed"] else "FAILED")
    return "\n".join(lines)
