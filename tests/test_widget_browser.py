"""RunDetails in a real JupyterLab and Notebook 7, in a real headless Chromium, on live runs.

A notebook submits a one-step pipeline and shows ``RunDetails(run)``. Half its items wait for
the test to release them, so the live view can be used as a person would: a scrolled log and
an open traceback survive five polls, an error group opens with the keyboard, every text and
badge meets WCAG AA in both themes, nothing is cut off at 360 px, Cancel and Resume work, a
SIGKILLed runner shows as Failed within two polls, the output, snapshot and logs open in the
view on a server with its default settings (and link to it where it serves hidden folders), and
a saved notebook reopens in its final state with JupyterLab's default settings. Screenshots of
both themes, mid-run and at the end, are written to ``docs/``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from jupyter_browser import (  # noqa: F401 - lab_server and browser_page are fixtures
    CHROMIUM,
    OVERFLOW_JS,
    browser_page,
    http_status,
    lab_server,
    low_contrast,
    menu,
    open_and_run_all,
    ratio,
    theme,
    write_notebook,
)
from playwright.sync_api import Locator, Page, expect

from jupyter_parallelrun import Workspace
from jupyter_parallelrun.store import FINAL_STATUSES

DOCS = Path(__file__).resolve().parent.parent / "docs"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
RUN_DETAILS = "jupyter_parallelrun.widget.RunDetails"  # anywidget's _anywidget_id
ITEMS = 40
# Mini-batches whose entry script call raises; one of them has HTML in its file name.
HTML_NAME = "item_<b>bold_007.txt"
FAILING = ("item_013.txt", "item_027.txt", HTML_NAME)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]


def _script(release: Path, gated_from: int, items: int) -> str:
    """Items from ``gated_from`` on wait (printing to their log) until ``release`` exists."""
    gated = tuple(f"_{i:03d}.txt" for i in range(gated_from, items))
    return f"""
import os, time
from jupyter_parallelrun import Run

FAILING = {FAILING!r}
GATED = {gated!r}

def init():
    pass

def run(mini_batch):
    time.sleep(0.15)
    Run.get_context().log("scored", len(mini_batch))
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        while name.endswith(GATED) and not os.path.exists({str(release)!r}):
            print("waiting for", name, "at", time.time(), flush=True)
            time.sleep(0.05)
        if name in FAILING:
            raise ValueError(f"cannot score {{name}}")
        rows.append(f"{{name}} -> {{open(path).read()}}")
    return rows
"""


def _file_name(i: int) -> str:
    return HTML_NAME if i == 7 else f"item_{i:03d}.txt"


SUBMIT = """\
from jupyter_parallelrun import (
    Dataset, Experiment, ParallelRunConfig, ParallelRunStep, Pipeline, PipelineData,
    RunDetails, Workspace,
)

ws = Workspace.from_config()
def submit():
    config = ParallelRunConfig(
        source_directory="src", entry_script="score.py", mini_batch_size=1,
        process_count_per_node=2, run_max_try=1, error_threshold=-1,
    )
    step = ParallelRunStep(
        name="score-step", parallel_run_config=config,
        inputs=[Dataset.File.from_files(path="inputs").as_named_input("items")],
        output=PipelineData(name="scores", datastore=ws.get_default_datastore()),
        allow_reuse={reuse},
    )
    return Experiment(ws, "browser").submit(Pipeline(workspace=ws, steps=[step]))"""


def _notebook(tmp_path: Path, items: int, gated_from: int, cells: list[str], reuse=False):
    """A workspace with ``items`` input files and a notebook of ``cells``; returns the
    notebook, the release file and the workspace."""
    ws_dir = tmp_path / "ws"
    ws = Workspace.create("test", path=ws_dir)
    (ws_dir / "src").mkdir()
    release = tmp_path / "release"
    (ws_dir / "src" / "score.py").write_text(_script(release, gated_from, items))
    (ws_dir / "inputs").mkdir()
    for i in range(items):
        (ws_dir / "inputs" / _file_name(i)).write_text(f"payload-{i}")
    head = [f"import os\n\nos.chdir({str(ws_dir)!r})", SUBMIT.format(reuse=reuse)]
    return write_notebook(tmp_path / "run_details.ipynb", head + cells), release, ws


def _counts(root: Locator) -> tuple[str, int]:
    """The run's status and how many items are finished (done or failed), as shown."""
    status = root.locator(".prd-head .prd-status").inner_text()
    text = root.locator(".prd-counters span").first.inner_text()
    done, failed = re.fullmatch(r"items: (\d+)(?: of \d+)? done, (\d+) failed", text).groups()
    return status, int(done) + int(failed)


