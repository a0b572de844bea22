"""RunDetails: the live view of a run in the notebook (anywidget), with a text fallback.

The widget is a view of the run store and nothing else: a background thread reads the run's
state about once a second while the run is active, packs it into one JSON-able dict (the
``state`` trait) and stops when the run ends or the widget is closed. The front-end
(``js/run_details.js``) renders that dict; whatever came from user data is set as text there.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .progress import run_state, summary_text

_HERE = Path(__file__).parent
# The wheel ships js/ as static/; a source checkout reads js/ itself.
_ASSETS = (
    _HERE / "static" if (_HERE / "static" / "run_details.js").exists() else _HERE.parent / "js"
)

POLL_SECONDS = 1.0
PREVIEW_ROWS = 10
LOG_TAIL_BYTES = 64 * 1024
MAX_ERRORS = 50


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


def widget_state(run: Any, selected_log: str = "", history: deque | None = None) -> dict:
    """Everything the front-end shows, as one JSON-able dict."""
    from .datastore import Datastore

    store = run.experiment.workspace.store
    state = run_state(store, run.id)
    ws = run.experiment.workspace
    for step in state["steps"]:
        record = store.get_run(step["id"])
        step["errors"] = [
            {k: e[k] for k in ("mb_id", "try", "item", "worker", "exception", "traceback", "time")}
            for e in store.errors(step["id"], limit=MAX_ERRORS)
        ]
        output = (record["spec"] or {}).get("output")
        config = (record["spec"] or {}).get("config", {})
        step["preview"] = []
        if output and config.get("output_action") == "append_row":
            folder = Datastore.get(ws, output["datastore"]).local_path(output["path_on_datastore"])
            step["output_file"] = str(folder / config["append_row_file_name"])
            step["preview"] = _tail_lines(Path(step["output_file"]), PREVIEW_ROWS)
        logs = ws.path / "runs" / step["id"] / "logs"
        step["logs"] = (
            sorted(str(p.relative_to(logs)) for p in logs.rglob("*") if p.is_file())
            if logs.exists()
            else []
        )
        if selected_log in step["logs"]:
            step["log_text"] = "\n".join(_tail_lines(logs / selected_log, 200))
    if history is not None:
        history.append((time.time(), sum(s["items_done"] for s in state["steps"])))
        state["history"] = list(history)
    state["selected_log"] = selected_log
    return state


class RunDetails(anywidget.AnyWidget):
    """Live status, progress, workers, errors, output preview and logs of a run.

    Parameters
    ----------
    run_instance : Run
        A PipelineRun or StepRun (``Run.get(ws, run_id)`` finds one from any kernel).

    Examples
    --------
    >>> RunDetails(run).show()                                           # doctest: +SKIP
    """

    _esm = _ASSETS / "run_details.js"
    _css = _ASSETS / "run_details.css"
    state = traitlets.Dict().tag(sync=True)
    selected_log = traitlets.Unicode("").tag(sync=True)

    def __init__(self, run_instance: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_instance = run_instance
        self._history: deque = deque(maxlen=120)
        self._closed = threading.Event()
        self.state = widget_state(run_instance, history=self._history)
        self._poller: threading.Thread | None = None
        if not self.state["final"]:
            self._poller = threading.Thread(target=self._poll, daemon=True)
            self._poller.start()

    @property
    def polling(self) -> bool:
        """Whether the background thread is still following the run."""
        return self._poller is not None and self._poller.is_alive()

    def _poll(self) -> None:
        while not self._closed.wait(POLL_SECONDS):
            state = widget_state(self.run_instance, self.selected_log, self._history)
            self.state = state
            if state["final"]:
                return

    @traitlets.observe("selected_log")
    def _log_selected(self, change: dict) -> None:
        self.state = widget_state(self.run_instance, change["new"], self._history)

    def show(self) -> None:
        """Display the widget in the notebook (text where there is no widget front-end)."""
        from IPython.display import display

        display(self)

    def close(self) -> None:
        self._closed.set()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        text = summary_text(
            run_state(self.run_instance.experiment.workspace.store, self.run_instance.id)
        )
        if isinstance(bundle, tuple):
            bundle[0]["text/plain"] = text
        elif isinstance(bundle, dict):
            bundle["text/plain"] = text
        return bundle
