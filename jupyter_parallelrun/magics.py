"""``%parallelrun`` and ``%%parallelrun``: the command line's verbs inside a notebook.

The magics parse with the command line's own parser and call the same functions; the line
magic's value is the run, so ``run = %parallelrun score.py --input "data/*.png"`` works.
``%%parallelrun`` takes the cell body as the entry script and saves it with the run.

Usage::

    %parallelrun [submit] SCRIPT --input INPUT [--tabular] [--mini-batch-size N]
                 [--error-threshold N] [--allowed-failed-count N] [--allowed-failed-percent P]
                 [--output-action append_row|summary_only] [--append-row-file-name NAME]
                 [--node-count N] [--process-count-per-node N] [--run-invocation-timeout S]
                 [--run-max-try N] [--logging-level LEVEL] [--compute NAME]
                 [--partition-keys A,B] [--preserve-order]
                 [--side-input INPUT] [--arg VALUE ...] [--source-directory DIR]
                 [--experiment NAME] [--name STEP] [--wait] [--no-reuse]
    %parallelrun runs [--experiment NAME] [--limit N]
    %parallelrun show RUN_ID
    %parallelrun logs RUN_ID [--process NAME]
    %parallelrun cancel RUN_ID
    %parallelrun resume RUN_ID
    %parallelrun resubmit RUN_ID [options to change] [--input INPUT]
    %%parallelrun --input INPUT [options]      (the cell body is the entry script)

INPUT is a path or glob, a registered dataset's name, or ``$name`` for a Dataset, a DataFrame
or a list of paths in the notebook.
"""

from __future__ import annotations

import hashlib
import shlex
from typing import Any

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand

from .cli import UsageError, execute, parse


@magics_class
class ParallelRunMagics(Magics):
    """The ``%parallelrun`` line and cell magics."""

    def _run(self, line: str, script_text: str | None = None) -> Any:
        try:
            if script_text is not None:
                # The cell form only submits; the cell body is the script.
                args = parse(["submit", *shlex.split(line)], prog="%%parallelrun")
                args.script = self._save_cell(args, script_text)
            else:
                args = parse(line, prog="%parallelrun")
            run = execute(args, namespace=self.shell.user_ns)
        except UsageError as error:
            print(error)
            return None
        except (ValueError, TypeError, FileNotFoundError, SyntaxError, KeyError) as error:
            print(f"%parallelrun: {error}")
            return None
        except SystemExit:
            return None
        if run is not None and not args.wait:
            from IPython.display import display

            from .widget import RunDetails

            display(RunDetails(run))
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
            args.name = "cell-script"
        return str(script)

    @no_var_expand
    @line_magic
    def parallelrun(self, line: str) -> Any:
        return self._run(line)

    @no_var_expand
    @cell_magic("parallelrun")
    def parallelrun_cell(self, line: str, cell: str) -> Any:
        return self._run(line, script_text=cell)


ParallelRunMagics.parallelrun.__doc__ = __doc__
ParallelRunMagics.parallelrun_cell.__doc__ = __doc__
