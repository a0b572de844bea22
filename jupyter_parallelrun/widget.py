"""RunDetails: the live view of a run in the notebook (anywidget), with a text fallback.

The widget is a rendering of :class:`~jupyter_parallelrun.progress.RunWatcher` and nothing
else: a background thread reads the run about once a second while it is active, packs what it
shows into two JSON-able dicts (``state``, and ``errors``, which changes rarely and is sent only
when it does) and stops when the run ends. Everything it sends is bounded, however many
mini-batches and errors a run has: errors come grouped, the timeline and the throughput chart
binned (``widget_state``). The front-end (``js/``) applies each new state to the DOM it
already has.
"""

from __future__ import annotations

import base64
import html
import re
import threading
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .progress import RunWatcher, summary_text
from .widget_state import ChangedRows, error_groups, metrics, widget_state

_HERE = Path(__file__).parent
# The wheel ships js/ as static/; a source checkout reads js/ itself.
_ASSETS = (
    _HERE / "static" if (_HERE / "static" / "run_details.js").exists() else _HERE.parent / "js"
)

POLL_SECONDS = 1.0
_IMPORT = re.compile(r"""(from\s+)["']\./([\w.]+\.js)["']""")


def _bundle(name: str, seen: tuple[str, ...] = ()) -> str:
    """The ES module ``js/name`` with each ``from "./x.js"`` inlined as a data: URL module.

    anywidget loads ``_esm`` from a blob URL, where relative imports do not resolve; this keeps
    js/ as several plain ES modules without a build step.
    """
    if name in seen:
        raise ValueError(f"js/{name} imports itself through {' -> '.join(seen)}")
    source = (_ASSETS / name).read_text(encoding="utf-8")

    def inline(match: re.Match) -> str:
        code = _bundle(match.group(2), (*seen, name)).encode("utf-8")
        return f'{match.group(1)}"data:text/javascript;base64,{base64.b64encode(code).decode()}"'

    return _IMPORT.sub(inline, source)


class RunDetails(anywidget.AnyWidget):
    """Live status, progress, timeline, workers, errors, properties and files of a run.

    Parameters
    ----------
    run_instance : Run
        A PipelineRun or StepRun (``Run.get(ws, run_id)`` finds one from any kernel).

    Notes
    -----
    Once the run has ended, the view in JupyterLab or Notebook 7 keeps its final state in the
    notebook's widget metadata, whatever *Save Widget State Automatically* says, so a notebook
    saved afterwards reopens showing how the run ended, with or without a kernel. Where there is
    no widget front-end (a terminal, nbconvert, GitHub) the run shows as text: its state when it
    was displayed, replaced with the final state once the run ends.

    Examples
    --------
    >>> RunDetails(run).show()                                           # doctest: +SKIP
    """

    _esm = _bundle("run_details.js")
    _css = _ASSETS / "run_details.css"
    state = traitlets.Dict().tag(sync=True)
    errors = traitlets.Dict().tag(sync=True)
    #: The file the view shows: ``"<step id>/<output, snapshot or logs>/<path in it>"``.
    selected_file = traitlets.Unicode("").tag(sync=True)
    #: The outcome of the last Cancel or Resume pressed in this view.
    notice = traitlets.Unicode("").tag(sync=True)

    def __init__(self, run_instance: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_instance = run_instance
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._displays: list[Any] = []
        self._poller: threading.Thread | None = None
        self._polls = 0
        store = run_instance.experiment.workspace.store
        self._watcher = RunWatcher(store, run_instance.id)
        self._errors = ChangedRows(store, "errors", error_groups)
        self._metrics = ChangedRows(store, "metrics", metrics)
        self._refresh()
        self.on_msg(self._on_action)
        self._follow()

    @property
    def polling(self) -> bool:
        """Whether the background thread is still following the run."""
        return self._poller is not None and self._poller.is_alive()

    def _refresh(self) -> dict:
        with self._lock:
            state, errors = widget_state(
                self.run_instance, self.selected_file, self._watcher, self._errors, self._metrics
            )
            # Counted, so a test can tell how many polls something took without a clock.
            self._polls += 1
            state["poll"] = self._polls
            # The front-end finds this widget's own entry in the notebook's widget state by it.
            state["model_id"] = self.model_id
            with self.hold_sync():  # one message, so no view draws a state without its errors
                self.state = state
                self.errors = errors
        return state

    def _follow(self) -> None:
        if not self.state["final"] and not self.polling:
            self._poller = threading.Thread(target=self._poll, daemon=True)
            self._poller.start()

    def _poll(self) -> None:
        while not self._closed.wait(POLL_SECONDS):
            if self._refresh()["final"]:
                self._show_final()
                return

    def _show_final(self) -> None:
        """Put the final state into the outputs that show this widget (for saved notebooks)."""
        from IPython.display import update_display

        for display_id in self._displays:
            update_display(self._repr_mimebundle_()[0], raw=True, display_id=display_id)

    @traitlets.observe("selected_file")
    def _log_selected(self, change: dict) -> None:
        self._refresh()

    def _on_action(self, _widget: Any, content: dict, _buffers: Any) -> None:
        action = content.get("action")
        run = self.run_instance
        try:
            if action == "cancel":
                run.cancel()
                self.notice = "Cancel requested: workers stop after their current mini-batch."
            elif action == "resume":
                parent = run._record["parent_id"]
                pipeline = run.get(run.experiment.workspace, parent) if parent else run
                pipeline.resume()
                self.notice = "Resumed: committed mini-batches are kept and not run again."
            else:
                return
        except (ValueError, RuntimeError, OSError) as error:
            self.notice = f"{action} failed: {error}"
        self._refresh()
        self._follow()

    def show(self) -> None:
        """Display the widget in the notebook (text where there is no widget front-end)."""
        self._ipython_display_()

    def _ipython_display_(self) -> None:
        # Displayed with an id, so the output can be brought up to date when the run ends.
        from IPython.display import display

        display_id = f"run-details-{self.model_id}-{len(self._displays)}"
        self._displays.append(display_id)
        display(self._repr_mimebundle_()[0], raw=True, display_id=display_id)

    def close(self) -> None:
        self._closed.set()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        state = RunWatcher(self.run_instance.experiment.workspace.store, self.run_instance.id)
        text = summary_text(state.state())
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/plain"] = text
        data["text/html"] = f"<pre>{html.escape(text)}</pre>"
        return bundle
