"""Issue 11's hostile inputs and results, each on a real run: a file name that is not UTF-8,
rows holding line breaks, results that are not lists or are short, megabytes of error text,
and one unreadable file among good ones."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import assert_guarantee, file_dataset, output_rows, submit_step

from jupyter_parallelrun import Dataset, Run
from jupyter_parallelrun.widget import widget_state

ODD_NAME = b"img_\xff.png"  # not UTF-8: Python lists it as "img_\udcff.png"
SHOWN = "img_\\udcff.png"  # how the run shows it: escaped

NAMES_SCRIPT = """
import os
import time
from pathlib import Path

def init():
    pass

def run(mini_batch):
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        print("working on", name)  # into the worker's log: must not raise
        if "\\udcff" in name and not Path(os.environ["MARK"]).exists():
            Path(os.environ["MARK"]).touch()
            raise ValueError(f"first try of {name} fails")
        time.sleep(float(os.environ.get("DELAY", "0")))
        rows.append(f"{name}\\t{open(path).read()}")
    return rows
"""


def _odd_inputs(tmp_path: Path, count: int) -> tuple[Path, list[str]]:
    folder = tmp_path / "inputs"
    folder.mkdir()
    for i in range(count):
        (folder / f"item_{i:03d}.txt").write_text(str(i))
    with open(os.path.join(os.fsencode(folder), ODD_NAME), "wb") as odd:
        odd.write(b"odd")
    return folder, [SHOWN] + [f"item_{i:03d}.txt" for i in range(count)]


def _shown_keys(spec: dict) -> list[str]:
    names = (os.path.basename(path) for path in spec["paths"])
    return [name.encode("utf-8", "backslashreplace").decode("utf-8") for name in names]


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_file_name_that_is_not_utf8_is_run_recorded_shown_and_resumed(ws, write_script, tmp_path):
    folder, items = _odd_inputs(tmp_path, 11)
    mark = tmp_path / "failed_once"
    variables = {"MARK": str(mark), "DELAY": "0.2"}
    source = write_script(NAMES_SCRIPT)
    run = submit_step(
        ws,
        source,
        file_dataset(folder),
        mini_batch_size=2,
        process_count_per_node=1,
        environment_variables=variables,
        step_kwargs={"allow_reuse": True},
    )
    _wait_for(lambda: run.get_metrics()["mini_batches_done"] >= 1)
    run.cancel()
    assert run.wait_for_completion(raise_on_error=False) == "Canceled"
    run.resume()
    assert run.wait_for_completion() == "Completed"
    outcome = assert_guarantee(run, items, mini_batch_keys=_shown_keys)
    assert outcome.done == set(items)
    assert f"{SHOWN}\todd" in output_rows(run)

    # Recorded and shown, escaped: the store, the details, the logs, the widget state.
    step = run.get_steps()[0]
    errors = [e for e in run.get_details()["errors"] if "first try" in e["exception"]]
    assert [e["exception"] for e in errors] == [f"ValueError: first try of {SHOWN} fails"]
    assert SHOWN in errors[0]["item"] and SHOWN in errors[0]["traceback"]
    logs = ws.path / "runs" / step.id / "logs"
    assert SHOWN in (logs / "runner.txt").read_text(encoding="utf-8")
    assert SHOWN in (logs / "job_error.txt").read_text(encoding="utf-8")
    assert f"working on {SHOWN}" in (logs / "workers" / "process000.txt").read_text("utf-8")
    # What crosses to the front-end is UTF-8 JSON: it must encode, and show the name.
    state, errors = json.loads(
        json.dumps(widget_state(Run.get(ws, run.id)), ensure_ascii=False).encode("utf-8")
    )
    latest = [e for group in errors[step.id]["groups"] for e in group["latest"]]
    assert any(SHOWN in error["item"] for error in latest)

    # The fingerprint takes the name: the same submission again is reused, not failed.
    again = submit_step(
        ws,
        source,
        file_dataset(folder),
        mini_batch_size=2,
        process_count_per_node=1,
        environment_variables=variables,
        step_kwargs={"allow_reuse": True},
    )
    assert again.wait_for_completion() == "Completed"
    assert again.get_steps()[0]._record["reused_from"] == step.id


ROWS_SCRIPT = """
import os