def _poll(root: Locator) -> int:
    return int(root.get_attribute("data-poll") or 0)


def _wait_polls(root: Locator, count: int) -> None:
    start = _poll(root)
    expect(root).to_have_attribute("data-poll", str(start + count))


def _timeline_greys(root: Locator) -> dict[str, str]:
    """The timeline's colours as drawn: a lane's idle track, its start-up block (where one is
    drawn) and the legend's swatches of both."""
    return root.evaluate(
        """n => {
        const colour = (q, p) => {
          const e = n.querySelector(q); return e && getComputedStyle(e)[p]; };
        return { idle: colour(".prd-lane-track", "backgroundColor"),
          init: colour(".prd-lane-track .prd-block-init", "fill"),
          idle_swatch: colour(".prd-timeline .prd-swatch-idle", "backgroundColor"),
          init_swatch: colour(".prd-timeline .prd-swatch.prd-block-init", "backgroundColor") }; }"""
    )


def _contrast_in_both_themes(page: Page, root: Locator) -> None:
    for name, light in (("JupyterLab Dark", False), ("JupyterLab Light", True)):
        theme(page, name, light=light)
        assert low_contrast(root) == [], (name, low_contrast(root))


def _check_theme_and_width(page: Page, root: Locator, moment: str) -> None:
    """AA contrast in both themes (photographed for docs/), then nothing cut off at 360 px."""
    page.evaluate("() => window.getSelection().removeAllRanges()")
    # Tall enough for the whole widget, so the screenshot is one view of it, not a scrolled one.
    page.set_viewport_size({"width": 1280, "height": 3000})
    for name, light in (("JupyterLab Light", True), ("JupyterLab Dark", False)):
        theme(page, name, light=light)
        assert low_contrast(root) == [], (name, moment, low_contrast(root))
        # A process starting (init()) and one idle are told apart at a glance, as text would be.
        greys = _timeline_greys(root)
        assert greys["idle_swatch"] == greys["idle"], greys
        assert greys["init"] in (None, greys["init_swatch"]), greys
        assert ratio(greys["init_swatch"], greys["idle"]) >= 4.5, (name, greys)
        root.screenshot(path=DOCS / f"run_details_{'light' if light else 'dark'}_{moment}.png")
    theme(page, "JupyterLab Light", light=True)
    # The widget in a 360 px column (a side panel, a phone): its own box is made that narrow.
    root.evaluate("n => { n.parentElement.style.width = '360px'; }")
    try:
        assert root.evaluate("n => n.getBoundingClientRect().width") <= 360
        assert root.evaluate(OVERFLOW_JS) == []
        root.screenshot(path=DOCS / f"run_details_360px_{moment}.png")
    finally:
        root.evaluate("n => { n.parentElement.style.width = ''; }")
        page.set_viewport_size({"width": 1400, "height": 1000})


def _saved_view(notebook: Path) -> dict | None:
    """The RunDetails state the notebook file keeps for its last cell's widget, if any."""
    saved = json.loads(notebook.read_text())
    outputs = saved["cells"][-1]["outputs"]  # none until the notebook is first saved
    if not outputs:
        return None
    model_id = outputs[0]["data"][WIDGET_VIEW]["model_id"]
    models = saved["metadata"].get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return models.get(model_id, {}).get("state", {}).get("state")


