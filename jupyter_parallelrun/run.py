"""Experiment, PipelineRun and StepRun: thin handles over the run store.

A run handle holds only the workspace and the run id; every question it answers is read from
the store at that moment, so a handle made in another kernel, a terminal or after a restart
(``Run.get(ws, run_id)``) sees the same run as the one ``submit()`` returned.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .follow import Follower
from .metrics import MetricsLogging, OfflineRun
from .port_data import PortDataReference
from .progress import RunWatcher, run_state, summary_text
from .run_details import run_details, run_html
from .store import FINAL_STATUSES
from .workspace import RUN_ID_ENV, WORKSPACE_ENV, Workspace, register_collection

if TYPE_CHECKING:
    from .pipeline import Pipeline


#: Azure's rule for experiment names (azureml-core's Experiment): 3 to 36 characters.
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,35}\Z")


class ActivityFailedException(RuntimeError):
    """A run ended Failed or Canceled while ``wait_for_completion(raise_on_error=True)``."""


class Experiment:
    """A named group of runs in a workspace.

    Parameters
    ----------
    workspace : Workspace
    name : str
        As Azure's: 3 to 36 letters, digits, ``_`` and ``-``, starting with a letter or digit.

    Examples
    --------
    >>> run = Experiment(ws, "digit_identification").submit(pipeline)     # doctest: +SKIP
    """

    def __init__(self, workspace: Workspace, name: str) -> None:
        if not isinstance(name, str) or not EXPERIMENT_NAME.match(name):
            # The name is part of every run id, and so of the run's folder: a name outside
            # Azure's rule ("../../x") would put the folder outside the workspace.
            raise ValueError(
                "name must be 3 to 36 letters, digits, '_' and '-', starting with a letter or "
                f"digit (Azure's rule for experiment names); got {name!r}"
            )
        self.workspace, self.name = workspace, name

    def submit(
        self,
        config: Pipeline,
        pipeline_parameters: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> PipelineRun:
        """Validate ``config`` (a Pipeline), start it in a runner process, and return at once.

        Parameters
        ----------
        config : Pipeline
            The pipeline to run.
        pipeline_parameters : dict, optional
            Values for the pipeline's PipelineParameters, by name.
        tags : dict, optional
            Free-form tags stored with the run.
        """
        from .pipeline import Pipeline
        from .submission import submit_pipeline

        if not isinstance(config, Pipeline):
            raise TypeError(f"config must be a Pipeline; got {type(config).__name__}")
        run_id = f"{self.name}_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:8]}"
        submit_pipeline(self.workspace, self.name, run_id, config, pipeline_parameters, tags)
        return PipelineRun(self, run_id)

    def get_runs(self, type: str | None = None, tags: Any = None) -> list[PipelineRun]:
        """The experiment's runs, newest first."""
        return [
            PipelineRun(self, r["id"])
            for r in self.workspace.store.list_runs(experiment=self.name, top_level=True)
        ]

    def __repr__(self) -> str:
        return f"Experiment(workspace={self.workspace.name!r}, name={self.name!r})"