import pandas as pd

def init():
    pass

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    shape = os.environ["SHAPE"]
    if shape == "lines":
        return [f"{name}\\tfirst line\\nsecond\\r\\nthird" for name in names]
    if shape == "frame":
        return pd.DataFrame({"name": names, "text": ["a\\nb"] * len(names)})
    if shape == "str":
        return "".join(names)
    if shape == "dict":
        return {name: 1 for name in names}
    if shape == "short":
        return [f"{name}\\tok" for name in names[:-1]]
    if shape == "none":
        return [None if name == "item_001.txt" else f"{name}\\tok" for name in names]
"""


def _rows_run(ws, write_script, files, shape, **config):
    return submit_step(
        ws,
        write_script(ROWS_SCRIPT),
        file_dataset(files(9)),
        environment_variables={"SHAPE": shape},
        **config,
    )


def _output_path(run) -> Path:
    step = run.get_steps()[0]
    output = step.get_output_data("scores")
    config = step._record["spec"]["config"]
    return output.datastore.local_path(output.path_on_datastore) / config["append_row_file_name"]


@pytest.mark.parametrize("shape", ["lines", "frame"])
def test_a_row_holding_line_breaks_is_one_line_of_the_output(ws, write_script, files, shape):
    run = _rows_run(ws, write_script, files, shape)
    assert run.wait_for_completion() == "Completed"
    table = pd.read_csv(_output_path(run), sep="\t" if shape == "lines" else " ", header=None)
    assert len(table) == 9
    if shape == "lines":
        assert sorted(table[0]) == [f"item_{i:03d}.txt" for i in range(9)]
        assert set(table[1]) == {"first line\\nsecond\\r\\nthird"}
    else:
        assert set(table[1]) == {"a\\nb"}


@pytest.mark.parametrize(("shape", "kind"), [("str", "a str"), ("dict", "a dict")])
def test_a_result_that_is_not_a_list_fails_its_mini_batch_naming_its_type(
    ws, write_script, files, shape, kind
):
    run = _rows_run(ws, write_script, files, shape, run_max_try=1)
    assert run.wait_for_completion() == "Completed"
    assert output_rows(run) == []  # never one row per character
    metrics = run.get_metrics()
    assert (metrics["items_done"], metrics["items_failed"]) == (0, 9)
    for error in run.get_details()["errors"]:
        assert error["exception"] == (
            f"TypeError: run() returned {kind}; it must return a list (one element per output "
            "row) or a pandas DataFrame"
        )


def test_items_without_a_result_are_in_the_failure_record(ws, write_script, files):
    run = _rows_run(ws, write_script, files, "short")
    assert run.wait_for_completion() == "Completed"
    outcome = assert_guarantee(run, [f"item_{i:03d}.txt" for i in range(9)])
    errors = {e["miniBatch"]: e for e in run.get_details()["errors"]}
    assert len(outcome.mini_batches) == len(errors) == 3
    for mb in outcome.mini_batches:
        n = len(mb["spec"]["paths"])
        note = f"run() returned {n - 1} results for {n} items"
        assert errors[mb["mb_id"]]["exception"].startswith(note)
        assert errors[mb["mb_id"]]["item"].startswith(f"{n} file")  # the mini-batch's inputs
        assert mb["error"].startswith(note) and mb["failed"] == 1


def test_a_none_element_is_no_row_and_a_failed_item(ws, write_script, files):
    run = _rows_run(ws, write_script, files, "none")
    assert run.wait_for_completion() == "Completed"
    outcome = assert_guarantee(run, [f"item_{i:03d}.txt" for i in range(9)])
    assert "None" not in outcome.rows and outcome.failed == {"item_001.txt"}
    (error,) = run.get_details()["errors"]
    assert error["exception"].startswith(
        "run() returned 3 results for 4 items (1 of its elements were None)"
    )
    assert error["item"] == "4 files: item_000.txt, item_001.txt, item_002.txt, …"


HUGE_ERRORS = """
def init():
    pass