def _reopened_in_its_final_state(
    page: Page, lab, notebook: Path, headline: str, *, autosaved: bool = False
) -> Locator:
    """Saved now with JupyterLab's default settings, the notebook holds the final state (the
    output's text, and the widget's own state), and shows it when opened again after its kernel
    is gone, actions off; opening it does not mark it modified (``autosaved``: ipywidgets' "Save
    Widget State Automatically" marks it, whatever the view does). Returns the reopened view."""
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while (_saved_view(notebook) or {}).get("headline") != headline:
        assert time.monotonic() < deadline, "the saved notebook does not hold the final state"
        time.sleep(0.2)
    (output,) = json.loads(notebook.read_text())["cells"][-1]["outputs"]
    assert headline in "".join(output["data"]["text/plain"])
    # As when it is opened another day: the page closed first, then its kernel shut down.
    # (Reloading a page whose kernel was deleted under it races ipywidgets' own restore of the
    # saved state: it showed "model not found" about one time in six here.)
    base, token = lab
    url = page.url
    page.goto("about:blank")
    with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as response:
        sessions = json.load(response)
    for session in sessions:
        http_status(f"{base}/api/sessions/{session['id']}?token={token}", method="DELETE")
    page.goto(url)
    root = page.locator(".prd-root").last
    expect(root.locator(".prd-head .prd-status")).to_have_text(headline)
    expect(root.locator(".prd-notice")).to_contain_text("Saved with the notebook")
    expect(root.locator(".prd-resume")).to_be_disabled()
    expect(root.locator(".prd-cancel")).to_be_disabled()
    root.screenshot(path=notebook.parent / "reopened.png")  # kept with the test's files
    if "/lab/" in page.url and not autosaved:  # Notebook 7 has no tab to mark
        expect(page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty")).to_have_count(0)
    return root


def _files_open_in_the_view(root: Locator) -> None:
    """The output, the snapshot and the logs folder open in the view itself (the kernel reads
    them), on any Jupyter server; a server with its defaults serves none of them."""
    files, text = root.locator(".prd-files"), root.locator(".prd-file-text")
    for label, chosen, shown in (
        ("output", "parallel_run_step.txt", "item_005.txt -> payload-5"),
        ("snapshot", "score.py", "def run(mini_batch):"),
        ("logs folder", "job_result.txt", "Completed"),
    ):
        row = root.locator(".prd-properties .prd-prop-name", has_text=re.compile(f"^{label}$"))
        row.locator("xpath=following-sibling::span[1]").locator(".prd-show-file").click()
        expect(files).to_have_attribute("open", "")
        expect(root.locator(".prd-file-select option:checked")).to_have_text(chosen)
        expect(text).to_contain_text(shown)


def test_live_run_in_jupyterlab(tmp_path: Path, lab, page: Page):
    half = ITEMS // 2
    notebook, release, ws = _notebook(tmp_path, ITEMS, half, ["run = submit()", "RunDetails(run)"])
    base, token = lab
    open_and_run_all(page, f"{base}/lab/tree/{notebook.name}?token={token}")
    root = page.locator(".prd-root")
    # The first half finishes (item 20 on wait), two of its items failing.
    deadline = time.monotonic() + 90
    while _counts(root) != ("Running", half - 1):
        assert time.monotonic() < deadline, f"never half-way: {_counts(root)}"
        time.sleep(0.2)

    root.locator(".prd-files > summary").click()
    root.locator(".prd-file-select").select_option(label="workers/process000.txt")
    log = root.locator(".prd-file-text")
    expect(log).to_be_visible()
    # The log opens at its newest lines and follows them.
    page.wait_for_function(
        "n => n.scrollHeight > n.clientHeight + 200 &&"
        " n.scrollHeight - n.scrollTop - n.clientHeight < 8",
        arg=log.element_handle(),
    )
    log.evaluate("n => { n.scrollTop = 60; n.dispatchEvent(new Event('scroll')); }")

    group = root.locator(".prd-error").filter(has_text="item_013.txt")
    group.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(group).to_have_attribute("open", "")
    group.locator(".prd-show-trace").focus()
    page.keyboard.press("Enter")
    trace = group.locator(".prd-traceback")
    expect(trace).to_be_visible()
    expect(trace).to_contain_text("ValueError: cannot score item_013.txt")
    group.locator(".prd-copy-trace").focus()
    page.keyboard.press("Enter")
    expect(group.locator(".prd-copied")).to_have_text("copied")
    assert "cannot score item_013.txt" in page.evaluate("() => navigator.clipboard.readText()")
    trace.evaluate("n => window.getSelection().selectAllChildren(n)")

    _wait_polls(root, 5)
    assert log.evaluate("n => n.scrollTop") == 60
    expect(group).to_have_attribute("open", "")
    expect(trace).to_be_visible()
    assert "cannot score item_013.txt" in page.evaluate("() => String(window.getSelection())")
    expect(root.locator(".prd-lane")).to_have_count(2)
    expect(root.locator(".prd-metrics")).to_contain_text("scored")
    _check_theme_and_width(page, root, "running")

    release.touch()
    expect(root.locator(".prd-head .prd-status")).to_have_text("Completed with 3 failed items")
    counters = root.locator(".prd-counters")
    expect(counters).to_contain_text(f"items: {ITEMS - 3} of {ITEMS} done, 3 failed")
    expect(root.locator(".prd-bar-legend")).to_contain_text(f"{ITEMS - 3} items done")
    expect(root.locator(".prd-worker")).to_have_count(2)
    # One lane per process, holding the mini-batches the store says it ran.
    (step,) = ws.store.list_runs(parent_id=root.locator(".prd-title").inner_text().split(" · ")[1])
    per_worker: dict[str, int] = {}
    for mb in ws.store.mini_batches(step["id"]):
        per_worker[mb["worker"]] = per_worker.get(mb["worker"], 0) + 1
    lanes = root.locator(".prd-lane")
    shown = {
        lane.get_attribute("data-key"): int(lane.get_attribute("data-count"))
        for lane in lanes.all()
    }
    assert shown == per_worker and sum(shown.values()) == ITEMS
    # Grouped by message: three kinds, the user's file name shown as text, never as markup.
    expect(root.locator(".prd-error")).to_have_count(3)
    expect(root.locator(".prd-error", has_text=HTML_NAME)).to_have_count(1)
    assert root.locator("b").count() == 0
    expect(root.locator(".prd-cancel")).to_be_disabled()
    expect(root.locator(".prd-resume")).to_be_disabled()
    root.locator(".prd-properties > summary").click()
    names = root.locator(".prd-properties .prd-prop-name").all_inner_texts()
    assert "output" in names and len(names) == len(set(names)), names
    _files_open_in_the_view(root)
    _check_theme_and_width(page, root, "final")

    _reopened_in_its_final_state(page, lab, notebook, "Completed with 3 failed items")


@pytest.mark.parametrize("lab", [{"allow_hidden": True}], indirect=True, ids=["allow_hidden"])
def test_cancel_and_resume_buttons(tmp_path: Path, lab, page: Page):
    """Cancel and Resume; on a server that serves hidden folders, the files link to it too."""
    notebook, release, _ = _notebook(tmp_path, 8, 4, ["run = submit()", "RunDetails(run)"])
    base, token = lab
    open_and_run_all(page, f"{base}/lab/tree/{notebook.name}?token={token}")
    root = page.locator(".prd-root")
    expect(root.locator(".prd-counters span").first).to_contain_text("items: 4 of 8 done, 0 failed")
    expect(root.locator(".prd-resume")).to_be_disabled()
    root.locator(".prd-cancel").click()
    expect(root.locator(".prd-head .prd-status")).to_have_text("Canceled")
    expect(root.locator(".prd-cancel")).to_be_disabled()
    _contrast_in_both_themes(page, root)
    release.touch()
    root.locator(".prd-resume").click()
    expect(root.locator(".prd-notice")).to_contain_text("Resumed")
    expect(root.locator(".prd-head .prd-status")).to_have_text("Completed with 1 failed item")
    expect(root.locator(".prd-counters span").first).to_contain_text("items: 7 of 8 done, 1 failed")
    # The output file, the snapshot and the logs folder open in this JupyterLab.
    root.locator(".prd-properties > summary").click()
    links = root.locator(".prd-properties a")
    expect(links).to_have_count(3)
    for link in links.all():
        path = link.get_attribute("href").split("/lab/tree/", 1)[1]
        assert Path(link.get_attribute("title")) == tmp_path / urllib.parse.unquote(path)
        assert http_status(f"{base}/api/contents/{path}?content=0&token={token}") == 200
    _files_open_in_the_view(root)


@pytest.mark.parametrize("lab", [{"save_widget_state": True}], indirect=True, ids=["autosave"])
def test_reopened_with_save_widget_state_automatically(tmp_path: Path, lab, page: Page):
    """With "Save Widget State Automatically" on, ipywidgets saves the live copy of a Canceled
    run's view, Resume on; reopened without its kernel, the view still says it is saved and
    keeps its actions off, as it cannot act."""
    notebook, _, _ = _notebook(tmp_path, 4, 2, ["run = submit()", "RunDetails(run)"])
    base, token = lab
    open_and_run_all(page, f"{base}/lab/tree/{notebook.name}?token={token}")
    root = page.locator(".prd-root")
    expect(root.locator(".prd-counters span").first).to_contain_text("items: 2 of 4 done")
    root.locator(".prd-cancel").click()
    expect(root.locator(".prd-head .prd-status")).to_have_text("Canceled")
    expect(root.locator(".prd-resume")).to_be_enabled()
    reopened = _reopened_in_its_final_state(page, lab, notebook, "Canceled", autosaved=True)
    # What ipywidgets kept is the live copy (so the view, not the saved state, turns Resume off).
    kept = _saved_view(notebook)
    assert kept["can_resume"] is True and not kept.get("saved"), kept
    expect(reopened.locator(".prd-notice")).to_have_text(re.compile("when the run ended"))
    expect(reopened.locator(".prd-file-select")).to_be_disabled()


def test_a_killed_runner_shows_failed_within_two_polls(tmp_path: Path, lab, page: Page):
    notebook, _, ws = _notebook(tmp_path, 8, 4, ["run = submit()", "RunDetails(run)"])
    base, token = lab
    open_and_run_all(page, f"{base}/lab/tree/{notebook.name}?token={token}")
    root = page.locator(".prd-root")
    expect(root.locator(".prd-counters span").first).to_contain_text("items: 4 of 8 done")
    (run,) = ws.store.list_runs(top_level=True)
    os.kill(run["runner_pid"], signal.SIGKILL)
    # A runner is lost once its lease lapses (liveness is the lease, never a pid); from then on
    # the view shows it within two polls.
    deadline = time.monotonic() + 60
    while ws.store.owner(run["id"]).live():
        assert time.monotonic() < deadline, "the killed runner's lease never lapsed"
        time.sleep(0.05)
    before = _poll(root)
    expect(root.locator(".prd-head .prd-status")).to_have_text("Failed (lost runner)")
    assert _poll(root) <= before + 2
    expect(root.locator(".prd-run-error")).to_contain_text("ended without finishing the run")
    expect(root.locator(".prd-resume")).to_be_enabled()
    _contrast_in_both_themes(page, root)
    # Polling stopped: the view stays as it is.
    final = _poll(root)
    page.wait_for_timeout(2500)
    assert _poll(root) == final
    # The view only read the store: it still says Running until the API records the loss.
    assert ws.store.get_run(run["id"])["status"] not in FINAL_STATUSES


def test_notebook_7_and_a_reused_run(tmp_path: Path, lab, page: Page):
    """The widget in Notebook 7's page; the second, identical run says it reused the first."""
    cells = [
        "first = submit()\nfirst.wait_for_completion()\nRunDetails(first)",
        "second = submit()\nsecond.wait_for_completion()\nRunDetails(second)",
    ]
    notebook, release, _ = _notebook(tmp_path, 6, 6, cells, reuse=True)
    release.touch()
    base, token = lab
    page.goto(f"{base}/notebooks/{notebook.name}?token={token}")
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible()
    expect(page.locator(".jp-Toolbar-kernelName")).to_have_text("Python 3 (ipykernel)")
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1)
    menu(page, "Run", "Run All Cells")
    first, second = page.locator(".prd-root").first, page.locator(".prd-root").nth(1)
    expect(first.locator(".prd-head .prd-status")).to_have_text("Completed")
    expect(first.locator(".prd-counters")).to_contain_text("items: 6 of 6 done, 0 failed")
    expect(first.locator(".prd-worker")).to_have_count(2)
    expect(first.locator(".prd-preview pre")).to_contain_text("item_005.txt -> payload-5")
    first_id = first.locator(".prd-title").inner_text().split(" · ")[1]
    expect(second.locator(".prd-head .prd-status")).to_have_text(
        f"Reused the outputs of run {first_id}"
    )
    expect(second.locator(".prd-counters")).to_contain_text("items: 6 of 6 done, 0 failed")
    assert low_contrast(second) == []
    first.screenshot(path=DOCS / "run_details_notebook7.png")
    # The last cell run again: its new view replaces the old one in the notebook's saved state.
    shown_before = second.locator(".prd-title").inner_text()
    page.locator(".jp-Notebook .jp-Cell").last.locator(".jp-InputArea-prompt").click()
    page.keyboard.press("Control+Enter")
    expect(second.locator(".prd-title")).not_to_have_text(shown_before)
    expect(second.locator(".prd-head .prd-status")).to_have_text(
        f"Reused the outputs of run {first_id}"
    )
    _reopened_in_its_final_state(page, lab, notebook, f"Reused the outputs of run {first_id}")
    # Each of the notebook's views kept its own final state, and only they did.
    saved = json.loads(notebook.read_text())
    views = {
        output["data"][WIDGET_VIEW]["model_id"]
        for cell in saved["cells"]
        for output in cell.get("outputs", [])
        if WIDGET_VIEW in output.get("data", {})
    }
    models = saved["metadata"]["widgets"][WIDGET_STATE]["state"]
    kept = {k for k, v in models.items() if v["state"].get("_anywidget_id") == RUN_DETAILS}
    assert kept == views and len(views) == 2, (kept, views)
    reopened = page.locator(".prd-root").first
    expect(reopened.locator(".prd-head .prd-status")).to_have_text("Completed")
    expect(reopened.locator(".prd-counters")).to_contain_text("items: 6 of 6 done, 0 failed")
