"""The argument parser the ``parallelrun`` command line and the ``%parallelrun`` magics share.

One parser, so a flag, its help text and its default read the same in a terminal and in a
notebook; ``notebook=True`` adds what only a notebook has (``-o NAME``, ``$name`` inputs).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from typing import Any

from .settings import Settings

VERBS = ("submit", "runs", "show", "logs", "cancel", "resume", "resubmit")
_DEFAULT = Settings()

#: ParallelRunConfig options, as flags: (flag, keyword, type, help). Left out, a flag takes
#: ParallelRunConfig's default on submit and the earlier run's value on resubmit. A value is
#: taken as text and read by the setting's own grammar (``settings.from_text``), so a wrong
#: one is refused with the message ParallelRunConfig gives, not argparse's own.
CONFIG_FLAGS = (
    (
        "--mini-batch-size",
        "mini_batch_size",
        str,
        "files per mini-batch, or bytes per mini-batch of a table: 1024, 100KB, 10MB, 1GB "
        "(default: 10 files; 1MB of a table)",
    ),
    (
        "--error-threshold",
        "error_threshold",
        str,
        "failed input items tolerated over the whole run; -1 tolerates any "
        f"(default: {_DEFAULT.error_threshold})",
    ),
    (
        "--allowed-failed-count",
        "allowed_failed_count",
        str,
        "failed mini-batches tolerated (default: no limit)",
    ),
    (
        "--allowed-failed-percent",
        "allowed_failed_percent",
        str,
        "failed mini-batches tolerated, in percent of all (default: no limit)",
    ),
    (
        "--output-action",
        "output_action",
        str,
        "append_row (run()'s rows go to one file) or summary_only "
        f"(default: {_DEFAULT.output_action})",
    ),
    (
        "--append-row-file-name",
        "append_row_file_name",
        str,
        f"the append_row file's name (default: {_DEFAULT.append_row_file_name})",
    ),
    (
        "--node-count",
        "node_count",
        str,
        f"nodes of the compute target (default: {_DEFAULT.node_count})",
    ),
    (
        "--process-count-per-node",
        "process_count_per_node",
        str,
        f"worker processes per node (default: {_DEFAULT.process_count_per_node})",
    ),
    (
        "--run-invocation-timeout",
        "run_invocation_timeout",
        str,
        "seconds one run() call may take before its try fails "
        f"(default: {_DEFAULT.run_invocation_timeout})",
    ),
    (
        "--run-max-try",
        "run_max_try",
        str,
        f"tries of one mini-batch (default: {_DEFAULT.run_max_try})",
    ),
    (
        "--logging-level",
        "logging_level",
        str,
        f"the workers' log level: WARNING, INFO or DEBUG (default: {_DEFAULT.logging_level})",
    ),
    (
        "--heartbeat-timeout",
        "heartbeat_timeout",
        str,
        "seconds a worker process may stay silent outside run() before it is replaced "
        f"(default: {_DEFAULT.heartbeat_timeout})",
    ),
    (
        "--progress-update-timeout",
        "progress_update_timeout",
        str,
        "seconds without a finished mini-batch that mean a stuck job (default: no limit)",
    ),
    (
        "--first-task-creation-timeout",
        "first_task_creation_timeout",
        str,
        "seconds for a first worker to finish init() before the step fails "
        f"(default: {_DEFAULT.first_task_creation_timeout})",
    ),
    (
        "--task-overhead-timeout",
        "task_overhead_timeout",
        str,
        "seconds added to each run() call's limit for loading its input (default: none)",
    ),
    (
        "--resource-monitor-interval",
        "resource_monitor_interval",
        str,
        "seconds between CPU and memory samples of each process; 0 turns them off "
        f"(default: {_DEFAULT.resource_monitor_interval})",
    ),
    (
        "--compute",
        "compute_target",
        str,
        "a registered compute target's name, e.g. a DaskCompute (default: this machine)",
    ),
    (
        "--preserve-order",
        "preserve_order",
        bool,
        "append_row rows in the order of the input (default: the order mini-batches finish)",
    ),
)


class UsageError(Exception):
    """A mistake in the command: shown as one line, never as a traceback."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> None:
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)


def _add_submit_options(
    parser: argparse.ArgumentParser, *, overrides: bool = False, notebook: bool = False
) -> None:
    kept = " (default: the earlier run's)" if overrides else ""
    for flag, dest, kind, text in CONFIG_FLAGS:
        if overrides:
            text = text.rsplit(" (default:", 1)[0] + kept
        if kind is bool:  # --flag / --no-flag; left out, a resubmission keeps the run's value
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, help=text)
        else:
            parser.add_argument(flag, dest=dest, type=kind, default=None, help=text)
    parser.add_argument(
        "--partition-keys",
        default=None,
        help="comma-separated key columns of a table: one mini-batch per key value"
        + (kept or " (default: none)"),
    )
    parser.add_argument(
        "--env",
        dest="environment_variables",
        metavar="NAME=VALUE",
        action="append",
        default=None,
        help="an environment variable for every worker process, repeatable"
        + (
            " (default: the earlier run's; a NAME given here replaces its value there)"
            if overrides
            else " (default: none)"
        ),
    )
    parser.add_argument(
        "--arg",
        dest="arguments",
        action="append",
        default=None,
        help="an argument for the script's argv, repeatable" + (kept or " (default: none)"),
    )
    if overrides:
        parser.add_argument("--input", default=None, help="a new input for the step" + kept)
    parser.add_argument(
        "--experiment",
        default=None,
        help="the experiment to file the run under" + (kept or " (default: the step's name)"),
    )
    parser.add_argument(
        "--name",
        default=None,
        help="the step's name, 3-32 characters of a-z, 0-9 and -"
        + (
            kept
            or " (default: from the script's file name"
            + ("; a cell's first function other than init, run and shutdown" if notebook else "")
            + ")"
        ),
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="block until the run ends, showing its progress, failures and retries as they "
        "happen; exit 1 if it does not complete (default: return at once)",
    )
    parser.add_argument(
        "--no-reuse",
        action="store_true",
        help="run even if an unchanged earlier run could be reused"
        + (
            " (default: as the earlier run allowed reuse or not)"
            if overrides
            else " (default: reuse)"
        ),
    )
    if notebook:
        parser.add_argument(
            "-o",
            "--out",
            metavar="NAME",
            default=None,
            help="keep the run in the notebook variable NAME; unset if the submission fails "
            "(default: only the cell's value)",
        )


