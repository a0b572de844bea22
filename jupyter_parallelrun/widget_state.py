"""What RunDetails shows of a run: one JSON-able ``state`` per poll and the step's grouped
``errors``, both bounded however many mini-batches and errors the run has.

It only reads: the run store through :class:`~jupyter_parallelrun.progress.RunWatcher`, and the
step's files (the tail of its output, the listing of its folders, the file chosen in the view).
Errors come grouped, the timeline and the throughput chart binned, and rows that rarely change
are read again only when they did.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from .progress import RunWatcher, output_folder

PREVIEW_ROWS = 10
LOG_TAIL_BYTES = 64 * 1024
#: Files listed per folder (the output, the snapshot, the logs); a larger folder is cut.
FOLDER_FILES = 200
FILE_LINES = 200
ERROR_GROUPS = 20
ERRORS_PER_GROUP = 10
TRACEBACK_CHARS = 4000
EXCEPTION_CHARS = 500
TIMELINE_BLOCKS = 6000
THROUGHPUT_BINS = 60
METRICS = 50
#: The settings shown under a step's properties (the rest are in its snapshot).
CONFIG_SHOWN = (
    *("mini_batch_size", "error_threshold", "allowed_failed_count", "allowed_failed_percent"),
    *("run_max_try", "run_invocation_timeout", "output_action", "append_row_file_name"),
    *("preserve_order", "logging_level"),
)


def _tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of a file, reading only its end."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            data = handle.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > LOG_TAIL_BYTES:
        lines = lines[1:]
    return lines[-count:]


def _files(root: Path | None) -> list[str]:
    """Up to ``FOLDER_FILES`` files under ``root``, as sorted paths relative to it."""
    if root is None or not root.is_dir():
        return []
    found = itertools.islice((p for p in root.rglob("*") if p.is_file()), FOLDER_FILES)
    # A name that is not UTF-8 is listed readably (its state must encode as JSON), not opened.
    names = (p.relative_to(root).as_posix() for p in found)
    return sorted(n.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for n in names)


def _file_text(path: Path) -> str:
    """A file as the view shows it: all of a short one, the last lines of a long one."""
    lines = _tail_lines(path, FILE_LINES + 1)
    try:
        size = path.stat().st_size
    except OSError:
        return ""
    if size <= LOG_TAIL_BYTES and len(lines) <= FILE_LINES:
        return "\n".join(lines)
    return f"[the last {FILE_LINES} lines of {size:,} bytes]\n" + "\n".join(lines[-FILE_LINES:])


def _clip(text: str | None, limit: int, keep_end: bool = False) -> str:
    """``text`` cut to ``limit`` characters, saying so; tracebacks keep their end (the error)."""
    text = text or ""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    if keep_end:
        return f"[{cut} characters cut; see the logs for all]\n" + text[-limit:]
    return text[:limit] + f" [{cut} characters cut]"


def error_groups(store: Any, step_id: str) -> dict[str, Any]:
    """The step's errors grouped by their exception text, newest group first, bounded."""
    total, found = store.error_groups(step_id, ERROR_GROUPS, ERRORS_PER_GROUP)
    groups = [
        {
            "exception": _clip(group["exception"], EXCEPTION_CHARS),
            "count": group["n"],
            "mini_batches": group["n_mb"],
            "first": group["first"],
            "last": group["last"],
            "traceback": _clip(group["traceback"], TRACEBACK_CHARS, keep_end=True),
            "latest": [row | {"item": _clip(row["item"], 200)} for row in group["latest"]],
        }
        for group in found
    ]
    return {"groups_total": total, "groups": groups}


