"""The runner: the process of its own that carries out one pipeline run.

``Experiment.submit()`` writes the run plan into the run store and starts
``python -m jupyter_parallelrun.engine.runner CONFIG_DIR RUN_ID`` in a new session, so the run
outlives the notebook kernel that started it. The runner takes the steps in order; for each it
resolves the input, reuses an earlier identical step run when allowed, prepares the workers'
environment, and hands the mini-batches to the scheduler. Everything it learns goes into the
run store, where any notebook or terminal can watch it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

from ..settings import DEFAULT_HEARTBEAT_TIMEOUT, DEFAULT_LOGGING_LEVEL
from ..storage import Listings
from ..store_lease import LeaseLost, release
from ..workspace import RUN_ID_ENV, WORKSPACE_ENV, Workspace
from . import python_path
from .backends import Backend, UnknownBackend, WorkerSettings, make_backend
from .budget import Budget, StepCanceled, StepFailed
from .credentials import step_credentials
from .error_text import MAX_MESSAGE_CHARS, shorten
from .lease import RunnerLease
from .logs import StepLogs
from .output import AppendRowWriter
from .partition import iter_mini_batches
from .scheduler import Scheduler
from .step_input import (
    committed_counters,
    count_mini_batches,
    input_dataset,
    local_path,
    not_committed,
    output_folder,
    signal_first,
    step_definition,
    step_fingerprint,
    upload_output,
)

#: The environment variable that hands the runner its claim's token.
TOKEN_ENV = "JUPYTER_PARALLELRUN_LEASE_TOKEN"


def start_runner(ws: Workspace, run_id: str, token: str) -> int:
    """Start the runner process for ``run_id``, detached from the caller; returns its pid.

    ``token`` is the claim on the run made for this runner (see ``store_lease.claim``); it
    travels in the environment, which only its user can read, not in argv.
    """
    try:
        log = ws.path / "runs" / run_id / "runner_stdout.txt"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-X",
                    "faulthandler",  # a crash in C code still leaves its traceback in the log
                    "-m",
                    "jupyter_parallelrun.engine.runner",
                    str(ws.config_file.parent),
                    run_id,
                ],
                env={**os.environ, "PYTHONPATH": python_path(), TOKEN_ENV: token},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except BaseException:
        with ws.store.transaction() as db:  # no runner will take the claim made for it
            release(db, run_id)
        raise
    return process.pid


def _worker_variables(step: dict[str, Any], ws: Workspace) -> dict[str, str]:
    """The environment variables of every worker process, besides its thread-pool sizes."""
    config = step["config"]
    env = config.get("environment") or {}
    return {
        WORKSPACE_ENV: str(ws.config_file.parent),
        RUN_ID_ENV: step["run_id"],
        # What the plan found the environment's pins need (pandas' string option, ...)
        **step.get("worker_variables", {}),
        **{k: str(v) for k, v in (env.get("environment_variables") or {}).items()},
        **{k: str(v) for k, v in (config.get("environment_variables") or {}).items()},
    }


def _backend(ws: Workspace, step: dict[str, Any]) -> Backend:
    """Where the step's workers run: the backend its compute target's spec names (as
    registered in the store now), or this machine's."""
    config = step["config"]
    name = config.get("compute_target")
    found = ws.store.lookup("compute", name) if name else (0, {"backend": "local"})
    if found is None:
        raise StepFailed(f"compute target {name!r} is no longer registered in the workspace")
    compute = found[1]
    if "backend" not in compute:
        raise StepFailed(
            f"compute target {name!r} was registered without a backend (by an earlier "
            "version): register it again with ComputeTarget.create() or DaskCompute.attach()"
        )
    settings = WorkerSettings(
        node_count=config["node_count"],
        processes_per_node=config["process_count_per_node"],
        interpreter_path=((config.get("environment") or {}).get("python") or {}).get(
            "interpreter_path"
        ),
        variables=_worker_variables(step, ws),
    )
    try:
        return make_backend(compute["backend"], compute, settings)
    except UnknownBackend as error:
        raise StepFailed(str(error)) from error


