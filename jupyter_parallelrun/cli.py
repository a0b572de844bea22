"""The ``parallelrun`` command line, and the argument parser the ``%parallelrun`` magic shares.

Verbs: ``submit`` (the default: a script on an input, with ParallelRunConfig's options as
flags), ``runs``, ``show``, ``logs``, ``cancel``, ``resume``, ``resubmit``. Each one calls the
same Python API a notebook would.
"""

from __future__ import annotations

import argparse
import glob
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .progress import summary_text

VERBS = ("submit", "runs", "show", "logs", "cancel", "resume", "resubmit")

#: ParallelRunConfig options, as flags: (flag, keyword, type).
CONFIG_FLAGS = (
    ("--mini-batch-size", "mini_batch_size", str),
    ("--error-threshold", "error_threshold", int),
    ("--allowed-failed-count", "allowed_failed_count", int),
    ("--allowed-failed-percent", "allowed_failed_percent", float),
    ("--output-action", "output_action", str),
    ("--append-row-file-name", "append_row_file_name", str),
    ("--node-count", "node_count", int),
    ("--process-count-per-node", "process_count_per_node", int),
    ("--run-invocation-timeout", "run_invocation_timeout", float),
    ("--run-max-try", "run_max_try", int),
    ("--logging-level", "logging_level", str),
    ("--compute", "compute_target", str),
    ("--preserve-order", "preserve_order", bool),
)


