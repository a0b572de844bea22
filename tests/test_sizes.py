"""Sizes that keep the code readable (STYLE.md; issue 14): every module of the package under
400 lines, every function in ``engine/`` under 60. A module or function that grows past them
is split by what it does, not trimmed of its comments."""

from __future__ import annotations

import ast
from pathlib import Path

import jupyter_parallelrun

PACKAGE = Path(jupyter_parallelrun.__file__).parent
MAX_MODULE_LINES = 400
MAX_ENGINE_FUNCTION_LINES = 60


def test_every_module_is_under_400_lines():
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) >= MAX_MODULE_LINES
    }
    assert long == {}


def test_every_function_in_the_engine_is_under_60_lines():
    long = {}
    for path in sorted((PACKAGE / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines >= MAX_ENGINE_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.name}"] = lines
    assert long == {}
