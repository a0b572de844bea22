"""The runner: the process of its own that carries out one pipeline run.

``Experiment.submit()`` writes the run's description (``step_description.py``) into the run
store and starts ``python -m jupyter_parallelrun.engine.runner DATA_FOLDER RUN_ID`` in a new
session, so the run outlives the notebook kernel that started it. The runner reads only that
description, the store and the workspace's data folder, never the API's objects. It takes the
steps in order; for each it
resolves the input, reuses an earlier identical step run when allowed, prepares the workers'
environment, and hands the mini-batches to the scheduler. Everything it learns goes into the
run store, where any notebook or terminal can watch it.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from ..step_description import OutputLocation, PipelineDescription, StepDescription
from ..storage import Listings
from ..store_lease import LeaseLost
from .backends import Backend, UnknownBackend, WorkerSettings, make_backend
from .budget import StepCanceled, StepFailed
from .credentials import step_credentials
from .error_text import MAX_MESSAGE_CHARS, shorten
from .lease import RunnerLease
from .logs import StepLogs
from .output import AppendRowWriter
from .partition import iter_mini_batches
from .runner_start import TOKEN_ENV, RunnerHome
from .scheduler import step_scheduler
from .step_input import (
    committed_counters,
    count_mini_batches,
    input_dataset,
    local_path,
    not_committed,
    signal_first,
    step_definition,
    step_fingerprint,
    upload_output,
)


def _worker_variables(step: StepDescription) -> dict[str, str]:
    """The environment variables of every worker process, besides its thread-pool sizes."""
    env = step.environment or {}
    return {
        # The workspace and run for Run.get_context(), and what the environment's pins need
        # (pandas' string option, ...), as the description says.
        **step.worker_variables,
        **{k: str(v) for k, v in (env.get("environment_variables") or {}).items()},
        **{k: str(v) for k, v in step.settings.environment_variables.items()},
    }


def _backend(home: RunnerHome, step: StepDescription) -> Backend:
    """Where the step's workers run: the backend its compute target's spec names (as
    registered in the store now), or this machine's."""
    config = step.settings
    name = step.compute_target
    found = home.store.lookup("compute", name) if name else (0, {"backend": "local"})
    if found is None:
        raise StepFailed(f"compute target {name!r} is no longer registered in the workspace")
    compute = found[1]
    if "backend" not in compute:
        raise StepFailed(
            f"compute target {name!r} was registered without a backend (by an earlier "
            "version): register it again with ComputeTarget.create() or DaskCompute.attach()"
        )
    settings = WorkerSettings(
        node_count=config.node_count,
        processes_per_node=config.process_count_per_node,
        interpreter_path=((step.environment or {}).get("python") or {}).get("interpreter_path"),
        variables=_worker_variables(step),
    )
    try:
        return make_backend(compute["backend"], compute, settings)
    except UnknownBackend as error:
        raise StepFailed(str(error)) from error


def run_step(home: RunnerHome, step: StepDescription, steps: dict[str, StepDescription]) -> None:
    """Carry out one step run, leaving its final status in the store."""
    store, run_id = home.store, step.run_id
    logs = StepLogs(home.run_folder(run_id) / "logs")
    store.update_run(run_id, status="Running", started=time.time(), runner_pid=os.getpid())
    for warning in step.warnings:
        logs.runner(f"warning: {warning}")
    try:
        dataset = input_dataset(step.input, steps)
        # The scheduler's, the counting thread's and the fingerprint's listings of the input
        # read each folder once, and see the same files.
        dataset.listings = Listings()
        definition = step_definition(step)
        store.update_run(run_id, definition=definition)
        # The input's fingerprint stats every file (seconds for a million). Reuse needs an
        # earlier completed run of this same definition; without one (a first run, a changed
        # script or setting, or allow_reuse=False) the counting thread records the
        # fingerprint later, off the way to the first dispatch.
        if step.allow_reuse and store.completed_with_definition(definition):
            fingerprint = step_fingerprint(definition, dataset.fingerprint())
            earlier = store.find_reusable(fingerprint)
            # A run stored in the older plan format has no resolved output to reuse.
            if earlier is not None and earlier["id"] != run_id and "version" in earlier["spec"]:
                _reuse(home, step, earlier, logs)
                return
            store.update_run(run_id, fingerprint=fingerprint)
        _execute(home, step, steps, dataset, logs)
        upload_output(store, step.output)
    except LeaseLost:
        raise  # another owner has the run now: nothing more is written
    except StepCanceled:
        _finish(home, step, logs, "Canceled", "canceled on request")
    except StepFailed as error:
        _finish(home, step, logs, "Failed", str(error))
    except Exception as error:  # noqa: BLE001 - anything else fails this step, with its cause
        logs.runner(traceback.format_exc())
        _finish(home, step, logs, "Failed", f"{type(error).__name__}: {error}")
    else:
        _finish(home, step, logs, "Completed", "")
    finally:
        logs.close()