def build_parser(prog: str = "parallelrun", notebook: bool = False) -> argparse.ArgumentParser:
    """The parser of the command line and (with ``notebook``) of the ``%parallelrun`` magics."""
    parser = _Parser(
        prog=prog,
        description="Batch inference with init()/run(mini_batch) "
        "entry scripts, Azure ParallelRunStep-style, on this machine.",
        epilog="A first word that is not a verb means submit: "
        f"{prog} score.py --input 'data/*.png'. Each verb has its own --help.",
    )
    parser.add_argument(
        "--workspace",
        default=None,
        help="folder of the workspace's config.json (default: found from the current folder)",
    )
    verbs = parser.add_subparsers(dest="verb", parser_class=_Parser, metavar="VERB")

    def verb(name: str, text: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")

    submit = verb("submit", "run an entry script (init() and run(mini_batch)) over an input")
    submit.add_argument(
        "script",
        nargs="?",
        help="the entry script" + (" (the cell's body in %%%%parallelrun)" if notebook else ""),
    )
    submit.add_argument(
        "--input",
        required=True,
        help="a path or glob, or a registered dataset's name"
        + (", or $name of a Dataset, a DataFrame or a list of paths" if notebook else "")
        + " (required)",
    )
    submit.add_argument(
        "--tabular",
        action="store_true",
        help="read the input files as a table: CSV, Parquet or JSON lines (default: files)",
    )
    submit.add_argument(
        "--source-directory",
        default=None,
        help="folder with the script and what it imports, snapshotted with the run "
        "(default: the script's folder)",
    )
    submit.add_argument(
        "--side-input",
        action="append",
        default=[],
        dest="side_inputs",
        help="an input given whole to every worker, repeatable (default: none)",
    )
    _add_submit_options(submit, notebook=notebook)
    runs = verb("runs", "list recent runs")
    runs.add_argument(
        "--experiment", default=None, help="only this experiment's runs (default: all)"
    )
    runs.add_argument("--limit", type=int, default=20, help="runs to list (default: 20)")
    run_id = "the run's id" + (", or $name of a variable holding the run" if notebook else "")
    for name, text in (
        ("show", "a run's status and counts"),
        ("cancel", "stop a run; what it already wrote stays"),
        ("resume", "carry on a failed or canceled run without redoing finished mini-batches"),
    ):
        verb(name, text).add_argument("run_id", help=run_id)
    logs = verb("logs", "a run's result and error summary, or one worker's log")
    logs.add_argument("run_id", help=run_id)
    logs.add_argument(
        "--process",
        default=None,
        help="one worker process's log, e.g. process000 (default: the summaries)",
    )
    resubmit = verb(
        "resubmit",
        "run an earlier run's step again from its snapshot, with options changed; all else "
        "(settings, environment, input, side inputs, arguments, output) as that run had it",
    )
    resubmit.add_argument("run_id", help=run_id)
    _add_submit_options(resubmit, overrides=True, notebook=notebook)
    return parser


def step_name(text: str) -> str:
    """A valid step name (3-32 characters of a-z, 0-9 and -) made from a script or function name.

    >>> step_name("Score_Digits.v2")
    'score-digits-v2'
    """
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    words = re.sub(r"^[^a-z]+", "", words)[:32].rstrip("-")
    return words.ljust(3, "x") if words else "step"


def environment_variables(words: list[str], flag: str = "--env") -> dict[str, str]:
    """The variables that ``--env NAME=VALUE`` words give (a later NAME wins), for
    ParallelRunConfig's ``environment_variables``, whose parser checks them further.

    >>> environment_variables(["MODE=fast", "QUERY=a=b", "MODE=slow"])
    {'MODE': 'slow', 'QUERY': 'a=b'}
    """
    variables = {}
    for word in words:
        name, equals, value = word.partition("=")
        if not (name and equals):
            raise ValueError(
                f"{flag} must be NAME=VALUE, with a NAME that is not empty (VALUE may be); "
                f"got {word!r}"
            )
        variables[name] = value
    return variables


def parse(
    argv: list[str] | str, prog: str = "parallelrun", notebook: bool = False
) -> argparse.Namespace:
    """Parse a command; ``submit`` is the verb when the first word is not a verb."""
    words = shlex.split(argv) if isinstance(argv, str) else list(argv)
    start = 0
    while start < len(words) and words[start] == "--workspace":
        start += 2
    # "score.py --input x" and "-o run score.py --input x" both mean submit
    if start < len(words) and words[start] not in (*VERBS, "-h", "--help"):
        words.insert(start, "submit")
    if start >= len(words) or words[start] in ("-h", "--help"):
        words = words if start < len(words) else [*words, "runs"]
    return build_parser(prog, notebook).parse_args(words)
