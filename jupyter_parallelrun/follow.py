"""Following a run as text: what ``--wait`` prints in a terminal, a log file or a notebook.

One live line per run (rewritten in place on a terminal or in a notebook, printed again when it
changes elsewhere, so CI logs stay readable), a line for every failed try as soon as the store
has it, the summary at the end and, when anything failed, the ``parallelrun logs`` command that
shows why. It reads what the one read-only ``RunWatcher`` reads.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from .progress import RunWatcher, progress_line, summary_text

POLL_SECONDS = 0.25
#: Off a terminal, the live line is printed again at most this often (and on every failure).
PLAIN_LINE_SECONDS = 2.0
#: Failed tries read per poll; a burst beyond it is counted, not listed.
ERRORS_PER_POLL = 20
ERROR_TEXT_CHARS = 200


def _in_place(out: TextIO) -> bool:
    """Whether ``\\r`` rewrites the line: a terminal, or a Jupyter kernel's output stream."""
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty()) or type(out).__module__.startswith("ipykernel")


def _max_try(store: Any, step_id: str) -> int | None:
    value = ((store.get_run(step_id) or {}).get("spec") or {}).get("config", {}).get("run_max_try")
    return value if isinstance(value, int) else None


def error_line(step_name: str, error: dict[str, Any], max_try: int | None) -> str:
    """``predict-digits: mini-batch 4, try 1 of 3 failed on process001: ValueError: ...``."""
    text = (error["exception"] or "").strip().splitlines()
    text = text[0] if text else "no error text"
    if len(text) > ERROR_TEXT_CHARS:
        text = text[:ERROR_TEXT_CHARS] + "…"
    if error["mb_id"] is None:
        where = "init()"
    else:
        tries = f"try {error['try']}" + (f" of {max_try}" if max_try else "")
        where = f"mini-batch {error['mb_id']}, {tries}"
    then = ""
    if error["mb_id"] is not None and max_try:
        then = " (will retry)" if error["try"] < max_try else " (no tries left)"
    return f"{step_name}: {where} failed on {error['worker']}: {text}{then}"


def logs_hint(
    state: dict[str, Any], failed_workers: set[str], prog: str = "parallelrun"
) -> str | None:
    """The command that shows why a run failed, or None when nothing failed."""
    failed = any(s["items_failed"] or s["retries"] or s["mb_failed"] for s in state["steps"])
    if state["status"] == "Completed" and not failed and not failed_workers:
        return None
    hint = f"read the logs:       {prog} logs {state['id']}"
    if failed_workers:
        worker = sorted(failed_workers)[0]
        hint += f"\na worker's own log:  {prog} logs {state['id']} --process {worker}"
    return hint


class Follower:
    """Prints a run's progress, failures and retries while it runs; see :func:`follow`."""

    def __init__(self, run: Any, out: TextIO, prog: str) -> None:
        self.run, self.out, self.prog = run, out, prog
        self.store = run.experiment.workspace.store
        self.watcher = RunWatcher(self.store, run.id)
        self.in_place = _in_place(out)
        self.line = ""
        self.line_printed = 0.0
        self.seen: dict[str, set] = {}
        self.newest: dict[str, float] = {}

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _print_above_line(self, text: str) -> None:
        # On a terminal the live line is cleared first, then drawn again below the message.
        if self.in_place and self.line:
            self._write("\r" + " " * len(self.line) + "\r")
        self._write(text + "\n")
        if self.in_place and self.line:
            self._write(self.line)

    def _new_errors(self, step: dict[str, Any]) -> None:
        seen = self.seen.setdefault(step["id"], set())
        newest = self.newest.get(step["id"], 0.0)
        rows = self.store.errors(step["id"], limit=ERRORS_PER_POLL)
        fresh = [
            r
            for r in rows
            if r["time"] >= newest and (r["mb_id"], r["try"], r["worker"], r["time"]) not in seen
        ]
        if not fresh:
            return
        max_try = _max_try(self.store, step["id"])
        if len(fresh) == ERRORS_PER_POLL and newest:
            self._print_above_line(f"{step['name']}: more failed tries than listed here")
        for row in sorted(fresh, key=lambda r: r["time"]):
            seen.add((row["mb_id"], row["try"], row["worker"], row["time"]))
            self._print_above_line(error_line(step["name"], row, max_try))
        self.newest[step["id"]] = max(r["time"] for r in fresh)

    def _live_line(self, state: dict[str, Any]) -> None:
        parts = []
        for step in state["steps"]:
            text = progress_line(step)
            if step["retries"]:
                text += f", {step['retries']} retries"
            starting = sum(w["state"] == "starting" for w in step["workers"])
            if starting:  # init() can take long (a model to load): say why nothing moves
                text += f", {starting} of {len(step['workers'])} processes starting"
            parts.append(text)
        line = " | ".join(parts)
        if line == self.line:
            return
        if self.in_place:
            self._write("\r" + line.ljust(len(self.line)))
            self.line = line
        elif time.monotonic() - self.line_printed >= PLAIN_LINE_SECONDS:
            self._write(line + "\n")
            self.line, self.line_printed = line, time.monotonic()

    def poll(self, state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Print what changed since the last poll; returns the run's state, read now unless
        the caller passes the ``state`` it has just read from this follower's ``watcher``."""
        state = state or self.watcher.state()
        for step in state["steps"]:
            before = self.newest.get(step["id"])
            self._new_errors(step)
            if before != self.newest.get(step["id"]):
                self.line_printed = 0.0  # off a terminal, show the counts right after a failure
        if not state["final"]:
            self._live_line(state)
        return state

    def finish(self, state: dict[str, Any]) -> None:
        end = "\n" if self.in_place and self.line else ""
        self._write(end + summary_text(state) + "\n")
        workers = {key[2] for seen in self.seen.values() for key in seen if key[2]}
        hint = logs_hint(state, workers, self.prog)
        if hint:
            self._write(hint + "\n")


def follow(run: Any, out: TextIO | None = None, prog: str = "parallelrun") -> str:
    """Print a run's live progress line and each failed try until the run ends.

    Parameters
    ----------
    run : Run
        The run to follow (a PipelineRun or a StepRun).
    out : file-like, optional
        Where to print; ``sys.stdout`` when None.
    prog : str, default "parallelrun"
        How the ``logs`` command is spelled in the hint (``%parallelrun`` in a notebook).

    Returns
    -------
    str
        The run's final status.
    """
    follower = Follower(run, out or sys.stdout, prog)
    while not (state := follower.poll())["final"]:
        time.sleep(POLL_SECONDS)
    if state["lost_runner"]:
        state = run.get_state()  # the watcher only reads: the run's API records the loss
    follower.finish(state)
    return state["status"]