def _execute(
    home: RunnerHome, step: StepDescription, steps: dict, dataset: Any, logs: StepLogs
) -> None:
    backend = _backend(home, step)
    try:
        _schedule(home, step, steps, dataset, logs, backend)
    finally:
        backend.close()


def _schedule(
    home: RunnerHome,
    step: StepDescription,
    steps: dict,
    dataset: Any,
    logs: StepLogs,
    backend: Backend,
) -> None:
    store, run_id, config = home.store, step.run_id, step.settings
    out_dir = Path(step.output.folder)
    writer = None
    # Under the lease, in one transaction: rows a runner that lost the run appended after the
    # last commit are cut back by this owner before it appends anything.
    with store.transaction():
        committed = {mb["mb_id"]: mb for mb in store.mini_batches(run_id)}
        offset = max((mb["output_end"] or 0 for mb in committed.values()), default=0)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            if step.output.append_row_file is not None:
                writer = AppendRowWriter(Path(step.output.append_row_file), offset)
        except OSError as error:
            raise StepFailed(f"cannot write the output folder {out_dir}: {error}") from error
    scratch = home.run_folder(run_id) / "scratch"
    size = step.mini_batch_size_parsed
    keys = None if config.partition_keys is None else list(config.partition_keys)
    formed = threading.Event()
    source = signal_first(
        not_committed(
            iter_mini_batches(dataset, size, partition_keys=keys, scratch_dir=scratch), committed
        ),
        formed,
    )
    worker_spec = _worker_spec(home, step, steps, dataset, out_dir)
    counters = committed_counters(committed.values())
    scheduler = step_scheduler(
        store, run_id, config, backend, logs, source, worker_spec, writer, committed, counters
    )
    record = store.get_run(run_id)
    unfingerprinted = None if record["fingerprint"] else record["definition"]
    listing = (dataset, size, keys, scratch)
    counting = threading.Thread(
        target=count_mini_batches,
        args=(scheduler.counted, store, run_id, *listing, formed, unfingerprinted),
        daemon=True,
    )
    counting.start()
    _freeze_heap()
    try:
        scheduler.run()
    finally:
        if writer is not None:
            writer.close()
        # What workers killed mid-download left behind (each cleans its own otherwise).
        shutil.rmtree(worker_spec["cache_dir"], ignore_errors=True)
    counting.join()  # a finished step shows its totals, even one too quick for the count
    scheduler.check_budget()


def _freeze_heap() -> None:
    """Keep the garbage collector off what the runner holds before scheduling.

    That (modules, joblib's and numpy's among them) lives as long as the runner: frozen, the
    full collections of a run of many quick mini-batches, each a few short-lived objects, pass
    it by (at mini_batch_size 1 they took 3% of the runner's time). No collection first: it
    would delay the workers' start by 50 ms, to free the little garbage imports leave."""
    gc.freeze()


def _worker_spec(
    home: RunnerHome, step: StepDescription, steps: dict, dataset: Any, out_dir: Path
) -> dict[str, Any]:
    """What every worker of the step needs to host the entry script (see ``worker_main``)."""
    config = step.settings
    return {
        "source_directory": step.snapshot,
        "entry_script": step.entry_script,
        "arguments": [local_path(a, steps) for a in step.arguments],
        "output_dir": str(out_dir),
        # Blob files of the mini-batches are downloaded here by the workers (see fetch.py).
        "cache_dir": str(home.run_folder(step.run_id) / "cache"),
        # Once per worker, not in every mini-batch spec (see credentials.py).
        "credentials": step_credentials(dataset),
        # Only blob files are downloaded, ahead of run(), on a reader thread (see fetch.py).
        "read_ahead": not dataset.tabular and bool(dataset.storage()),
        "output_action": config.output_action,
        "logging_level": config.logging_level,
        "resource_monitor_interval": config.resource_monitor_interval,
        "heartbeat_interval": min(5.0, float(config.heartbeat_timeout) / 4),
    }


