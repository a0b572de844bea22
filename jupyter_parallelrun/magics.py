"""``%parallelrun`` and ``%%parallelrun``: the command line's verbs inside a notebook.

The magics parse with the command line's own parser and call the same functions. Their value
is the run, and displaying a run shows its RunDetails widget, so a cell shows one view of a
run whichever way it is written:

- ``%parallelrun score.py --input "data/*.png"`` (or ``%%parallelrun``) as a cell's last line:
  the run is the cell's value, shown as its widget;
- ``run = %parallelrun score.py ...`` then ``RunDetails(run).show()``: only ``show()`` displays;
- ``%%parallelrun -o run --input ...``: the run is kept in ``run`` (and shown as the value).

A command that fails raises an error (the cell fails, and *Run All* stops there), so ``_`` and
``-o NAME`` never silently hold an earlier run: ``NAME`` is unset when the submission fails.

Usage::

    %parallelrun [submit] SCRIPT --input INPUT [-o NAME] [--tabular] [--mini-batch-size N]
                 [--error-threshold N] [--allowed-failed-count N] [--allowed-failed-percent P]
                 [--output-action append_row|summary_only] [--append-row-file-name NAME]
                 [--node-count N] [--process-count-per-node N] [--run-invocation-timeout S]
                 [--run-max-try N] [--logging-level LEVEL] [--heartbeat-timeout S]
                 [--progress-update-timeout S] [--first-task-creation-timeout S]
                 [--task-overhead-timeout S] [--resource-monitor-interval S] [--compute NAME]
                 [--partition-keys A,B] [--preserve-order] [--env NAME=VALUE ...]
                 [--side-input INPUT] [--arg VALUE ...] [--source-directory DIR]
                 [--experiment NAME] [--name STEP] [--wait] [--no-reuse]
    %parallelrun runs [--experiment NAME] [--limit N]
    %parallelrun show RUN_ID
    %parallelrun logs RUN_ID [--process NAME]
    %parallelrun cancel RUN_ID
    %parallelrun resume RUN_ID
    %parallelrun resubmit RUN_ID [-o NAME] [options to change] [--input INPUT]
    %%parallelrun --input INPUT [-o NAME] [options]      (the cell body is the entry script)

Every argument gets IPython's variable expansion: ``{expression}`` and ``$name`` are replaced by
their value's text (``$$`` is a literal ``$``). A ``$name`` or ``{name}`` that holds an object
rather than text is passed as that object: ``--input $paths`` takes a Dataset, a DataFrame or a
list of paths, and a run id may be given as a variable holding the run.

INPUT is a path or glob, a registered dataset's name, or such a notebook variable. A cell's step
is named after ``--name``, else the cell's first function or class other than ``init``, ``run``
and ``shutdown`` (``def score_digits`` names it ``score-digits``), else ``cell-`` and the start of
the cell's hash.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shlex
from typing import Any

from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.utils.text import DollarFormatter

from .cli import execute
from .command_line import UsageError, parse, step_name

#: The entry points of an entry script: a cell's name comes from its other definitions.
ENTRY_POINTS = frozenset({"init", "run", "shutdown"})
_REFERENCE = re.compile(r"(?<!\$)\$(\w+)|\{(\w+)\}")


def protect_objects(line: str, namespace: dict[str, Any]) -> str:
    """Mark ``$name`` and ``{name}`` references to objects so that expansion keeps them whole.

    A variable that holds text or a number is expanded as text, like everywhere in IPython; one
    that holds an object (a Dataset, a list of paths, a run) becomes ``$$name``, which IPython's
    expansion turns into ``$name`` for the command to look up.
    """

    def mark(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in namespace:
            return match.group(0)
        value = namespace[name]
        if isinstance(value, str | int | float | os.PathLike):
            return match.group(0)
        return f"$${name}"

    return _REFERENCE.sub(mark, line)


def expand(line: str, namespace: dict[str, Any]) -> str:
    """IPython's ``{expression}`` and ``$name`` expansion, object references kept whole.

    As in IPython, a reference that cannot be expanded (an unknown name, an expression that
    raises) leaves the line as it was, so the command names what it could not find.
    """
    try:
        return DollarFormatter().vformat(protect_objects(line, namespace), [], namespace)
    except Exception:  # noqa: BLE001 - IPython's own rule: an expansion that fails is skipped
        return line


def cell_step_name(text: str) -> str | None:
    """The step name a cell's own definitions suggest, or None when it has none to offer."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None  # submit() reports the syntax error with its line
    for node in tree.body:
        is_definition = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        if is_definition and node.name not in ENTRY_POINTS:
            return step_name(node.name)
    return None


@magics_class
class ParallelRunMagics(Magics):
    """The ``%parallelrun`` line and cell magics."""

    def _run(self, line: str, script_text: str | None = None) -> Any:
        namespace = self.shell.user_ns
        line = expand(line, namespace)
        out_name = None
        try:
            if script_text is not None:
                # The cell form only submits; the cell body is the script.
                args = parse(["submit", *shlex.split(line)], prog="%%parallelrun", notebook=True)
                args.script = self._save_cell(args, script_text)
            else:
                args = parse(line, prog="%parallelrun", notebook=True)
            out_name = getattr(args, "out", None)
            if out_name is not None:
                namespace.pop(out_name, None)  # never an earlier run, should this one fail
            run = execute(args, namespace=namespace, prog="%parallelrun")
        except UsageError as error:
            raise IPythonUsageError(_unset(str(error), out_name)) from None
        except (ValueError, TypeError, OSError, SyntaxError, KeyError) as error:
            raise IPythonUsageError(_unset(f"%parallelrun: {error}", out_name)) from None
        except SystemExit as stop:  # --help printed its text; any other exit is a failure
            if stop.code:
                raise IPythonUsageError(_unset("%parallelrun: stopped", out_name)) from None
            return None
        if out_name is not None and run is not None:
            namespace[out_name] = run
        return run

    def _save_cell(self, args: Any, text: str) -> str:
        from .workspace import Workspace

        ws = Workspace.from_config(args.workspace)
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        folder = ws.path / "cells" / digest
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / "cell_entry_script.py"
        script.write_text(text)
        if args.name is None:
            args.name = cell_step_name(text) or f"cell-{digest[:8]}"
        return str(script)

    @no_var_expand
    @line_magic
    def parallelrun(self, line: str) -> Any:
        return self._run(line)

    @no_var_expand
    @cell_magic("parallelrun")
    def parallelrun_cell(self, line: str, cell: str) -> Any:
        return self._run(line, script_text=cell)


def _unset(message: str, out_name: str | None) -> str:
    return message if out_name is None else f"{message} ({out_name} is not set)"


ParallelRunMagics.parallelrun.__doc__ = __doc__
ParallelRunMagics.parallelrun_cell.__doc__ = __doc__
