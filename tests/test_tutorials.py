"""The tutorial notebooks as JupyterLab sees them, and what they print.

Opening a tutorial in JupyterLab must not mark it modified. Found in a real JupyterLab 4 in
headless Chromium (each tutorial opened, its kernel left to start, the tab's dirty mark read,
then saved and compared): JupyterLab set the kernelspec's ``display_name`` to the started
kernel's own ("Python 3" became "Python 3 (ipykernel)") as soon as the kernel was up, which
marked the notebook modified; with the installed kernelspec's values, the tab stayed clean.
Saved, a tutorial is what Jupyter's contents manager writes (nbformat 4.5 with cell ids,
``nbformat.writes`` and a final newline), except that JavaScript's JSON writes the whole-number
floats of a saved widget state as integers (``0.0`` as ``0``), which does not mark it modified.
These checks hold each tutorial to that, without a browser.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
# "accuracy > 0.85: True" says less than the number it hides.
THRESHOLD_BOOLEAN = re.compile(r"(>|<|above|below)\s*\d+(\.\d+)?\s*:?\s*(True|False)\b")


def test_there_are_tutorials():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_jupyterlab_saves_the_tutorial_as_it_is(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    notebook = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    nbformat.validate(notebook)
    kernelspec = notebook.metadata.kernelspec
    installed = KernelSpecManager().get_kernel_spec(kernelspec["name"])
    assert kernelspec == {
        "name": kernelspec["name"],
        "display_name": installed.display_name,
        "language": installed.language,
    }
    assert (notebook.nbformat, notebook.nbformat_minor) == (4, nbformat.current_nbformat_minor)
    assert all(cell.get("id") for cell in notebook.cells)
    assert text == nbformat.writes(notebook) + "\n"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_tutorials_print_numbers_not_threshold_booleans(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        outputs = "".join(o.get("text", "") for o in cell.get("outputs", []))
        for line in (cell.source + "\n" + outputs).splitlines():
            assert not THRESHOLD_BOOLEAN.search(line), f"{path.name}: {line!r}"
