"""RunDetails in a real JupyterLab and a real headless Chromium.

A notebook submits a one-step pipeline and shows ``RunDetails(run)``; the page is checked while
the run goes on and after it ends: progress, one row per worker process, errors with their
tracebacks, the output preview, user text shown as text, and both the light and dark themes.
Screenshots land in ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from jupyter_parallelrun import Workspace
from jupyter_parallelrun.store import FINAL_STATUSES

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TIMEOUT_MS = 60_000
ITEMS = 40
# Mini-batches whose entry script call raises; one of them has HTML in its file name.
HTML_NAME = "item_<b>bold_007.txt"
FAILING = ("item_013.txt", "item_027.txt", HTML_NAME)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]

# The second half of the items waits for the test to release it, so the page can be checked
# and photographed in both themes while the run is certainly still going.
GATED = tuple(f"_{i:03d}.txt" for i in range(ITEMS // 2, ITEMS))
# Items finish in file-name order, and the "<b>" name sorts after every gated one.
BEFORE_GATE = ITEMS // 2 - 1


def _script(release: Path) -> str:
    return f"""
import os, time

FAILING = {FAILING!r}
GATED = {GATED!r}

def init():
    pass

def run(mini_batch):
    time.sleep(0.15)
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        while name.endswith(GATED) and not os.path.exists({str(release)!r}):
            time.sleep(0.05)
        if name in FAILING:
            raise ValueError(f"cannot score {{name}}")
        rows.append(f"{{name}} -> {{open(path).read()}}")
    return rows
"""


def _file_name(i: int) -> str:
    return HTML_NAME if i == 7 else f"item_{i:03d}.txt"


def _write_notebook(root: Path, ws_dir: Path) -> Path:
    cells = [
        f"import os\n\nos.chdir({str(ws_dir)!r})",
        textwrap.dedent(
            """\
            from jupyter_parallelrun import (
                Dataset, Experiment, ParallelRunConfig, ParallelRunStep, Pipeline, PipelineData,
                RunDetails, Workspace,
            )

            ws = Workspace.from_config()
            config = ParallelRunConfig(
                source_directory="src",
                entry_script="score.py",
                mini_batch_size=1,
                process_count_per_node=2,
                run_max_try=1,
                error_threshold=-1,
            )
            step = ParallelRunStep(
                name="score-step",
                parallel_run_config=config,
                inputs=[Dataset.File.from_files(path="inputs").as_named_input("items")],
                output=PipelineData(name="scores", datastore=ws.get_default_datastore()),
                allow_reuse=False,
            )
            run = Experiment(ws, "browser").submit(Pipeline(workspace=ws, steps=[step]))"""
        ),
        "RunDetails(run).show()",
    ]
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in cells],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    path = root / "run_details.ipynb"
    nbformat.write(notebook, path)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status


@pytest.fixture
def lab(tmp_path: Path):
    """A JupyterLab server on 127.0.0.1, isolated from the user's settings; yields its URL."""
    port, token = _free_port(), secrets.token_hex(16)
    home = tmp_path / "jupyter-home"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    # Never fetch the Jupyter news feed (nor ask whether to).
    news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification"
    news.parent.mkdir(parents=True)
    news.with_suffix(".jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    log = open(tmp_path / "jupyterlab.log", "wb")  # noqa: SIM115 - closed in the finally below
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={tmp_path}",
            "--ServerApp.port_retries=0",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            # CI containers often run as root; the server refuses that unless told.
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "jupyterlab.log").read_text()
            try:
                if _request(f"{base}/api/status?token={token}") == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "JupyterLab did not start within 60 s"
            time.sleep(0.25)
        yield base, token
    finally:
        try:
            _request(f"{base}/api/shutdown?token={token}", method="POST")
            server.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
        log.close()


@pytest.fixture
def page():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
            timeout=TIMEOUT_MS,
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # Shown with a failing test's output: the widget's own errors land in the console.
            page.on("console", lambda message: print(f"console {message.type}: {message.text}"))
            page.on("pageerror", lambda error: print(f"page error: {error}"))
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def _menu(page: Page, *labels: str) -> None:
    """Open the menu bar entry ``labels[0]`` and click down through the rest."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{labels[0]}$")).click()
    for label in labels[1:]:
        item = page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(label)}$"))
        item.click()


def _theme(page: Page, name: str, *, light: bool) -> None:
    _menu(page, "Settings", "Theme", name)
    expect(page.locator(f"body[data-jp-theme-light='{str(light).lower()}']")).to_have_count(1)
    # JupyterLab covers the page with its splash screen while the new theme loads.
    expect(page.locator("#jupyterlab-splash")).to_have_count(0)


def _counts(page: Page) -> tuple[str, int]:
    """The run's status and how many items are finished (done or failed), as shown."""
    status = page.locator(".prd-head .prd-status").inner_text()
    text = page.locator(".prd-counters span").first.inner_text()
    done, failed = re.fullmatch(r"items: (\d+)(?: of \d+)? done, (\d+) failed", text).groups()
    return status, int(done) + int(failed)


