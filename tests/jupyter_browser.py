"""A real JupyterLab server and a real headless Chromium for the RunDetails browser tests, and
what those tests measure on the page: WCAG contrast of every text and what overflows its box.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 60_000
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url: str, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status


def write_notebook(path: Path, cells: list[str]) -> Path:
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in cells],
        metadata={"kernelspec": KERNELSPEC},
    )
    nbformat.write(notebook, path)
    return path


def _settings(home: Path, save_widget_state: bool) -> None:
    """Settings of the test's own JupyterLab: no news feed; the rest as a new user has them
    (ipywidgets' "Save Widget State Automatically" off among them, unless asked for)."""
    for plugin, values in {
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"},
        "@jupyter-widgets/jupyterlab-manager/plugin": {"saveState": save_widget_state},
    }.items():
        path = home / "settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture(name="lab")
def lab_server(tmp_path: Path, request: pytest.FixtureRequest):
    """A JupyterLab server on 127.0.0.1, isolated from the user's settings and started with
    the defaults; yields its URL and token. Parametrized ``{"allow_hidden": True}`` (indirect),
    it serves hidden folders, as a server started with that option does; with
    ``{"save_widget_state": True}``, "Save Widget State Automatically" is on."""
    options = getattr(request, "param", {})
    allow_hidden = options.get("allow_hidden", False)
    port, token = free_port(), secrets.token_hex(16)
    home = tmp_path / "jupyter-home"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    _settings(home, options.get("save_widget_state", False))
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
            *(["--ContentsManager.allow_hidden=True"] if allow_hidden else []),
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
                if http_status(f"{base}/api/status?token={token}") == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "JupyterLab did not start within 60 s"
            time.sleep(0.25)
        yield base, token
    finally:
        try:
            http_status(f"{base}/api/shutdown?token={token}", method="POST")
            server.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
        log.close()


@pytest.fixture(name="page")
def browser_page():
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
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.grant_permissions(["clipboard-read", "clipboard-write"])
            page = context.new_page()
            # Shown with a failing test's output: the widget's own errors land in the console.
            page.on("console", lambda message: print(f"console {message.type}: {message.text}"))
            page.on("pageerror", lambda error: print(f"page error: {error}"))
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def menu(page: Page, *labels: str) -> None:
    """Open the menu bar entry ``labels[0]`` and click down through the rest."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{labels[0]}$")).click()
    for label in labels[1:]:
        item = page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(label)}$"))
        item.click()


def theme(page: Page, name: str, *, light: bool) -> None:
    menu(page, "Settings", "Theme", name)
    expect(page.locator(f"body[data-jp-theme-light='{str(light).lower()}']")).to_have_count(1)
    # JupyterLab covers the page with its splash screen while the new theme loads.
    expect(page.locator("#jupyterlab-splash")).to_have_count(0)


def open_and_run_all(page: Page, url: str) -> None:
    """Open a notebook in JupyterLab once its kernel is idle, and run all its cells."""
    page.goto(url)
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible()
    # Cells run before the kernel is connected would ask for a kernel instead of running.
    expect(page.locator(".jp-StatusBar-Widget", has_text="Python 3")).to_contain_text("Idle")
    # The file browser folded away, as one does to give a notebook the width.
    page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").click()
    expect(page.locator("#jp-left-stack")).to_be_hidden()
    menu(page, "Run", "Run All Cells")


# WCAG 2.1 contrast of each element that shows text (its own text nodes, SVG text, form
# controls) against the colour behind it, found by blending the backgrounds up the tree.
CONTRAST_JS = """
root => {
  const parse = (c) => { const m = c.match(/[\\d.]+/g) || [0, 0, 0, 0];
    return [+m[0], +m[1], +m[2], m.length > 3 ? +m[3] : 1]; };
  const over = (top, bottom) => { const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]); };
  const background = (node) => {
    const layers = [];
    for (let n = node; n && n.nodeType === 1; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let colour = [255, 255, 255, 1];
    for (const layer of layers.reverse()) colour = over(layer, colour);
    return colour;
  };
  const lum = (c) => { const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const found = [];
  for (const node of [root, ...root.querySelectorAll("*")]) {
    if (!node.getClientRects().length) continue;
    const svgText = node.namespaceURI === "http://www.w3.org/2000/svg" && node.tagName === "text";
    const own = [...node.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim());
    const control = ["BUTTON", "SELECT"].includes(node.tagName);
    if (!own && !svgText && !control) continue;
    const style = getComputedStyle(node);
    const back = background(svgText ? node.closest("svg").parentElement : node);
    const fore = over(parse(svgText ? style.fill : style.color), back);
    const [a, b] = [lum(fore), lum(back)].sort((x, y) => y - x);
    found.push({ text: (node.textContent || "").trim().slice(0, 40),
      cls: String(node.className.baseVal ?? node.className),
      ratio: Math.round(((a + 0.05) / (b + 0.05)) * 100) / 100 });
  }
  return found;
}
"""

# Every element of the widget whose content is wider than its box (cut off or scrolled).
OVERFLOW_JS = """
root => [root, ...root.querySelectorAll("*")]
  .filter((n) => n.getClientRects().length && n.scrollWidth > n.clientWidth + 1
    && n.namespaceURI !== "http://www.w3.org/2000/svg")
  .map((n) => `${n.tagName}.${n.className} ${n.scrollWidth}>${n.clientWidth}`)
"""


def low_contrast(root, minimum: float = 4.5) -> list[dict]:
    return [found for found in root.evaluate(CONTRAST_JS) if found["ratio"] < minimum]


def ratio(fore: str, back: str) -> float:
    """WCAG 2.1 contrast of two opaque CSS colours given as ``rgb(r, g, b)``."""

    def luminance(colour: str) -> float:
        channels = [int(v) / 255 for v in re.findall(r"[\d.]+", colour)[:3]]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(fore), luminance(back)), reverse=True)
    return (high + 0.05) / (low + 0.05)