def timeline(history: Any, step: dict[str, Any], now: float) -> dict[str, Any]:
    """One lane per worker process: its start-up, and its finished mini-batches binned."""
    t0 = min([w["started"] for w in step["workers"] if w["started"]] + [step["started"] or now])
    span = max((step["ended"] or now) - t0, 1e-3)
    bins = max(20, min(150, TIMELINE_BLOCKS // max(1, len(step["workers"]))))
    binned = history.lanes(t0, span, bins)
    lanes = [
        {
            "name": w["name"],
            "node": w["node_id"],
            "state": w["state"],
            "restarts": w["restarts"],
            "init": None if w["started"] is None else round(w["started"] - t0, 3),
            **binned.pop(w["name"], {"count": 0, "blocks": []}),
        }
        for w in step["workers"]
    ]
    # Mini-batches of a process no longer in the workers table still count.
    lanes += [
        {"name": name, "node": None, "state": "", "restarts": 0, "init": None, **rest}
        for name, rest in binned.items()
    ]
    return {"span": span, "lanes": lanes}


def throughput(history: Any, step: dict[str, Any], now: float) -> dict[str, Any]:
    """Items finished per second over the step's life, from the mini-batches' end times."""
    t0 = step["started"] or now
    span = max((step["ended"] or now) - t0, 1e-3)
    rates = history.rates(t0, span, THROUGHPUT_BINS)
    return {"span": span, "width": span / THROUGHPUT_BINS, "rates": rates}


def _input_text(spec: dict[str, Any], names: dict[str, str]) -> str:
    """``items: /data/in`` for a dataset, ``scores (from step score)`` for a PipelineData."""
    if spec.get("pipeline_data"):
        producer = names.get(spec.get("producer"), spec.get("producer"))
        return f"{spec['pipeline_data']} (from step {producer})"
    sources = (spec.get("dataset") or {}).get("sources", [])
    paths = ", ".join(str(s.get("path", "")) for s in sources)
    return f"{spec.get('name', 'input')}: {paths}"[:300]


def _step_view(
    ws: Any, watcher: RunWatcher, step: dict[str, Any], selected_file: str, step_names: dict
) -> dict[str, Any]:
    now = time.time()
    store = ws.store
    spec = store.get_run(step["id"])["spec"] or {}
    config = spec.get("config", {})
    view = dict(step)
    view["workers"] = [
        {k: w[k] for k in w if k not in ("run_id", "error")} | {"error": _clip(w["error"], 300)}
        for w in step["workers"]
    ]
    folder = output_folder(store, spec)
    output_file = None
    if folder and config.get("output_action") == "append_row":
        output_file = str(Path(folder) / config["append_row_file_name"])
    view["preview"] = _tail_lines(Path(output_file), PREVIEW_ROWS) if output_file else []
    logs = ws.path / "runs" / step["id"] / "logs"
    # The step's files are read here, by the kernel, so the view shows them on any Jupyter
    # server: one that hides .parallelrun (the default) cannot open them itself.
    folders = {"output": folder, "snapshot": spec.get("snapshot"), "logs": logs}
    folders = {name: Path(path) if path else None for name, path in folders.items()}
    view["files"] = {name: _files(path) for name, path in folders.items()}
    section, _, relative = selected_file.removeprefix(f"{step['id']}/").partition("/")
    if selected_file.startswith(f"{step['id']}/") and relative in view["files"].get(section, []):
        view["file_text"] = _file_text(folders[section] / relative)
    view["links"] = {
        "output": output_file or folder,
        "snapshot": spec.get("snapshot"),
        "logs": str(logs),
    }
    view["properties"] = {
        "entry_script": config.get("entry_script"),
        "source_directory": config.get("source_directory"),
        "compute_target": config.get("compute_target") or "local",
        "nodes_processes": f"{config.get('node_count', 1)} node(s) × "
        f"{config.get('process_count_per_node', 1)} process(es)",
        "input": _input_text(spec.get("input") or {}, step_names),
        "output": (spec.get("output") or {}).get("name"),
        "arguments": " ".join(map(str, spec.get("arguments", [])))[:300],
        "config": {k: config.get(k) for k in CONFIG_SHOWN if config.get(k) is not None},
    }
    view["warnings"] = [_clip(str(w), 500) for w in spec.get("warnings", [])][:20]
    history = watcher.history(step["id"])
    view["timeline"] = timeline(history, step, now)
    view["throughput_chart"] = throughput(history, step, now)
    return view


class ChangedRows:
    """A step's grouped errors or metrics, read again only when a row was added to them."""

    def __init__(self, store: Any, table: str, read: Any) -> None:
        self.store, self.table, self.read = store, table, read
        self._seen: dict[str, tuple[tuple[int, int], dict]] = {}

    def __call__(self, step_id: str) -> dict[str, Any]:
        version = self.store.version(self.table, step_id)
        if step_id not in self._seen or self._seen[step_id][0] != version:
            self._seen[step_id] = (version, self.read(self.store, step_id))
        return self._seen[step_id][1]


def metrics(store: Any, step_id: str) -> dict[str, Any]:
    """What the step's script logged (``Run.log``, ``log_list``, ``log_row``), bounded: the
    latest values of a list and the latest rows of a table."""
    shown: dict[str, Any] = {}
    for name, value in list(store.run_metrics(step_id).items())[:METRICS]:
        if isinstance(value, dict):
            columns = list(value)[:10]
            rows = len(next(iter(value.values()), []))
            shown[name] = {
                "table": {c: [_clip(str(v), 80) for v in value[c][-20:]] for c in columns},
                "rows": rows,
            }
        elif isinstance(value, list):
            shown[name] = {"list": [_clip(str(v), 80) for v in value[-20:]], "count": len(value)}
        else:
            shown[name] = {"value": _clip(str(value), 300)}
    return shown


def widget_state(
    run: Any,
    selected_file: str = "",
    watcher: RunWatcher | None = None,
    errors: ChangedRows | None = None,
    logged: ChangedRows | None = None,
) -> tuple[dict, dict]:
    """What the front-end shows: ``(state, errors)``, both JSON-able and bounded in size.

    Pass the same ``watcher``, ``errors`` and ``logged`` (metrics) on every poll, so that each
    reads only what changed since the last one.
    """
    ws = run.experiment.workspace
    watcher = watcher or RunWatcher(ws.store, run.id)
    errors = errors or ChangedRows(ws.store, "errors", error_groups)
    logged = logged or ChangedRows(ws.store, "metrics", metrics)
    state = watcher.state()
    record = ws.store.get_run(run.id)
    pipeline = ws.store.get_run(record["parent_id"]) if record["parent_id"] else record
    names = {step["id"]: step["name"] for step in state["steps"]}
    state["steps"] = [_step_view(ws, watcher, s, selected_file, names) for s in state["steps"]]
    for step in state["steps"]:
        step["metrics"] = logged(step["id"])
        # "step 'x' canceled: canceled on request" is said once, by the run's error.
        if step["error"] and step["error"] in (state["error"] or ""):
            step["error"] = None
    parameters = (pipeline["spec"] or {}).get("parameters", {})
    state["parameters"] = {k: str(v)[:200] for k, v in parameters.items()}
    state["tags"] = pipeline["tags"] or {}
    state["can_cancel"] = not state["final"] and not state["cancel_requested"]
    state["can_resume"] = state["status"] in ("Failed", "Canceled")
    state["selected_file"] = selected_file
    # The front-end resolves a JupyterLab root of "~/..." with it, to link the run's files.
    state["home"] = str(Path.home())
    return state, {step["id"]: errors(step["id"]) for step in state["steps"]}