def test_run_details_in_jupyterlab(tmp_path: Path, lab, page: Page):
    ws_dir = tmp_path / "ws"
    Workspace.create("test", path=ws_dir)
    (ws_dir / "src").mkdir()
    release = tmp_path / "release"
    (ws_dir / "src" / "score.py").write_text(_script(release))
    (ws_dir / "inputs").mkdir()
    for i in range(ITEMS):
        (ws_dir / "inputs" / _file_name(i)).write_text(f"payload-{i}")
    expected_rows = {
        f"{_file_name(i)} -> payload-{i}" for i in range(ITEMS) if _file_name(i) not in FAILING
    }
    notebook = _write_notebook(tmp_path, ws_dir)
    ARTIFACTS.mkdir(exist_ok=True)
    base, token = lab

    page.goto(f"{base}/lab/tree/{notebook.name}?token={token}")
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible()
    # Cells run before the kernel is connected would ask for a kernel instead of running.
    expect(page.locator(".jp-StatusBar-Widget", has_text="Python 3")).to_contain_text("Idle")
    _menu(page, "Run", "Run All Cells")

    root = page.locator(".prd-root")
    expect(root).to_be_visible()
    # Follow the counters while the run goes on; once the first half is done (the second waits
    # for `release`), photograph the running run in both themes, then let it finish.
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while True:
        status, finished = _counts(page)
        seen.append(finished)
        if status in FINAL_STATUSES:
            break
        if finished == BEFORE_GATE and not release.exists():
            assert status == "Running"
            root.screenshot(path=ARTIFACTS / "run_details_light_running.png")
            _theme(page, "JupyterLab Dark", light=False)
            root.screenshot(path=ARTIFACTS / "run_details_dark_running.png")
            _theme(page, "JupyterLab Light", light=True)
            release.touch()
        assert time.monotonic() < deadline, f"run still {status} after 60 s, counts {seen}"
        time.sleep(0.2)
    assert status == "Completed"
    assert release.exists(), f"never saw the run half-way: {seen}"
    assert seen == sorted(seen) and len(set(seen)) >= 3, seen

    counters = page.locator(".prd-counters")
    expect(counters).to_contain_text(f"items: {ITEMS - 3} of {ITEMS} done, 3 failed")
    expect(counters).to_contain_text(f"mini-batches: {ITEMS - 3} done, 3 failed, 0 remaining")

    workers = page.locator(".prd-worker")
    expect(workers).to_have_count(2)
    for row, name in zip(workers.all(), ["process000", "process001"], strict=True):
        expect(row.locator("td").nth(1)).to_have_text(name)

    errors = page.locator(".prd-error")
    expect(errors).to_have_count(3)
    known = errors.filter(has_text="item_027.txt")
    expect(known.locator(".prd-error-summary")).to_contain_text(
        "ValueError: cannot score item_027.txt"
    )
    expect(known.locator(".prd-traceback")).to_be_hidden()
    known.locator(".prd-error-summary").click()
    expect(known.locator(".prd-traceback")).to_be_visible()
    expect(known.locator(".prd-traceback")).to_contain_text("Traceback")
    expect(known.locator(".prd-traceback")).to_contain_text("cannot score item_027.txt")

    preview = page.locator(".prd-preview pre")
    expect(preview).to_be_visible()
    rows = preview.inner_text().splitlines()
    assert rows and set(rows) <= expected_rows, rows

    # File names are user data: the one holding "<b>" shows as those characters, not as markup.
    expect(errors.filter(has_text=HTML_NAME).locator(".prd-error-summary")).to_contain_text(
        f"ValueError: cannot score {HTML_NAME}"
    )
    assert root.locator("b").count() == 0
    # Parts that are absent (no run error here) leave nothing behind, not a stray "null".
    stray = "node => [...node.childNodes].filter((c) => c.nodeType === Node.TEXT_NODE).length"
    assert root.evaluate(stray) == 0
    root.screenshot(path=ARTIFACTS / "run_details_light_final.png")

    _theme(page, "JupyterLab Dark", light=False)
    background = root.evaluate("node => getComputedStyle(node).backgroundColor")
    channels = [int(c) for c in re.findall(r"\d+", background)[:3]]
    assert sum(channels) < 3 * 96, f"widget background {background} is not dark"
    expect(known.locator(".prd-traceback")).to_be_visible()
    root.screenshot(path=ARTIFACTS / "run_details_dark_final.png")


def test_run_details_in_notebook_7(tmp_path: Path, lab, page: Page):
    """The same widget in Jupyter Notebook 7's page (served by the same Jupyter server)."""
    ws_dir = tmp_path / "ws"
    Workspace.create("test", path=ws_dir)
    (ws_dir / "src").mkdir()
    release = tmp_path / "release"
    release.touch()
    (ws_dir / "src" / "score.py").write_text(_script(release))
    (ws_dir / "inputs").mkdir()
    for i in range(6):
        (ws_dir / "inputs" / _file_name(i)).write_text(f"payload-{i}")
    notebook = _write_notebook(tmp_path, ws_dir)
    base, token = lab

    page.goto(f"{base}/notebooks/{notebook.name}?token={token}")
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible()
    # As in JupyterLab, cells run before the kernel is connected would not run.
    expect(page.locator(".jp-Toolbar-kernelName")).to_have_text("Python 3 (ipykernel)")
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1)
    _menu(page, "Run", "Run All Cells")

    root = page.locator(".prd-root")
    expect(root.locator(".prd-head .prd-status")).to_have_text("Completed")
    expect(root.locator(".prd-counters")).to_contain_text("items: 6 of 6 done, 0 failed")
    expect(root.locator(".prd-worker")).to_have_count(2)
    expect(root.locator(".prd-preview pre")).to_contain_text("item_005.txt -> payload-5")
    root.screenshot(path=ARTIFACTS / "run_details_notebook7.png")
