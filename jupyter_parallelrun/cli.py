"""The ``parallelrun`` command line: what each verb does (the magics call the same functions).

Verbs: ``submit`` (the default: a script on an input, with ParallelRunConfig's options as
flags), ``runs``, ``show``, ``logs``, ``cancel``, ``resume``, ``resubmit``. Each one calls the
same Python API a notebook would.
"""

from __future__ import annotations

import argparse
import glob
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .command_line import CONFIG_FLAGS, UsageError, environment_variables, parse, step_name
from .follow import follow
from .progress import summary_text
from .settings import PARSERS, from_text
from .store import FINAL_STATUSES


def _workspace(args: argparse.Namespace) -> Any:
    from .workspace import Workspace

    return Workspace.from_config(args.workspace)


def resolve_input(text: str, ws: Any, tabular: bool, namespace: dict | None = None) -> Any:
    """A Dataset from ``--input``: ``$name`` in the notebook, a registered name, or a path."""
    from .dataset import Dataset

    if text.startswith("$"):
        if namespace is None or text[1:] not in namespace:
            raise UsageError(f"--input {text}: no variable {text[1:]!r} in the notebook")
        value = namespace[text[1:]]
        if hasattr(value, "to_spec"):
            return value
        if hasattr(value, "to_parquet"):
            folder = ws.path / "inputs"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{text[1:]}.parquet"
            value.to_parquet(path)
            return Dataset.Tabular.from_parquet_files(path=str(path))
        return Dataset.File.from_files(path=[str(p) for p in value])
    if ws.store.lookup("dataset", text) is not None:
        return Dataset.get_by_name(ws, text)
    if not glob.glob(text, recursive=True) and not Path(text).exists():
        raise UsageError(f"--input {text}: no such file, folder, pattern or registered dataset")
    if not tabular:
        return Dataset.File.from_files(path=text)
    suffix = Path(text.rstrip("*/")).suffix.lower() or Path(text).suffix.lower()
    if suffix == ".parquet":
        return Dataset.Tabular.from_parquet_files(path=text)
    if suffix in (".jsonl", ".json"):
        return Dataset.Tabular.from_json_lines_files(path=text)
    return Dataset.Tabular.from_delimited_files(path=text)


