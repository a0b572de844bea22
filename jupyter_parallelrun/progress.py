"""The numbers of a run, read from the run store, and their text rendering.

``run_state`` is the one summary every view uses: ``wait_for_completion(show_output=True)``,
the command line, and the RunDetails widget (which renders the same numbers as HTML).
"""

from __future__ import annotations

import time
from typing import Any

from .store import FINAL_STATUSES, RunStore


def _step_numbers(run: dict[str, Any], store: RunStore) -> dict[str, Any]:
    workers = store.workers(run["id"])
    started, ended = run["started"], run["ended"]
    elapsed = ((ended or time.time()) - started) if started else 0.0
    done_items = run["items_done"] + run["items_failed"]
    mb_finished = run["mb_done"] + run["mb_failed"]
    throughput = done_items / elapsed if elapsed > 0 and not run["reused_from"] else 0.0
    eta = None
    if run["status"] == "Running" and run["mb_total"] and mb_finished and elapsed > 0:
        eta = elapsed * (run["mb_total"] - mb_finished) / mb_finished
    return {
        "id": run["id"],
        "name": run["name"],
        "status": run["status"],
        "error": run["error"],
        "reused_from": run["reused_from"],
        "elapsed": elapsed,
        "items_total": run["items_total"],
        "items_done": run["items_done"],
        "items_failed": run["items_failed"],
        "mb_total": run["mb_total"],
        "mb_done": run["mb_done"],
        "mb_failed": run["mb_failed"],
        "retries": run["retries"],
        # preserve_order: finished, but not written until the mini-batches before them are
        "mb_held": run["mb_held"] if run["status"] == "Running" else 0,
        "throughput": throughput,
        "eta": eta,
        "nodes": len({w["node_id"] for w in workers}),
        "hosts": sorted({w["host"] for w in workers if w.get("host")}),
        "processes": len(workers),
        "workers": workers,
    }


def run_state(store: RunStore, run_id: str) -> dict[str, Any]:
    """Status, timing and counters of a run and of each of its steps."""
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(f"run_id={run_id!r}: no such run in this workspace")
    if run["kind"] == "step":
        steps = [_step_numbers(run, store)]
    else:
        steps = [_step_numbers(step, store) for step in store.list_runs(parent_id=run_id)]
    started = run["started"] or run["created"]
    return {
        "id": run["id"],
        "experiment": run["experiment"],
        "kind": run["kind"],
        "status": run["status"],
        "error": run["error"],
        "final": run["status"] in FINAL_STATUSES,
        "elapsed": ((run["ended"] or time.time()) - started) if run["started"] else 0.0,
        "steps": steps,
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def progress_line(step: dict[str, Any]) -> str:
    """One line: ``predict-digits Running  12/30 mini-batches (1 failed) 1200 items ...``."""
    total = step["mb_total"] if step["mb_total"] is not None else "?"
    finished = step["mb_done"] + step["mb_failed"]
    line = f"{step['name']}: {step['status']} {finished}/{total} mini-batches"
    if step["mb_failed"]:
        line += f" ({step['mb_failed']} failed)"
    if step["mb_held"]:
        line += f" + {step['mb_held']} finished, waiting for earlier ones (preserve_order)"
    line += f", {step['items_done']} items done"
    if step["items_failed"]:
        line += f", {step['items_failed']} failed"
    line += f", {step['throughput']:.1f} items/s, {_duration(step['elapsed'])} elapsed"
    if step["eta"] is not None:
        line += f", ETA {_duration(step['eta'])}"
    return line


def summary_text(state: dict[str, Any]) -> str:
    """A few lines for the end of a run (or a snapshot of a running one)."""
    lines = [
        f"Run {state['id']} ({state['experiment']}): {state['status']}"
        f" after {_duration(state['elapsed'])}"
    ]
    if state["error"]:
        lines.append(f"  error: {state['error']}")
    for step in state["steps"]:
        lines.append("  " + progress_line(step))
        hosts = f" on {', '.join(step['hosts'])}" if step.get("hosts") else ""
        lines.append(
            f"    {step['nodes']} node(s){hosts}, {step['processes']} process(es), "
            f"{step['retries']} retries"
            + (f"; reused step run {step['reused_from']}" if step["reused_from"] else "")
        )
        if step["error"] and step["error"] != state["error"]:
            lines.append(f"    error: {step['error']}")
    return "\n".join(lines)