def run(mini_batch):
    raise RuntimeError("x" * 5_000_000)
"""


def test_megabytes_of_error_text_are_cut_where_the_run_keeps_them(ws, write_script, files):
    run = submit_step(
        ws,
        write_script(HUGE_ERRORS),
        file_dataset(files(12)),
        mini_batch_size=1,
        run_max_try=1,
    )
    assert run.wait_for_completion() == "Completed"
    errors = run.get_details()["errors"]
    assert len(errors) == 12
    for error in errors:
        assert len(error["exception"]) < 3_000 and len(error["traceback"]) < 8_000
        assert (
            "characters cut; the full text is in the worker's log logs/workers/process00"
            in (error["exception"])
        )
    step = run.get_steps()[0]
    logs = ws.path / "runs" / step.id / "logs"
    assert (logs / "job_error.txt").stat().st_size < 200_000
    assert sum(p.stat().st_size for p in ws.path.glob("store.sqlite*")) < 2_000_000
    assert len(json.dumps(widget_state(Run.get(ws, run.id)))) < 500_000
    worker_logs = sum(p.stat().st_size for p in (logs / "workers").glob("*.txt"))
    assert worker_logs > 12 * 5_000_000  # where the full text is


TABLE_SCRIPT = """
def init():
    pass

def run(mini_batch):
    return [f"{i} {v}" for i, v in zip(mini_batch["id"], mini_batch["value"])]
"""


def test_one_unreadable_file_fails_only_its_own_mini_batches(ws, write_script, tmp_path):
    folder = tmp_path / "tables"
    folder.mkdir()
    for part in range(3):
        frame = pd.DataFrame({"id": range(part * 100, part * 100 + 100), "value": 1})
        frame.to_parquet(folder / f"part_{part}.parquet", row_group_size=25)
    data = (folder / "part_1.parquet").read_bytes()
    (folder / "part_1.parquet").write_bytes(data[: len(data) // 2])  # truncated: no footer
    dataset = Dataset.Tabular.from_parquet_files(path=str(folder / "*.parquet"), validate=False)
    run = submit_step(ws, write_script(TABLE_SCRIPT), dataset, mini_batch_size=1, run_max_try=2)
    assert run.wait_for_completion() == "Completed"
    assert sorted(int(row.split()[0]) for row in output_rows(run)) == [
        *range(0, 100),
        *range(200, 300),
    ]
    metrics = run.get_metrics()
    assert (metrics["items_done"], metrics["items_failed"]) == (200, 1)  # the file, one item
    errors = run.get_details()["errors"]
    assert len(errors) == 2  # both tries
    for error in errors:
        assert error["item"] == "part_1.parquet (unreadable Parquet file)"
        assert "cannot read the parquet file" in error["exception"]
        assert "part_1.parquet" in error["exception"]


def test_one_malformed_csv_file_fails_only_its_own_rows(ws, write_script, tmp_path):
    folder = tmp_path / "tables"
    folder.mkdir()
    (folder / "a.csv").write_text("id,value\n" + "".join(f"{i},1\n" for i in range(50)))
    (folder / "b.csv").write_text("id,value\n1,1\n2,1,extra,fields\n3,1\n")
    dataset = Dataset.Tabular.from_delimited_files(path=str(folder / "*.csv"))
    run = submit_step(ws, write_script(TABLE_SCRIPT), dataset, mini_batch_size="1KB", run_max_try=1)
    assert run.wait_for_completion() == "Completed"
    assert len(output_rows(run)) == 50
    metrics = run.get_metrics()
    assert (metrics["items_done"], metrics["items_failed"]) == (50, 3)
    (error,) = run.get_details()["errors"]
    assert error["item"].startswith("b.csv bytes ")
    assert "cannot read the delimited file" in error["exception"]
    assert "b.csv" in error["exception"]
