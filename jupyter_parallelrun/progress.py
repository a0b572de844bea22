"""The one read-only watcher of a run, and the text rendering of what it sees.

``RunWatcher`` reads a run's numbers from the run store and nothing else; every view renders
what it returns (Dask's progress bar design: one source, several renderings):
``wait_for_completion(show_output=True)``, the command line, the RunDetails widget and the
text fallback of the widget. The watcher never writes: a run that no runner owns any more (its
lease in the store lapsed) is shown as ``Failed`` (``lost_runner``), and the API records it
(``Run.get_state``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .store import FINAL_STATUSES, RunStore
from .store_lease import lost_runner_error

#: The registry kind datastores are stored under (``datastore.py``'s ``KIND``).
DATASTORE_KIND = "datastore"
#: How the views colour a status: one tone per kind of outcome, so "Completed with failed
#: items" does not look like a clean "Completed".
TONES = {
    "NotStarted": "neutral",
    "Running": "running",
    "Completed": "ok",
    "Failed": "error",
    "Canceled": "canceled",
}


def _lost_runner(store: RunStore, run: dict[str, Any]) -> str | None:
    """The error to show when the pipeline run ``run`` is not final and no runner owns it.

    Ownership is the run's lease in the store (``RunStore.owner``), never a pid: a watcher on
    another host, in a container or in another PID namespace reads the same answer.
    """
    if run["status"] in FINAL_STATUSES:
        return None
    owner = store.owner(run["id"])
    if owner is not None and owner.live():
        return None
    if store.get_run(run["id"])["status"] in FINAL_STATUSES:  # it finished as we looked
        return None
    return lost_runner_error(owner)


def headline(step: dict[str, Any]) -> str:
    """The status as a sentence: ``Completed with 11 failed items``, ``Failed (lost runner)``."""
    status = step["status"]
    if step.get("lost_runner"):
        return "Failed (lost runner)"
    if step.get("reused_run"):
        return f"Reused the outputs of run {step['reused_run']}"
    if status == "Completed" and step.get("items_failed"):
        failed = step["items_failed"]
        return f"Completed with {failed} failed item{'s' if failed != 1 else ''}"
    if status == "Running" and step.get("cancel_requested"):
        return "Running (cancel requested)"
    return status


def tone(step: dict[str, Any]) -> str:
    """``ok``, ``warn``, ``error``, ``running``, ``canceled`` or ``neutral``."""
    if step["status"] == "Completed" and step.get("items_failed"):
        return "warn"
    return TONES.get(step["status"], "neutral")


def _step_numbers(run: dict[str, Any], store: RunStore, lost: str | None) -> dict[str, Any]:
    workers = store.workers(run["id"])
    status, error, ended = run["status"], run["error"], run["ended"]
    if lost and status not in FINAL_STATUSES:
        status, error = "Failed", lost
        ended = max([w["heartbeat"] or 0 for w in workers] + [run["started"] or 0]) or None
    started = run["started"]
    elapsed = ((ended or time.time()) - started) if started else 0.0
    reused_run = None
    if run["reused_from"]:
        earlier = store.get_run(run["reused_from"])
        reused_run = (earlier or {}).get("parent_id") or run["reused_from"]
    done_items = run["items_done"] + run["items_failed"]
    mb_finished = run["mb_done"] + run["mb_failed"]
    throughput = done_items / elapsed if elapsed > 0 and not run["reused_from"] else 0.0
    eta = None
    if status == "Running" and run["mb_total"] and mb_finished and elapsed > 0:
        eta = elapsed * (run["mb_total"] - mb_finished) / mb_finished
    step = {
        "id": run["id"],
        "name": run["name"],
        "status": status,
        "error": error,
        "lost_runner": bool(lost) and run["status"] not in FINAL_STATUSES,
        "cancel_requested": bool(run["cancel_requested"]),
        "reused_from": run["reused_from"],
        "reused_run": reused_run,
        "started": started,
        "ended": ended,
        "elapsed": elapsed,
        "items_total": run["items_total"],
        "items_done": run["items_done"],
        "items_failed": run["items_failed"],
        "mb_total": run["mb_total"],
        "mb_done": run["mb_done"],
        "mb_failed": run["mb_failed"],
        "retries": run["retries"],
        # preserve_order: finished, but not written until the mini-batches before them are
        "mb_held": run["mb_held"] if status == "Running" else 0,
        "throughput": throughput,
        "eta": eta,
        "nodes": len({w["node_id"] for w in workers}),
        "hosts": sorted({w["host"] for w in workers if w.get("host")}),
        "processes": len(workers),
        # A stopped run leaves no process busy: "mini-batch 7" on a canceled run is stale.
        "workers": [{**w, "current_mb": None} if status in FINAL_STATUSES else w for w in workers],
    }
    step["headline"], step["tone"] = headline(step), tone(step)
    return step


def run_state(store: RunStore, run_id: str) -> dict[str, Any]:
    """Status, timing and counters of a run and of each of its steps, read-only.

    A Running run whose runner process is gone reads as ``Failed`` with ``lost_runner`` set
    (and ``final``), although the store still says Running until the API records it.
    """
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(f"run_id={run_id!r}: no such run in this workspace")
    top = store.get_run(run["parent_id"]) if run["parent_id"] else run
    lost = _lost_runner(store, top) if top else None
    if run["kind"] == "step":
        steps = [_step_numbers(run, store, lost)]
    else:
        steps = [_step_numbers(step, store, lost) for step in store.list_runs(parent_id=run_id)]
    status, error, ended = run["status"], run["error"], run["ended"]
    if lost and status not in FINAL_STATUSES:
        status, error = "Failed", lost
        ended = max([s["ended"] or 0 for s in steps] + [run["started"] or 0]) or None
    started = run["started"] or run["created"]
    state = {
        "id": run["id"],
        "experiment": run["experiment"],
        "kind": run["kind"],
        "status": status,
        "error": error,
        "lost_runner": bool(lost) and run["status"] not in FINAL_STATUSES,
        "cancel_requested": bool(run["cancel_requested"]),
        "final": status in FINAL_STATUSES,
        "started": run["started"],
        "ended": ended,
        "elapsed": ((ended or time.time()) - started) if run["started"] else 0.0,
        "items_failed": sum(s["items_failed"] for s in steps),
        "reused_run": steps[0]["reused_run"]
        if steps and all(s["reused_run"] for s in steps)
        else None,
        "steps": steps,
    }
    state["headline"], state["tone"] = headline(state), tone(state)
    return state


class MiniBatchHistory:
    """The finished mini-batches of one step run, for charts of the run's whole life.

    Read incrementally (each :meth:`update` reads only the records written since the one
    before) and kept as arrays indexed by mini-batch id, so binning 100,000 of them takes
    milliseconds. Derived from the stored records only: every view of a run, live or
    finished, gets the same picture.
    """

    def __init__(self, store: RunStore, step_id: str) -> None:
        self.store, self.step_id, self.rowid = store, step_id, 0
        self.workers: list[str] = []
        self._index: dict[str, int] = {}
        self.worker = np.zeros(0, np.int32)
        self.started = np.zeros(0)
        self.ended = np.zeros(0)
        self.done = np.zeros(0, bool)
        self.items = np.zeros(0, np.int64)
        self.present = np.zeros(0, bool)

    def update(self) -> None:
        rows = self.store.finished_mini_batches_after(self.step_id, self.rowid)
        if not rows:
            return
        size = max(r[1] for r in rows) + 1
        if size > len(self.present):
            grow = max(size, 2 * len(self.present))
            for name in ("worker", "started", "ended", "done", "items", "present"):
                old = getattr(self, name)
                new = np.zeros(grow, old.dtype)
                new[: len(old)] = old
                setattr(self, name, new)
        for _rowid, mb_id, worker, started, ended, done, items in rows:
            if worker not in self._index:
                self._index[worker] = len(self.workers)
                self.workers.append(worker)
            self.worker[mb_id] = self._index[worker]
            self.started[mb_id], self.ended[mb_id] = started or ended, ended
            self.done[mb_id], self.items[mb_id], self.present[mb_id] = bool(done), items, True
        self.rowid = rows[-1][0]

    def lanes(self, t0: float, span: float, bins: int) -> dict[str, dict[str, Any]]:
        """Per worker: its mini-batches' count and ``[start, end, done, failed]`` blocks (times
        from ``t0``), one block per ``span / bins`` seconds in which some of them started."""
        keep = self.present
        lanes: dict[str, dict[str, Any]] = {w: {"count": 0, "blocks": []} for w in self.workers}
        if not keep.any():
            return lanes
        width = max(span, 1e-6) / bins
        slot = np.clip(((self.started[keep] - t0) / width).astype(np.int64), 0, bins - 1)
        key = self.worker[keep].astype(np.int64) * bins + slot
        cells = len(self.workers) * bins
        done = np.bincount(key, weights=self.done[keep], minlength=cells)
        count = np.bincount(key, minlength=cells)
        first = np.full(cells, np.inf)
        last = np.full(cells, -np.inf)
        np.minimum.at(first, key, self.started[keep] - t0)
        np.maximum.at(last, key, self.ended[keep] - t0)
        for cell in np.flatnonzero(count):
            lane = lanes[self.workers[cell // bins]]
            n, ok = int(count[cell]), int(done[cell])
            lane["count"] += n
            lane["blocks"].append([round(first[cell], 3), round(last[cell], 3), ok, n - ok])
        return lanes

    def rates(self, t0: float, span: float, bins: int) -> list[float]:
        """Items finished per second in each of ``bins`` equal parts of ``span`` from ``t0``."""
        keep = self.present
        width = max(span, 1e-6) / bins
        slot = np.clip(((self.ended[keep] - t0) / width).astype(np.int64), 0, bins - 1)
        items = np.bincount(slot, weights=self.items[keep], minlength=bins)
        return [round(float(n) / width, 3) for n in items]


class RunWatcher:
    """A read-only watcher of one run: every view's one source of its numbers.

    Parameters
    ----------
    store : RunStore
        The workspace's run store.
    run_id : str
        A pipeline run or a step run.

    Examples
    --------
    >>> for state in RunWatcher(ws.store, run.id).follow():             # doctest: +SKIP
    ...     print(progress_line(state["steps"][0]))
    """

    def __init__(self, store: RunStore, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self._histories: dict[str, MiniBatchHistory] = {}

    def state(self) -> dict[str, Any]:
        """The run as it is now (see :func:`run_state`)."""
        return run_state(self.store, self.run_id)

    def history(self, step_id: str) -> MiniBatchHistory:
        """The finished mini-batches of one of the run's step runs, brought up to date."""
        history = self._histories.setdefault(step_id, MiniBatchHistory(self.store, step_id))
        history.update()
        return history

    def follow(
        self, interval: float = 1.0, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the state now and every ``interval`` seconds until it is final (that one too).

        Raises TimeoutError when the run is still going after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.state()
            yield state
            if state["final"]:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {self.run_id} still {state['status']} after timeout_seconds={timeout}"
                )
            time.sleep(interval)