def _reuse(home: RunnerHome, step: StepDescription, earlier: dict, logs: StepLogs) -> None:
    """Complete at once with the outputs of an identical earlier step run."""
    step = step.with_output(OutputLocation.from_json(earlier["spec"]["output"]))
    fields = {
        k: earlier[k]
        for k in (
            "items_total",
            "items_done",
            "items_failed",
            "mb_total",
            "mb_done",
            "mb_failed",
            "retries",
            "output_bytes",
        )
    }
    home.store.update_run(step.run_id, spec=step.to_json(), reused_from=earlier["id"], **fields)
    _finish(home, step, logs, "Completed", f"reused the outputs of step run {earlier['id']}")


def _finish(
    home: RunnerHome, step: StepDescription, logs: StepLogs, status: str, summary: str
) -> None:
    store, run_id = home.store, step.run_id
    run = store.get_run(run_id)
    counts = (
        f"{run['items_done']} items done, {run['items_failed']} failed; "
        f"{run['mb_done']} mini-batches done, {run['mb_failed']} failed, {run['retries']} retries"
    )
    logs.runner(f"step {step.name} {status}: {summary or counts}")  # in full
    summary = shorten(summary, MAX_MESSAGE_CHARS, "logs/runner.txt")
    logs.result(status, "\n".join(filter(None, [summary, counts])), store.errors(run_id))
    error = (summary or None) if status != "Completed" else None
    store.update_run(run_id, status=status, ended=time.time(), error=error)


def run_pipeline(home: RunnerHome, run_id: str, lease: RunnerLease) -> None:
    """Carry out every step of a pipeline run in order; a failed step stops the rest.

    Raises DescriptionError when the run is stored in a format this version cannot read.
    """
    store = home.store
    plan = PipelineDescription.from_json(store.get_run(run_id)["spec"])
    store.update_run(run_id, status="Running", started=time.time(), runner_pid=os.getpid())
    steps = {step.run_id: step for step in plan.steps}
    status, error = "Completed", None
    for step in plan.steps:
        current = store.get_run(step.run_id)
        if current["status"] in ("Completed", "Failed", "Canceled"):
            if current["status"] == "Completed":
                # Its own record: a reused step's output is the earlier run's.
                steps[step.run_id] = StepDescription.from_json(current["spec"])
                continue
        elif status == "Completed":
            if store.get_run(run_id)["cancel_requested"]:
                store.update_run(step.run_id, cancel_requested=1)
            run_step(home, step, steps)
            current = store.get_run(step.run_id)
            steps[step.run_id] = StepDescription.from_json(current["spec"])
        if status == "Completed" and current["status"] != "Completed":
            status = current["status"]
            error = f"step {step.name!r} {current['status'].lower()}: {current['error']}"
        elif status != "Completed" and current["status"] not in ("Completed", "Failed", "Canceled"):
            store.update_run(
                step.run_id,
                status="Canceled",
                ended=time.time(),
                error="not started: an earlier step did not complete",
            )
    with store.transaction() as db:  # the final status and letting go of the run, at once
        store.update_run(run_id, db=db, status=status, ended=time.time(), error=error)
        lease.release(db)


def main(argv: list[str] | None = None) -> None:
    folder, run_id = (argv or sys.argv[1:])[:2]
    home = RunnerHome.at(folder)
    lease = RunnerLease(home.store, run_id, os.environ.pop(TOKEN_ENV, ""))
    try:
        lease.take()
        run_pipeline(home, run_id, lease)
    except LeaseLost as error:
        # Another owner has the run (or a watcher gave it up): its state is theirs now. The
        # workers were killed on the way out (Scheduler.run's finally).
        print(f"the runner stops without writing: {error}", flush=True)
        sys.exit(3)
    except BaseException as error:
        lease.fail(f"the runner failed: {type(error).__name__}: {error}")
        raise
    finally:
        lease.stop()


if __name__ == "__main__":
    main()
