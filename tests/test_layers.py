"""The package's layers, read from its imports (STYLE.md's layout; issue 14).

Every import of the package is read with ``ast``: at module level and inside functions, relative
ones resolved, ``TYPE_CHECKING`` ones skipped (they never run). The rules that hold are asserted
outright. Where a rule is not true yet, the test names today's exceptions exactly, so a new one
fails it and a removed one makes it fail until the list is shortened: the lists only shrink.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import jupyter_parallelrun

PACKAGE = Path(jupyter_parallelrun.__file__).parent
NAME = "jupyter_parallelrun"

#: The public objects and the code that makes them: what the engine must not import.
API = {
    "abstract_dataset",
    "cli",
    "command_line",
    "compute",
    "conda_dependencies",
    "config",
    "dask_checks",
    "dask_compute",
    "dask_processes",
    "dataset",
    "dataset_factory",
    "dataset_source",
    "datastore",
    "environment",
    "environment_build",
    "environment_check",
    "environment_sections",
    "magics",
    "model",
    "partitioned_copy",
    "pipeline",
    "pipeline_inputs",
    "port_data",
    "run",
    "run_details",
    "step_plan",
    "submission",
    "workspace",
}
#: What the user watches a run with: they only read the run store.
VIEWS = {"widget", "widget_state", "progress", "follow"}
#: What every layer may use: the run store, files and their formats, the entry script's context,
#: the settings' grammar, a Dask cluster's client. They import only one another.
SHARED = {
    "store",
    "store_lease",
    "store_database",
    "metrics",
    "storage",
    "blob_storage",
    "records",
    "column_types",
    "entry_script",
    "input_data",
    "settings",
    "dask_client",
    "step_description",
}

#: (importer, imported) pairs from outside engine/ into it. The API starts the runner (the
#: description it hands over is shared, step_description.py); the rest reach into engine
#: internals, and are still to be moved.
INTO_ENGINE = {
    ("run", "engine.lease"),
    ("submission", "engine.runner_start"),
}
#: Modules the views import besides the store, the shared modules and one another.
VIEWS_TO_OTHERS: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """The ids of nodes under ``if TYPE_CHECKING:``: imports that never run."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(inner) for inner in ast.walk(child))
    return skipped