class UsageError(Exception):
    """A mistake in the command: shown as one line, never as a traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> None:
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)


def _add_submit_options(parser: argparse.ArgumentParser, *, overrides: bool = False) -> None:
    for flag, dest, kind in CONFIG_FLAGS:
        if kind is bool:  # --flag / --no-flag; left out, a resubmission keeps the run's value
            parser.add_argument(
                flag,
                dest=dest,
                action=argparse.BooleanOptionalAction,
                help="append_row rows in the order of the input",
            )
        else:
            parser.add_argument(flag, dest=dest, type=kind, default=None)
    parser.add_argument(
        "--partition-keys", default=None, help="comma-separated key columns (tabular input)"
    )
    parser.add_argument(
        "--arg",
        dest="arguments",
        action="append",
        default=None,
        help="an argument for the script's argv (repeatable)",
    )
    if overrides:
        parser.add_argument("--input", default=None, help="a new input for the step")
    parser.add_argument("--experiment", default=None)
    parser.add_argument("--name", default=None, help="the step name (default: from the script)")
    parser.add_argument("--wait", action="store_true", help="block until the run ends")
    parser.add_argument("--no-reuse", action="store_true", help="never reuse an earlier result")


def build_parser(prog: str = "parallelrun") -> argparse.ArgumentParser:
    """The parser of the command line and of the ``%parallelrun`` magic."""
    parser = _Parser(
        prog=prog,
        description="Batch inference with init()/run(mini_batch) "
        "entry scripts, Azure ParallelRunStep-style, on this machine.",
    )
    parser.add_argument(
        "--workspace",
        default=None,
        help="folder of the workspace's config.json (default: found from cwd)",
    )
    verbs = parser.add_subparsers(dest="verb", parser_class=_Parser)
    submit = verbs.add_parser("submit", help="run an entry script over an input")
    submit.add_argument("script", nargs="?", help="the entry script (omitted in %%%%parallelrun)")
    submit.add_argument(
        "--input",
        required=True,
        help="a path or glob, a registered dataset's name, or $name in a notebook",
    )
    submit.add_argument("--tabular", action="store_true", help="read the files as a table")
    submit.add_argument("--source-directory", default=None)
    submit.add_argument("--side-input", action="append", default=[], dest="side_inputs")
    _add_submit_options(submit)
    runs = verbs.add_parser("runs", help="list recent runs")
    runs.add_argument("--experiment", default=None)
    runs.add_argument("--limit", type=int, default=20)
    for verb, text in (
        ("show", "a run's status and counts"),
        ("cancel", "stop a run"),
        ("resume", "carry on a failed or canceled run without redoing finished mini-batches"),
    ):
        verbs.add_parser(verb, help=text).add_argument("run_id")
    logs = verbs.add_parser("logs", help="a run's logs")
    logs.add_argument("run_id")
    logs.add_argument("--process", default=None, help="one worker's log, e.g. process000")
    resubmit = verbs.add_parser("resubmit", help="run an earlier run's step again")
    resubmit.add_argument("run_id")
    _add_submit_options(resubmit, overrides=True)
    return parser


def parse(argv: list[str] | str, prog: str = "parallelrun") -> argparse.Namespace:
    """Parse a command; ``submit`` is the verb when the first word is not a verb."""
    words = shlex.split(argv) if isinstance(argv, str) else list(argv)
    start = 0
    while start < len(words) and words[start] == "--workspace":
        start += 2
    if start < len(words) and words[start] not in VERBS and not words[start].startswith("-"):
        words.insert(start, "submit")
    if start >= len(words) or words[start] in ("-h", "--help"):
        words = words if start < len(words) else [*words, "runs"]
    return build_parser(prog).parse_args(words)


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
    """The ParallelRunConfig keywords given as flags."""
    options = {dest: getattr(args, dest) for _, dest, _ in CONFIG_FLAGS}
    options = {k: v for k, v in options.items() if v is not None}
    if args.partition_keys:
        options["partition_keys"] = [k.strip() for k in args.partition_keys.split(",")]
    return options


def submit(args: argparse.Namespace, ws: Any, namespace: dict | None = None) -> Any:
    """Submit a one-step pipeline from parsed ``submit`` arguments; returns the PipelineRun."""
    from .config import ParallelRunConfig
    from .pipeline import ParallelRunStep, Pipeline, PipelineData
    from .run import Experiment

    if not args.script:
        raise UsageError("submit: the entry script is missing")
    script = Path(args.script)
    source = args.source_directory or str(script.parent.resolve())
    entry = str(script.relative_to(source)) if args.source_directory else script.name
    name = args.name or script.stem.lower().replace("_", "-")[:32].ljust(3, "x")
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
    experiment = Experiment(ws, args.experiment or name)
    return experiment.submit(Pipeline(workspace=ws, steps=[step]))


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
                parts.append(f"== {step.name}: {name} ==\n{path.read_text().rstrip()}")
            elif process:
                known = sorted(p.stem for p in (folder / "workers").glob("*.txt"))
                raise UsageError(f"--process {process}: no such process; processes: {known}")
    return "\n".join(parts) or f"run {run_id} has no logs yet"


def resubmit(args: argparse.Namespace, ws: Any, namespace: dict | None = None) -> Any:
    """Submit an earlier run's (single) step again, with the given options changed."""
    from .run import Run

    record = ws.store.get_run(Run.get(ws, args.run_id).id)
    if record["kind"] != "pipeline" or len(record["spec"]["steps"]) != 1:
        raise UsageError(f"resubmit {args.run_id}: only runs of one step can be resubmitted")
    step = record["spec"]["steps"][0]
    config = step["config"]
    if args.input is None and "dataset" not in step["input"]:
        raise UsageError(f"resubmit {args.run_id}: give --input (its input came from a step)")
    rebuilt = argparse.Namespace(
        script=str(Path(step["snapshot"]) / config["entry_script"]),
        source_directory=step["snapshot"],
        input=args.input,
        tabular=False,
        side_inputs=[],
        arguments=args.arguments if args.arguments is not None else step["arguments"],
        experiment=args.experiment or record["experiment"],
        name=args.name or step["name"],
        no_reuse=args.no_reuse,
        partition_keys=args.partition_keys,
    )
    for _, dest, _ in CONFIG_FLAGS:
        value = getattr(args, dest)
        setattr(rebuilt, dest, value if value is not None else config.get(dest))
    if not args.partition_keys and config.get("partition_keys"):
        rebuilt.partition_keys = ",".join(config["partition_keys"])
    if args.input is None:
        from .dataset import Dataset

        dataset = Dataset.from_spec(step["input"]["dataset"], ws)
        namespace = {**(namespace or {}), "__resubmitted_input": dataset}
        rebuilt.input = "$__resubmitted_input"
    return submit(rebuilt, ws, namespace)


def execute(
    args: argparse.Namespace, namespace: dict | None = None, out: Callable[[str], None] = print
) -> Any:
    """Carry out a parsed command; returns the run for submit/resubmit, else None."""
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
            run.wait_for_completion(show_output=True, raise_on_error=False)
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
        Run.get(ws, args.run_id).cancel()
        out(f"cancel requested for run {args.run_id}")
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
