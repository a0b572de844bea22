"""Submitting a pipeline run and resuming one: what ``Experiment.submit()`` and
``PipelineRun.resume()`` do behind their handles.

Submitting stores the run's description (``step_plan.make_plan``) with a record per step run,
claims the run for a runner in the same transaction, and starts the runner. Resuming claims the
run again, converts a description stored in the older plan format first (or says why it
cannot), sets what did not complete back to NotStarted and starts a runner.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .compute import check_where_it_runs
from .engine.runner_start import start_runner
from .environment_check import warn_each_time
from .step_description import DescriptionError, StepDescription
from .step_plan import make_plan, upgrade_plan, upgrade_step
from .store_lease import STARTUP_SECONDS, claim, lease_seconds

if TYPE_CHECKING:
    from .pipeline import Pipeline
    from .workspace import Workspace


def submit_pipeline(
    ws: Workspace,
    experiment: str,
    run_id: str,
    pipeline: Pipeline,
    pipeline_parameters: dict[str, Any] | None,
    tags: dict[str, str] | None,
) -> None:
    """Describe, store and start the run ``run_id`` of ``pipeline``."""
    described = make_plan(ws, pipeline, pipeline_parameters, run_id, experiment, getpass.getuser())
    # Before the run exists: a filter that makes EnvironmentWarning an error refuses the
    # submission instead of leaving a started run without its handle.
    for step in described.steps:
        for message in step.warnings:
            warn_each_time(f"step {step.name!r}: {message}")
    store = ws.store
    with store.transaction() as db:  # the run exists only with its claim
        store.create_run(
            db=db,
            id=run_id,
            experiment=experiment,
            kind="pipeline",
            status="NotStarted",
            spec=described.to_json(),
            tags=tags or {},
        )
        for step in described.steps:
            store.create_run(
                db=db,
                id=step.run_id,
                parent_id=run_id,
                experiment=experiment,
                name=step.name,
                kind="step",
                status="NotStarted",
                spec=step.to_json(),
            )
        token = claim(db, run_id, lease_seconds() + STARTUP_SECONDS)
    store.update_run(run_id, runner_pid=start_runner(store, ws.path, run_id, token))


def resume_pipeline(ws: Workspace, run_id: str) -> None:
    """Start a runner again on the Failed or Canceled run ``run_id`` (see
    ``PipelineRun.resume``)."""
    store = ws.store
    # Worked out before the transaction: resolving an output may register the default
    # datastore, a write of its own.
    try:
        upgraded, problem = _upgraded_specs(ws, run_id), None
    except DescriptionError as error:
        upgraded, problem = {}, error
    if problem is None and store.get_run(run_id)["status"] in ("Failed", "Canceled"):
        _check_where_they_run(ws, run_id, upgraded)
    with store.transaction() as db:
        # The claim first: with a runner on the run it says whose, whatever the status.
        token = claim(db, run_id, lease_seconds() + STARTUP_SECONDS)
        record = store.get_run(run_id)
        if record["status"] not in ("Failed", "Canceled"):
            raise ValueError(
                f"run {run_id} is {record['status']}; only a Failed or Canceled run can be resumed"
            )
        if problem is not None:
            raise ValueError(f"run {run_id} cannot be resumed: {problem}") from problem
        for updated_id, spec in upgraded.items():
            store.update_run(updated_id, db=db, spec=spec)
        for run in [record, *store.list_runs(parent_id=run_id)]:
            if run["status"] != "Completed":
                store.update_run(
                    run["id"],
                    db=db,
                    status="NotStarted",
                    ended=None,
                    error=None,
                    cancel_requested=0,
                    runner_pid=None,
                )
    store.update_run(run_id, runner_pid=start_runner(store, ws.path, run_id, token))


def _check_where_they_run(ws: Workspace, run_id: str, upgraded: dict[str, dict]) -> None:
    """Check again, as submit() did, where each step still to run will run: its cluster or
    its Python may have changed since (raises before any runner starts)."""
    for record in ws.store.list_runs(parent_id=run_id):
        if record["status"] != "Completed":
            step = StepDescription.from_json(upgraded.get(record["id"], record["spec"]))
            check_where_it_runs(ws, step.compute_target, step.settings.node_count, step.environment)


def _upgraded_specs(ws: Workspace, run_id: str) -> dict[str, dict[str, Any]]:
    """The run's records stored in the plan format of before versioned descriptions, by id,
    as descriptions (JSON); empty when there are none."""
    store = ws.store
    found: dict[str, dict[str, Any]] = {}
    record = store.get_run(run_id)
    if record is not None and "version" not in (record["spec"] or {}):
        found[run_id] = upgrade_plan(ws, record["spec"] or {}).to_json()
    for step in store.list_runs(parent_id=run_id):
        if "version" not in (step["spec"] or {}):
            found[step["id"]] = upgrade_step(ws, step["spec"] or {}).to_json()
    return found


def append_row_file(ws: Workspace, spec: dict[str, Any] | None) -> Path | None:
    """A step run's ``append_row`` file, from its stored description (an older one's
    resolved now); None for ``summary_only``, or when it cannot be found any more."""
    try:
        if spec and "version" in spec:
            step = StepDescription.from_json(spec)
        else:
            step = upgrade_step(ws, spec or {})
    except DescriptionError:
        return None  # a resume cuts its uncommitted rows: the committed offset is the truth
    file = step.output.append_row_file
    return Path(file) if file else None