def import_graph() -> dict[str, set[str]]:
    """Each module of the package (named without the package prefix; the package itself is
    ``""``) and the package modules it imports, anywhere in its code."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith(NAME)]
                targets = [t.removeprefix(NAME).lstrip(".") for t in targets]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".") if package else []
                    base = base[: len(base) - node.level + 1]
                    base = ".".join(base + ([node.module] if node.module else []))
                elif node.module and node.module.startswith(NAME):
                    base = node.module.removeprefix(NAME).lstrip(".")
                else:
                    continue
                # `from . import x` imports the module x when there is one, else a name of base.
                for alias in node.names:
                    sub = f"{base}.{alias.name}".lstrip(".")
                    targets.append(sub if sub in modules else base)
            for target in targets:
                while target not in modules:
                    target = target.rpartition(".")[0]
                if target != name:
                    found.add(target)
        graph[name] = found
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_layer_lists_name_real_modules_and_cover_the_top_level():
    graph = import_graph()
    named = API | VIEWS | SHARED
    assert named <= set(graph), named - set(graph)
    top_level = {m for m in graph if m and "." not in m and m not in {"engine", "demo"}}
    assert top_level <= named, f"put these in a layer: {sorted(top_level - named)}"


def test_the_shared_modules_import_only_one_another():
    graph = import_graph()
    outside = {(m, t) for m in SHARED for t in graph[m] if t not in SHARED}
    assert outside == set()


def test_what_the_engine_imports_from_the_api():
    graph = import_graph()
    found = {
        (m, t) for m in graph if m.startswith("engine") for t in graph[m] if t in API or t in VIEWS
    }
    assert found == set()  # the engine reads the step's description, not the API


def test_what_the_rest_imports_from_the_engine():
    graph = import_graph()
    found = {
        (m, t)
        for m in graph
        if not m.startswith("engine")
        for t in graph[m]
        if t.startswith("engine")
    }
    assert found == INTO_ENGINE


def test_the_views_import_only_the_store_and_one_another():
    graph = import_graph()
    found = {(m, t) for m in VIEWS for t in graph[m] if t not in VIEWS | SHARED}
    assert found == VIEWS_TO_OTHERS


def test_no_import_circle():
    assert _circles(import_graph()) == []


def _worker_imports(tmp_path: Path, mini_batches: list[dict]) -> set[str]:
    """The package modules a real worker process imports to host an entry script and run
    ``mini_batches``, as ``python -X importtime`` lists them (in its stderr, and in its log file
    once it has sent its output there)."""
    from multiprocessing.connection import Listener

    tmp_path.mkdir()
    (tmp_path / "score.py").write_text(
        "def init():\n    pass\n\n\ndef run(mini_batch, mini_batch_context):\n"
        "    return [str(len(mini_batch))]\n"
    )
    log_file = tmp_path / "logs" / "workers" / "w0.txt"
    spec = {
        "incarnation": 0,
        "log_file": str(log_file),
        "source_directory": str(tmp_path),
        "entry_script": "score.py",
        "output_dir": str(tmp_path / "out"),
        "heartbeat_interval": 60,
    }
    authkey = os.urandom(16)
    with Listener(("127.0.0.1", 0), authkey=authkey) as listener:
        arguments = {
            "address": list(listener.address),
            "authkey": authkey.hex(),
            "name": "w0",
            "node_id": 0,
            "spec": spec,
        }
        # A file, not a pipe: nothing reads the worker's stderr while it runs.
        with open(tmp_path / "stderr.txt", "wb") as stderr:
            worker = subprocess.Popen(
                [sys.executable, "-X", "importtime", "-m", f"{NAME}.engine.worker"],
                stdin=subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)},
            )
        try:
            worker.stdin.write(json.dumps(arguments).encode())
            worker.stdin.close()
            with listener.accept() as conn:
                answers = []
                for number, mini_batch in enumerate(mini_batches):
                    conn.send(("mb", number, mini_batch))
                while len([a for a in answers if a[0] in ("done", "error")]) < len(mini_batches):
                    answers.append(conn.recv())
                    assert answers[-1][0] != "init_failed", answers[-1]
                assert [a[0] for a in answers if a[0] in ("done", "error")] == ["done"] * len(
                    mini_batches
                ), answers
                conn.send(("stop",))
                while conn.recv()[0] != "bye":
                    pass
            worker.wait(timeout=60)
        finally:
            worker.kill()
            worker.wait()
    listed = (tmp_path / "stderr.txt").read_text(encoding="utf-8") + log_file.read_text(
        encoding="utf-8"
    )
    modules = set()
    for line in listed.splitlines():
        if line.startswith("import time:") and "|" in line:
            module = line.rsplit("|", 1)[1].strip()
            if module == NAME or module.startswith(NAME + "."):
                modules.add(module.removeprefix(NAME).lstrip("."))
    assert "entry_script" in modules, listed[-2000:]
    return modules


def test_a_worker_imports_neither_datasets_nor_datastores(tmp_path):
    from jupyter_parallelrun.dataset import Dataset
    from jupyter_parallelrun.engine.partition import iter_mini_batches

    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_text("a,b\n1,2\n3,4\n")
    (data / "page.txt").write_text("text")
    files = Dataset.File.from_files(str(data / "*.txt"))
    rows = Dataset.Tabular.from_delimited_files(str(data / "*.csv"))
    # Made as the runner makes them; the worker gets only the plain specs.
    mini_batches = [mb.spec for mb in iter_mini_batches(files, 10)]
    mini_batches += [mb.spec for mb in iter_mini_batches(rows, 1024)]
    imported = _worker_imports(tmp_path / "worker", mini_batches)
    assert {"dataset", "datastore"} & imported == set(), sorted(imported)
