"""The ``%parallelrun`` magics in a real IPython kernel, as a notebook front-end drives them."""

from __future__ import annotations

import json
import os
import queue
import textwrap
from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT
from jupyter_client.manager import start_new_kernel

WIDGET = "application/vnd.jupyter.widget-view+json"


class Kernel:
    """A real ipykernel; ``execute`` returns the cell's reply and its visible outputs."""

    def __init__(self, cwd: Path) -> None:
        self.manager, self.client = start_new_kernel(
            kernel_name="python3", cwd=str(cwd), env=dict(os.environ)
        )

    def execute(self, code: str, timeout: float = 120) -> tuple[dict, list[dict]]:
        msg_id = self.client.execute(textwrap.dedent(code))
        outputs = []
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no idle from the kernel within {timeout}s") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind in ("display_data", "execute_result", "stream", "error"):
                outputs.append({"output_type": kind, **msg["content"]})
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                break
        while True:
            reply = self.client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"], outputs

    def value(self, expression: str):
        """An expression's value in the kernel, through JSON."""
        reply, outputs = self.execute(f"import json as _j; print(_j.dumps({expression}))")
        assert reply["status"] == "ok", outputs
        return json.loads("".join(o["text"] for o in outputs if o["output_type"] == "stream"))

    def stop(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def widgets(outputs: list[dict]) -> int:
    return sum(WIDGET in o.get("data", {}) for o in outputs)


def text(outputs: list[dict]) -> str:
    return "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "") + o.get("evalue", "")
        for o in outputs
    )


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("magics")
    (folder / "data").mkdir()
    for i in range(6):
        (folder / "data" / f"item_{i:03d}.txt").write_text(str(i))
    (folder / "score.py").write_text(textwrap.dedent(ECHO_SCRIPT))
    kernel = Kernel(folder)
    reply, outputs = kernel.execute(
        """
        from pathlib import Path
        from jupyter_parallelrun import RunDetails, Workspace
        ws = Workspace.create("magics", path=".")
        paths = sorted(str(p) for p in Path("data").glob("*.txt"))
        %load_ext jupyter_parallelrun
        """
    )
    assert reply["status"] == "ok", outputs
    yield kernel
    kernel.stop()


def test_assigned_run_then_show_is_one_widget(kernel):
    reply, outputs = kernel.execute(
        """
        run = %parallelrun score.py --input data --mini-batch-size 3
        RunDetails(run).show()
        run.wait_for_completion()
        """
    )
    assert reply["status"] == "ok", outputs
    assert widgets(outputs) == 1, outputs
    assert "submitted run score_" in text(outputs)


def test_a_run_as_the_cells_value_is_its_widget(kernel):
    reply, outputs = kernel.execute("%parallelrun score.py --input data --no-reuse --wait")
    assert reply["status"] == "ok", outputs
    assert widgets(outputs) == 1, outputs
    # shown as RunDetails(run).show() shows it: with a display id, so the text a saved
    # notebook keeps is brought up to date at the run's end
    (view,) = [o for o in outputs if WIDGET in o.get("data", {})]
    assert view["output_type"] == "display_data" and view["transient"]["display_id"]
    assert "Completed" in view["data"]["text/plain"]
    assert kernel.value("_.get_status()") == "Completed"  # still the cell's value


def test_cell_keeps_its_run_in_out_name_and_is_named_after_its_function(kernel):
    reply, outputs = kernel.execute(
        """
        %%parallelrun -o kept --input $paths --mini-batch-size 2 --wait
        import os

        def init():
            pass

        def count_words(path):
            return len(open(path).read().split())

        def run(mini_batch):
            return [f"{os.path.basename(p)} {count_words(p)}" for p in mini_batch]
        """
    )
    assert reply["status"] == "ok", outputs
    assert widgets(outputs) == 1, outputs
    assert kernel.value("[kept.get_status(), kept.get_steps()[0].name, kept.id == _.id]") == [
        "Completed",
        "count-words",
        True,
    ]


def test_a_cell_without_other_functions_is_named_from_its_hash(kernel):
    reply, outputs = kernel.execute(
        "%%parallelrun -o plain --input $paths --wait\n" + textwrap.dedent(ECHO_SCRIPT)
    )
    assert reply["status"] == "ok", outputs
    name = kernel.value("plain.get_steps()[0].name")
    assert name.startswith("cell-") and len(name) == len("cell-") + 8 and name != "cell-script"


def test_a_failed_cell_fails_and_keeps_no_earlier_run(kernel):
    reply, outputs = kernel.execute(
        "%%parallelrun -o kept --input $paths --wait\n" + textwrap.dedent(ECHO_SCRIPT)
    )
    assert reply["status"] == "ok", outputs
    before = kernel.value("_.id")
    reply, outputs = kernel.execute(
        "%%parallelrun -o kept --input $no_such_variable\n" + textwrap.dedent(ECHO_SCRIPT)
    )
    assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
    assert "no variable 'no_such_variable'" in reply["evalue"]
    assert "kept is not set" in reply["evalue"]
    assert widgets(outputs) == 0
    assert kernel.value("'kept' in globals()") is False
    # As after any failed cell, `_` is the last value shown; the cell failing (and stopping
    # Run All) is what keeps a following cell from taking it for this run.
    assert kernel.value("_.id") == before


def test_braces_and_dollars_expand_in_every_argument(kernel):
    line = (
        '--input "{folder}/*.txt" --mini-batch-size {size // 2} --experiment $experiment'
        " --name {experiment}-step --wait"
    )
    reply, outputs = kernel.execute(
        'folder, size, experiment = "data", 4, "expanded"\n'
        f"run = %parallelrun score.py {line}\n"
        "step = run.get_steps()[0]\n"
        'print(step._record["spec"]["config"]["mini_batch_size"], step.name, run.experiment.name)'
    )
    assert reply["status"] == "ok", outputs
    assert "2 expanded-step expanded" in text(outputs)
    # an object held in a variable is passed whole, under either spelling
    reply, outputs = kernel.execute("%parallelrun show {run}")
    assert reply["status"] == "ok" and "6 items done" in text(outputs), outputs
    reply, outputs = kernel.execute("%parallelrun -o listed score.py --input {paths} --wait")
    assert reply["status"] == "ok" and "6 items done" in text(outputs), outputs
    assert kernel.value("listed.get_steps()[0].get_metrics()['items_done']") == 6


def test_cancel_of_a_finished_run_says_it_finished(kernel):
    reply, outputs = kernel.execute(
        """
        finished = %parallelrun score.py --input data --wait --no-reuse
        %parallelrun cancel $finished
        """
    )
    assert reply["status"] == "ok", outputs
    assert "already finished: Completed" in text(outputs)
    assert "cancel requested" not in text(outputs)