def run_step(ws: Workspace, step: dict[str, Any], steps: dict[str, dict]) -> None:
    """Carry out one step run, leaving its final status in the store."""
    store, run_id = ws.store, step["run_id"]
    logs = StepLogs(ws.path / "runs" / run_id / "logs")
    store.update_run(run_id, status="Running", started=time.time(), runner_pid=os.getpid())
    for warning in step.get("warnings", []):
        logs.runner(f"warning: {warning}")
    try:
        dataset = input_dataset(ws, step["input"], steps)
        # The scheduler's, the counting thread's and the fingerprint's listings of the input
        # read each folder once, and see the same files.
        dataset.listings = Listings()
        definition = step_definition(step)
        store.update_run(run_id, definition=definition)
        # The input's fingerprint stats every file (seconds for a million). Reuse needs an
        # earlier completed run of this same definition; without one (a first run, a changed
        # script or setting, or allow_reuse=False) the counting thread records the
        # fingerprint later, off the way to the first dispatch.
        if step["allow_reuse"] and store.completed_with_definition(definition):
            fingerprint = step_fingerprint(definition, dataset.fingerprint())
            earlier = store.find_reusable(fingerprint)
            if earlier is not None and earlier["id"] != run_id:
                _reuse(ws, step, earlier, logs)
                return
            store.update_run(run_id, fingerprint=fingerprint)
        _execute(ws, step, steps, dataset, logs)
        upload_output(ws, step["output"])
    except LeaseLost:
        raise  # another owner has the run now: nothing more is written
    except StepCanceled:
        _finish(ws, step, logs, "Canceled", "canceled on request")
    except StepFailed as error:
        _finish(ws, step, logs, "Failed", str(error))
    except Exception as error:  # noqa: BLE001 - anything else fails this step, with its cause
        logs.runner(traceback.format_exc())
        _finish(ws, step, logs, "Failed", f"{type(error).__name__}: {error}")
    else:
        _finish(ws, step, logs, "Completed", "")
    finally:
        logs.close()


def _execute(ws: Workspace, step: dict, steps: dict, dataset: Any, logs: StepLogs) -> None:
    backend = _backend(ws, step)
    try:
        _schedule(ws, step, steps, dataset, logs, backend)
    finally:
        backend.close()


def _schedule(
    ws: Workspace, step: dict, steps: dict, dataset: Any, logs: StepLogs, backend: Backend
) -> None:
    store, run_id, config = ws.store, step["run_id"], step["config"]
    nodes, per_node = config["node_count"], config["process_count_per_node"]
    out_dir = output_folder(ws, step["output"])
    writer = None
    # Under the lease, in one transaction: rows a runner that lost the run appended after the
    # last commit are cut back by this owner before it appends anything.
    with store.transaction():
        committed = {mb["mb_id"]: mb for mb in store.mini_batches(run_id)}
        offset = max((mb["output_end"] or 0 for mb in committed.values()), default=0)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            if config["output_action"] == "append_row":
                writer = AppendRowWriter(out_dir / config["append_row_file_name"], offset)
        except OSError as error:
            raise StepFailed(f"cannot write the output folder {out_dir}: {error}") from error
    scratch = ws.path / "runs" / run_id / "scratch"
    size, keys = config["mini_batch_size_parsed"], config.get("partition_keys")
    formed = threading.Event()
    source = signal_first(
        not_committed(
            iter_mini_batches(dataset, size, partition_keys=keys, scratch_dir=scratch), committed
        ),
        formed,
    )
    interval = config.get("resource_monitor_interval")
    heartbeat_timeout = float(config.get("heartbeat_timeout") or DEFAULT_HEARTBEAT_TIMEOUT)
    worker_spec = {
        "source_directory": step["snapshot"],
        "entry_script": config["entry_script"],
        "arguments": [local_path(ws, a, steps) for a in step["arguments"]],
        "output_dir": str(out_dir),
        # Blob files of the mini-batches are downloaded here by the workers (see fetch.py).
        "cache_dir": str(ws.path / "runs" / run_id / "cache"),
        # Once per worker, not in every mini-batch spec (see credentials.py).
        "credentials": step_credentials(dataset),
        "output_action": config["output_action"],
        "logging_level": config.get("logging_level", DEFAULT_LOGGING_LEVEL),
        "resource_monitor_interval": 5 if interval is None else interval,
        "heartbeat_interval": min(5.0, heartbeat_timeout / 4),
    }
    scheduler = Scheduler(
        store=store,
        run_id=run_id,
        backend=backend,
        mini_batches=source,
        worker_spec=worker_spec,
        nodes=nodes,
        processes_per_node=per_node,
        writer=writer,
        logs=logs,
        run_invocation_timeout=config["run_invocation_timeout"],
        run_max_try=config["run_max_try"],
        budget=Budget(
            config["error_threshold"],
            config.get("allowed_failed_count"),
            config.get("allowed_failed_percent"),
        ),
        progress_update_timeout=config.get("progress_update_timeout"),
        first_task_creation_timeout=config.get("first_task_creation_timeout"),
        task_overhead_timeout=config.get("task_overhead_timeout"),
        heartbeat_timeout=heartbeat_timeout,
        counters=committed_counters(committed.values()),
        ordered_after=committed.keys() if config.get("preserve_order") else None,
    )
    record = store.get_run(run_id)
    unfingerprinted = None if record["fingerprint"] else record["definition"]
    counting = threading.Thread(
        target=count_mini_batches,
        args=(scheduler, store, run_id, dataset, size, keys, scratch, formed, unfingerprinted),
        daemon=True,
    )
    counting.start()
    try:
        scheduler.run()
    finally:
        if writer is not None:
            writer.close()
        # What workers killed mid-download left behind (each cleans its own otherwise).
        shutil.rmtree(worker_spec["cache_dir"], ignore_errors=True)
    counting.join()  # a finished step shows its totals, even one too quick for the count
    reason = scheduler.budget.exceeded(
        scheduler.counters["items_failed"],
        scheduler.counters["mb_failed"],
        scheduler.counters["mb_done"] + scheduler.counters["mb_failed"],
    )
    if reason:
        raise StepFailed(reason)