def output_folder(store: RunStore, step_spec: dict[str, Any]) -> str | None:
    """The local folder of a step run's output, or None when its datastore is not local.

    Read from the run store alone: the step's description holds the folder resolved at
    submit; a step stored before descriptions had one names its datastore, whose registered
    root the store holds.
    """
    output = step_spec.get("output")
    if not output:
        return None
    if "folder" in output:
        return output["folder"] if output["datastore_type"] == "Local" else None
    found = store.lookup(DATASTORE_KIND, output["datastore"])
    if found is None or found[1]["datastore_type"] != "Local":
        return None
    return str(Path(found[1]["root"], str(output["path_on_datastore"] or "").lstrip("/")))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def progress_line(step: dict[str, Any]) -> str:
    """One line: ``predict-digits: Running 12/30 mini-batches (1 failed), 1200 items ...``."""
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
    if step.get("reused_run"):
        return line + f"; reused the outputs of run {step['reused_run']}"
    line += f", {step['throughput']:.1f} items/s, {_duration(step['elapsed'])} elapsed"
    if step["eta"] is not None:
        line += f", ETA {_duration(step['eta'])}"
    return line


def summary_text(state: dict[str, Any]) -> str:
    """A few lines for the end of a run (or a snapshot of a running one)."""
    lines = [
        f"Run {state['id']} ({state['experiment']}): {state.get('headline', state['status'])}"
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
        # A pipeline's error quotes its failed step's ("step 'x' canceled: canceled on
        # request"): said once, as the widget says it.
        if step["error"] and step["error"] not in (state["error"] or ""):
            lines.append(f"    error: {step['error']}")
    return "\n".join(lines)