def config_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ParallelRunConfig keywords given as flags, each flag's text read as its setting's
    grammar reads text (``"3"`` as 3 for ``node_count``, ``"5"`` kept for mini_batch_size),
    over the settings a resubmission inherits (``args.inherited``)."""
    given = {dest: getattr(args, dest) for _, dest, _, _ in CONFIG_FLAGS}
    options = dict(getattr(args, "inherited", {}))
    for name, value in given.items():
        if value is not None:
            options[name] = from_text(name, value) if name in PARSERS else value
    if args.partition_keys:
        options["partition_keys"] = [k.strip() for k in args.partition_keys.split(",")]
    if args.environment_variables:  # over a resubmitted run's own: each NAME given replaces
        given = environment_variables(args.environment_variables)
        options["environment_variables"] = {**options.get("environment_variables", {}), **given}
    return options


def submit(args: argparse.Namespace, ws: Any, namespace: dict | None = None) -> Any:
    """Submit a one-step pipeline from parsed ``submit`` arguments; returns the PipelineRun."""
    experiment, pipeline = step_pipeline(args, ws, namespace)
    return experiment.submit(pipeline)


def step_pipeline(
    args: argparse.Namespace, ws: Any, namespace: dict | None = None
) -> tuple[Any, Any]:
    """The Experiment and the one-step Pipeline that parsed ``submit`` arguments describe."""
    from .config import ParallelRunConfig
    from .pipeline import ParallelRunStep, Pipeline, PipelineData
    from .run import Experiment

    if not args.script:
        raise UsageError("submit: the entry script is missing")
    script = Path(args.script)
    source = args.source_directory or str(script.parent.resolve())
    entry = str(script.relative_to(source)) if args.source_directory else script.name
    name = args.name or step_name(script.stem)
    dataset = resolve_input(args.input, ws, args.tabular, namespace)
    side = [resolve_input(s, ws, False, namespace) for s in args.side_inputs]
    cfg = ParallelRunConfig(source_directory=source, entry_script=entry, **config_options(args))
    step = ParallelRunStep(
        name=name,
        parallel_run_config=cfg,
        inputs=[dataset.as_named_input("input")],
        output=PipelineData(name="output", datastore=ws.get_default_datastore()),
        side_inputs=[s.as_named_input(f"side_input_{i}") for i, s in enumerate(side)],
        arguments=args.arguments or [],
        allow_reuse=not args.no_reuse,
    )
    return Experiment(ws, args.experiment or name), Pipeline(workspace=ws, steps=[step])


def runs_table(ws: Any, experiment: str | None = None, limit: int = 20) -> str:
    """Recent runs: id, experiment, status, items, failures, duration."""
    from .progress import run_state

    lines = [
        f"{'run id':<52} {'experiment':<22} {'status':<10} {'items':>8} {'failed':>7} "
        f"{'duration':>9}"
    ]
    for record in ws.store.list_runs(experiment=experiment, top_level=True, limit=limit):
        state = run_state(ws.store, record["id"])
        items = sum(s["items_done"] for s in state["steps"])
        failed = sum(s["items_failed"] for s in state["steps"])
        lines.append(
            f"{record['id']:<52} {record['experiment']:<22} {record['status']:<10} "
            f"{items:>8} {failed:>7} {state['elapsed']:>8.1f}s"
        )
    return "\n".join(lines)


#: Control characters a terminal acts on (ESC starts colour, cursor and title sequences;
#: CR rewrites a line; C1 holds a one-byte CSI): everything but tab and newline.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    r"""``text`` with the control characters a terminal would act on written as ``\x1b``
    escapes: a worker's log holds whatever the user's code printed.

    Examples
    --------
    >>> terminal_safe("\x1b[31mred\x1b[0m")
    '\\x1b[31mred\\x1b[0m'
    """
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def logs_text(ws: Any, run_id: str, process: str | None = None) -> str:
    """A step's result and error summary, or one worker's log."""
    from .run import Run

    run = Run.get(ws, run_id)
    steps = run.get_steps() if hasattr(run, "get_steps") else [run]
    parts = []
    for step in steps:
        folder = ws.path / "runs" / step.id / "logs"
        names = [f"workers/{process}.txt"] if process else ["job_result.txt", "job_error.txt"]
        for name in names:
            path = folder / name
            if path.exists():
                text = terminal_safe(path.read_bytes().decode("utf-8", "backslashreplace"))
                parts.append(f"== {step.name}: {name} ==\n{text.rstrip()}")
            elif process:
                known = sorted(p.stem for p in (folder / "workers").glob("*.txt"))
                raise UsageError(f"--process {process}: no such process; processes: {known}")
    return "\n".join(parts) or f"run {run_id} has no logs yet"


def _consumed(spec: dict[str, Any], ws: Any, dataset: Any = None) -> Any:
    """An input of a stored step as the step consumed it: its name, its mode, and its dataset
    (or ``dataset`` in its place)."""
    from .dataset import Dataset
    from .pipeline_inputs import DatasetConsumptionConfig

    if dataset is None:
        dataset = Dataset.from_spec(spec["dataset"], ws)
    return DatasetConsumptionConfig(spec["name"], dataset, spec.get("mode", "direct"))


def resubmitted_pipeline(
    args: argparse.Namespace, ws: Any, namespace: dict | None = None
) -> tuple[Any, Any]:
    """The Experiment and the one-step Pipeline of an earlier run (``args.run_id``) with what
    the ``resubmit`` flags change: everything else as that run had it (its snapshot, settings,
    environment, input's name and mode, side inputs, arguments, output, allow_reuse)."""
    from .config import ParallelRunConfig
    from .datastore import Datastore
    from .environment import Environment
    from .pipeline import ParallelRunStep, Pipeline, PipelineData
    from .run import Experiment, Run
    from .workspace import DEFAULT_DATASTORE

    record = ws.store.get_run(Run.get(ws, args.run_id).id)
    if record["kind"] == "step":
        raise UsageError(
            f"resubmit {args.run_id}: that is a step run; give its pipeline run's id, "
            f"{record['parent_id']}"
        )
    if len(record["spec"]["steps"]) != 1:
        raise UsageError(f"resubmit {args.run_id}: only runs of one step can be resubmitted")
    step = record["spec"]["steps"][0]
    config, earlier = step["config"], step["input"]
    if args.input is None and "dataset" not in earlier:
        raise UsageError(f"resubmit {args.run_id}: give --input (its input came from a step)")
    # A new input is read as the earlier one was: a table for a table.
    tabular = (earlier.get("dataset") or {}).get("type") == "tabular"
    new = None if args.input is None else resolve_input(args.input, ws, tabular, namespace)
    # Every setting the run had, None included (first_task_creation_timeout=None waits for
    # ever; left out, it would be the default 600), under what the flags give.
    args.inherited = {k: config[k] for k in (*PARSERS, "compute_target") if k in config}
    environment = config.get("environment")
    cfg = ParallelRunConfig(
        source_directory=step["snapshot"],
        entry_script=config["entry_script"],
        environment=None if environment is None else Environment.from_spec(environment),
        description=config.get("description"),
        **config_options(args),
    )
    output = step["output"]
    datastore = output["datastore"]
    arguments = step["arguments"] if args.arguments is None else args.arguments
    resubmitted = ParallelRunStep(
        name=args.name or step["name"],
        parallel_run_config=cfg,
        inputs=[_consumed(earlier, ws, new)],
        output=PipelineData(
            name=output["name"],
            datastore=ws.get_default_datastore()
            if datastore == DEFAULT_DATASTORE
            else Datastore.get(ws, datastore),
        ),
        side_inputs=[_consumed(side, ws) for side in step["side_inputs"]],
        arguments=[a if isinstance(a, str) else _consumed(a, ws) for a in arguments],
        allow_reuse=step["allow_reuse"] and not args.no_reuse,
    )
    experiment = Experiment(ws, args.experiment or record["experiment"])
    return experiment, Pipeline(workspace=ws, steps=[resubmitted])


def resubmit(args: argparse.Namespace, ws: Any, namespace: dict | None = None) -> Any:
    """Submit an earlier run's (single) step again, with the given options changed."""
    experiment, pipeline = resubmitted_pipeline(args, ws, namespace)
    return experiment.submit(pipeline)


def execute(
    args: argparse.Namespace,
    namespace: dict | None = None,
    out: Callable[[str], None] = print,
    prog: str = "parallelrun",
) -> Any:
    """Carry out a parsed command; returns the run for submit/resubmit, else None.

    ``prog`` spells the command in the hints printed (``%parallelrun`` in a notebook).
    """
    from .run import Run

    ws = _workspace(args)
    run_id = getattr(args, "run_id", None)
    if run_id and run_id.startswith("$"):  # a run, or its id, held in a notebook variable
        if namespace is None or run_id[1:] not in namespace:
            raise UsageError(f"{args.verb} {run_id}: no variable {run_id[1:]!r} in the notebook")
        value = namespace[run_id[1:]]
        args.run_id = getattr(value, "id", str(value))
    if args.verb in ("submit", "resubmit"):
        run = (submit if args.verb == "submit" else resubmit)(args, ws, namespace)
        out(f"submitted run {run.id}")
        if args.wait:
            follow(run, prog=prog)
        return run
    if args.verb == "runs":
        out(runs_table(ws, args.experiment, args.limit))
    elif args.verb == "show":
        out(summary_text(Run.get(ws, args.run_id).get_state()))
    elif args.verb == "logs":
        out(logs_text(ws, args.run_id, args.process))
    elif args.verb == "resume":
        run = Run.get(ws, args.run_id)
        if not hasattr(run, "resume"):
            raise UsageError(
                f"resume {args.run_id}: that is a step run; give its pipeline run's id"
            )
        run.resume()
        out(f"resumed run {args.run_id}")
    elif args.verb == "cancel":
        run = Run.get(ws, args.run_id)
        status = run.get_state()["status"]  # a run whose runner died reads Failed here
        if status in FINAL_STATUSES:
            out(f"run {args.run_id} already finished: {status}; nothing to cancel")
        else:
            run.cancel()
            out(f"cancel requested for run {args.run_id} ({status})")
    return None


def main(argv: list[str] | None = None) -> int:
    """``parallelrun``: exits 0 when the command (and a waited-for run) succeeded."""
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        run = execute(args)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, SyntaxError, KeyError) as error:
        print(f"parallelrun: {error}", file=sys.stderr)
        return 2
    if run is not None and args.wait and run.get_status() != "Completed":
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