def _reuse(ws: Workspace, step: dict, earlier: dict, logs: StepLogs) -> None:
    """Complete at once with the outputs of an identical earlier step run."""
    step["output"] = earlier["spec"]["output"]
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
    ws.store.update_run(step["run_id"], spec=step, reused_from=earlier["id"], **fields)
    _finish(ws, step, logs, "Completed", f"reused the outputs of step run {earlier['id']}")


def _finish(ws: Workspace, step: dict, logs: StepLogs, status: str, summary: str) -> None:
    store, run_id = ws.store, step["run_id"]
    run = store.get_run(run_id)
    counts = (
        f"{run['items_done']} items done, {run['items_failed']} failed; "
        f"{run['mb_done']} mini-batches done, {run['mb_failed']} failed, {run['retries']} retries"
    )
    logs.runner(f"step {step['name']} {status}: {summary or counts}")  # in full
    summary = shorten(summary, MAX_MESSAGE_CHARS, "logs/runner.txt")
    logs.result(status, "\n".join(filter(None, [summary, counts])), store.errors(run_id))
    error = (summary or None) if status != "Completed" else None
    store.update_run(run_id, status=status, ended=time.time(), error=error)


def run_pipeline(ws: Workspace, run_id: str, lease: RunnerLease) -> None:
    """Carry out every step of a pipeline run in order; a failed step stops the rest."""
    store = ws.store
    plan = store.get_run(run_id)["spec"]
    store.update_run(run_id, status="Running", started=time.time(), runner_pid=os.getpid())
    steps = {step["run_id"]: step for step in plan["steps"]}
    status, error = "Completed", None
    for step in plan["steps"]:
        current = store.get_run(step["run_id"])
        if current["status"] in ("Completed", "Failed", "Canceled"):
            if current["status"] == "Completed":
                steps[step["run_id"]] = current["spec"]
                continue
        elif status == "Completed":
            if store.get_run(run_id)["cancel_requested"]:
                store.update_run(step["run_id"], cancel_requested=1)
            run_step(ws, step, steps)
            steps[step["run_id"]] = store.get_run(step["run_id"])["spec"]
            current = store.get_run(step["run_id"])
        if status == "Completed" and current["status"] != "Completed":
            status = current["status"]
            error = f"step {step['name']!r} {current['status'].lower()}: {current['error']}"
        elif status != "Completed" and current["status"] not in ("Completed", "Failed", "Canceled"):
            store.update_run(
                step["run_id"],
                status="Canceled",
                ended=time.time(),
                error="not started: an earlier step did not complete",
            )
    with store.transaction() as db:  # the final status and letting go of the run, at once
        store.update_run(run_id, db=db, status=status, ended=time.time(), error=error)
        lease.release(db)


def main(argv: list[str] | None = None) -> None:
    config_dir, run_id = (argv or sys.argv[1:])[:2]
    ws = Workspace(path=config_dir)
    lease = RunnerLease(ws.store, run_id, os.environ.pop(TOKEN_ENV, ""))
    try:
        lease.take()
        run_pipeline(ws, run_id, lease)
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