class Run(MetricsLogging):
    """A run of an experiment (a pipeline run or one of its step runs).

    ``log``, ``log_list`` and ``log_row`` record metrics in the run store, where
    :meth:`get_metrics` and RunDetails show them.
    """

    def __init__(self, experiment: Experiment, run_id: str) -> None:
        self.experiment = experiment
        self.id = run_id
        self._store = experiment.workspace.store

    @staticmethod
    def get(workspace: Workspace, run_id: str) -> Run:
        """Find any run of the workspace again by its id, from any kernel or process."""
        record = workspace.store.get_run(run_id)
        if record is None:
            raise ValueError(f"run_id={run_id!r}: no such run in workspace {workspace.name!r}")
        experiment = Experiment(workspace, record["experiment"])
        return (StepRun if record["kind"] == "step" else PipelineRun)(experiment, run_id)

    @staticmethod
    def get_context(allow_offline: bool = True, **kwargs: Any) -> Run | OfflineRun:
        """The run this code runs in: inside an entry script, its step run; elsewhere an
        :class:`OfflineRun` (Azure's offline run), or an error when ``allow_offline`` is
        false.

        Examples
        --------
        >>> from jupyter_parallelrun import Run
        >>> run = Run.get_context()          # in run(): the step run; here an offline run
        >>> run.log("rows_scored", 120)
        >>> run.get_metrics()
        {'rows_scored': 120}
        """
        run_id, folder = os.environ.get(RUN_ID_ENV), os.environ.get(WORKSPACE_ENV)
        if run_id and folder:
            return _context_run(folder, run_id)
        if not allow_offline:
            raise RuntimeError(
                "Run.get_context(allow_offline=False): this code is not running inside a run "
                f"({RUN_ID_ENV} is not set); call it from an entry script"
            )
        return OfflineRun()

    def _add_metric(self, name: str, kind: str, value: Any, description: str | None) -> None:
        from .entry_script import EntryScript

        worker = EntryScript().process_name if os.environ.get(RUN_ID_ENV) == self.id else None
        self._store.add_metric(self.id, name, kind, value, description or None, worker)

    @property
    def _record(self) -> dict[str, Any]:
        return self._store.get_run(self.id)

    @property
    def name(self) -> str | None:
        return self._record["name"]

    @property
    def status(self) -> str:
        return self.get_status()

    def get_status(self) -> str:
        """NotStarted, Running, Completed, Failed or Canceled."""
        return self._record["status"]

    def get_state(self) -> dict[str, Any]:
        """Status, timing and counters of the run and its steps (what RunDetails shows)."""
        state = run_state(self._store, self.id)
        # Seen by the read-only watcher (the lease lapsed); recorded here.
        if state["lost_runner"] and self._settle_if_unowned("Failed"):
            state = run_state(self._store, self.id)
        return state

    def _settle_if_unowned(self, status: str) -> bool:
        """End the run with ``status`` when no runner owns it (its lease lapsed), as one
        transaction that also lets the lease go and cuts uncommitted rows; whether it did."""
        from .engine.lease import settle_if_unowned
        from .submission import append_row_file

        ws = self.experiment.workspace
        pipeline_id = self._record["parent_id"] or self.id
        outputs = {}
        for step in self._store.list_runs(parent_id=pipeline_id):
            file = append_row_file(ws, step["spec"])
            if file is not None:
                outputs[step["id"]] = file
        log = ws.path / "runs" / pipeline_id / "runner_stdout.txt"
        return settle_if_unowned(self._store, pipeline_id, status, log, outputs)

    def wait_for_completion(
        self,
        show_output: bool = False,
        timeout_seconds: float | None = None,
        raise_on_error: bool = True,
    ) -> str:
        """Block until the run ends; returns its final status.

        With ``show_output`` it prints what ``parallelrun submit --wait`` prints: a progress
        line per step kept current while waiting, a line for each failed try as the store gets
        it, and at the end a summary and, when anything failed, the command that shows the logs.
        Raises ActivityFailedException when the run failed or was canceled and
        ``raise_on_error`` is true, TimeoutError past ``timeout_seconds``.
        """
        follower = Follower(self, sys.stdout, "parallelrun") if show_output else None
        watcher = follower.watcher if follower else RunWatcher(self._store, self.id)
        try:
            for state in watcher.follow(0.2, timeout_seconds):
                if follower and not state["final"]:
                    follower.poll(state)
        except TimeoutError:
            if follower and follower.in_place and follower.line:
                sys.stdout.write("\n")
            raise
        if state["lost_runner"]:
            state = self.get_state()  # the watcher only reads: record the lost runner
        if follower:
            follower.poll(state)  # the failed tries of the last moments are listed too
            follower.finish(state)
        if raise_on_error and state["status"] != "Completed":
            raise ActivityFailedException(
                f"run {self.id} {state['status']}: {state['error'] or 'no error recorded'}"
            )
        return state["status"]

    def cancel(self) -> None:
        """Ask the runner to stop; workers stop promptly and committed output stays.

        A run no runner owns (its lease lapsed) is marked Canceled at once."""
        runs = [self._record, *self._store.list_runs(parent_id=self.id)]
        for run in runs:
            if run["status"] not in FINAL_STATUSES:
                self._store.update_run(run["id"], cancel_requested=1)
        self._settle_if_unowned("Canceled")

    def get_details(self) -> dict[str, Any]:
        """Azure-style details: ids, status, times, what ran where, and what went wrong.

        Returns
        -------
        dict
            Azure's keys: ``runId``, ``status``, ``startTimeUtc``, ``endTimeUtc``,
            ``target`` (the compute target's name, ``"local"`` for the default),
            ``properties``, ``inputDatasets``, ``outputDatasets``, ``runDefinition`` (the
            script, arguments, settings and environment of a step; the steps of a pipeline),
            ``submittedBy``, ``logFiles``, ``error`` when it ended in error. Beyond Azure's:
            ``workers``, one entry per worker process (state, counts, restarts, last
            ``exitCode``, memory, CPU); ``errors``, every failed try, failed ``init()`` and
            lost process, newest first, with the ``pid``, ``exitCode`` and ``signal`` of a
            process that died; ``warnings``, what was noted at submit.
        """
        return run_details(self._store, self._record, self._folder, self.get_file_names())

    def get_metrics(self) -> dict[str, Any]:
        """The metrics logged with ``log``, ``log_list`` and ``log_row`` (a pipeline run's
        include its steps'), and the run's counters and throughput (summed over the steps of
        a pipeline run) under the names below."""
        steps = self.get_state()["steps"]
        total = lambda key: sum(step[key] or 0 for step in steps)  # noqa: E731
        elapsed = sum(step["elapsed"] for step in steps)
        # A reused step did its work in an earlier run: it adds items, not speed.
        worked = [step for step in steps if not step["reused_from"]]
        worked_elapsed = sum(step["elapsed"] for step in worked)
        worked_items = sum(step["items_done"] for step in worked)
        # Byte-range tabular input has no item count until every row has been read.
        unknown = any(step["items_total"] is None for step in steps)
        return {
            **self._store.run_metrics(self.id),
            "items_total": None if unknown else total("items_total"),
            "items_done": total("items_done"),
            "items_failed": total("items_failed"),
            "mini_batches_total": total("mb_total"),
            "mini_batches_done": total("mb_done"),
            "mini_batches_failed": total("mb_failed"),
            "retries": total("retries"),
            "nodes": max((step["nodes"] for step in steps), default=0),
            "processes": max((step["processes"] for step in steps), default=0),
            "duration_seconds": elapsed,
            "items_per_second": worked_items / worked_elapsed if worked_elapsed else 0.0,
        }

    @property
    def _folder(self) -> Path:
        return self.experiment.workspace.path / "runs" / self.id

    def get_file_names(self) -> list[str]:
        """Files of the run folder (logs and snapshot), relative to it."""
        if not self._folder.exists():
            return []
        return sorted(
            str(p.relative_to(self._folder)) for p in self._folder.rglob("*") if p.is_file()
        )

    def download_file(self, name: str, output_file_path: str | None = None) -> str:
        """Copy one of :meth:`get_file_names` to ``output_file_path``."""
        source = self._folder / name
        if not source.is_file():
            raise FileNotFoundError(
                f"name={name!r} is not a file of run {self.id}; see get_file_names()"
            )
        target = Path(output_file_path or Path(name).name)
        if target.is_dir():
            target = target / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        return str(target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, status={self.get_status()!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(summary_text(self.get_state()))

    def _ipython_display_(self) -> None:
        # Displaying a run is displaying its RunDetails, so a cell that shows the run as its
        # value and one that calls RunDetails(run).show() give the same, single view (kept
        # up to date to the run's end, as show() keeps it). The widget (anywidget, ipywidgets)
        # is imported on display: the command line, which never displays a run, does without.
        from .widget import RunDetails

        RunDetails(self).show()

    def _repr_html_(self) -> str:
        # Azure's table for a run object (Experiment, Id, Type, Status, Details page: here
        # the run's folder). IPython shows a run through _ipython_display_ (its RunDetails);
        # this is the HTML for where HTML is asked for (display(HTML(...)), other renderers).
        return run_html(self._record, self._folder)


@functools.lru_cache(maxsize=4)
def _context_run(folder: str, run_id: str) -> Run:
    # One handle (and store connection) per worker process, however often run() asks.
    return Run.get(Workspace.from_config(folder), run_id)


class PipelineRun(Run):
    """A submitted pipeline: the handle ``Experiment.submit()`` returns."""

    def resume(self) -> PipelineRun:
        """Carry on a run that failed, was canceled or lost its runner: completed steps stay,
        committed mini-batches are not run again, and their output rows are kept once.

        Raises
        ------
        RunAlreadyRunning
            A runner owns the run (another ``resume()`` was first, or it never stopped); the
            message says which runner, on which host, since when.
        ValueError
            The run is not Failed or Canceled, or it was stored in an older format that
            cannot be converted now (the message says why).
        EnvironmentCheckError, ConnectionError, FileNotFoundError
            Where a step still to run would run, the check ``submit()`` made fails now (a
            package gone from the workers' Python, a Dask worker that cannot see the
            workspace or reach this machine, ...): no runner is started.
        """
        from .submission import resume_pipeline

        self.get_state()  # a run whose runner was lost is marked Failed first
        resume_pipeline(self.experiment.workspace, self.id)
        return self

    def get_steps(self) -> list[StepRun]:
        return [StepRun(self.experiment, r["id"]) for r in self._store.list_runs(parent_id=self.id)]

    get_children = get_steps

    def find_step_run(self, name: str) -> list[StepRun]:
        """The step runs of the step called ``name`` (a list, as Azure returns)."""
        return [step for step in self.get_steps() if step.name == name]


class StepRun(Run):
    """The run of one ParallelRunStep inside a pipeline run."""

    def get_output_data(self, name: str) -> PortDataReference:
        """The step's output called ``name`` (its PipelineData's name)."""
        output = self._record["spec"]["output"]
        if output["name"] != name:
            raise ValueError(
                f"name={name!r} is not an output of step {self.name!r}; its output is "
                f"{output['name']!r}"
            )
        return PortDataReference(self.experiment.workspace, output)

    def get_output(self) -> PortDataReference:
        return self.get_output_data(self._record["spec"]["output"]["name"])


def _experiments(ws: Workspace) -> dict[str, Experiment]:
    """``ws.experiments``: those that have runs, and those made without any yet."""
    names = {r["experiment"] for r in ws.store.list_runs(top_level=True)}
    names.update(name for name, _, _ in ws.store.entries("experiment"))
    return {name: Experiment(ws, name) for name in sorted(names)}


register_collection("experiments", _experiments)
