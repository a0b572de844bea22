"""End-to-end step runs with real runner and worker processes."""

from __future__ import annotations

import os
import time

import pytest
from conftest import ECHO_SCRIPT, assert_guarantee, file_dataset, output_rows, submit_step

from jupyter_parallelrun import ActivityFailedException, Run


def _names(count: int) -> list[str]:
    return [f"item_{i:03d}.txt" for i in range(count)]


def test_append_row_has_every_item_once(ws, write_script, files):
    run = submit_step(ws, write_script(ECHO_SCRIPT), file_dataset(files(25)), mini_batch_size=4)
    assert run.wait_for_completion() == "Completed"
    rows = output_rows(run)
    assert sorted(rows) == [f"item_{i:03d}.txt {i}" for i in range(25)]
    assert_guarantee(run, _names(25), row_key=lambda row: row.split(" ")[0])
    metrics = run.get_metrics()
    assert metrics["items_done"] == 25 and metrics["items_failed"] == 0
    assert metrics["mini_batches_done"] == 7 and metrics["mini_batches_total"] == 7
    assert metrics["processes"] == 2


def test_summary_only_counts_without_output_file(ws, write_script, files):
    run = submit_step(
        ws, write_script(ECHO_SCRIPT), file_dataset(files(9)), output_action="summary_only"
    )
    run.wait_for_completion()
    assert output_rows(run) == []
    assert run.get_metrics()["items_done"] == 9


def test_partial_results_count_failed_items(ws, write_script, files):
    script = write_script(
        """
        def init():
            pass

        def run(mini_batch):
            return [p for p in mini_batch if not p.endswith(("3.txt", "7.txt"))]
        """
    )
    run = submit_step(ws, script, file_dataset(files(10)), mini_batch_size=5)
    run.wait_for_completion()
    metrics = run.get_metrics()
    assert (metrics["items_done"], metrics["items_failed"]) == (8, 2)
    assert metrics["mini_batches_failed"] == 0


RAISE_ON_FIVE = """
def init():
    pass

def run(mini_batch):
    if any(p.endswith("item_005.txt") for p in mini_batch):
        raise ValueError("cannot score item_005")
    return [p for p in mini_batch]
"""


def test_failing_mini_batch_is_retried_then_counted(ws, write_script, files):
    run = submit_step(
        ws, write_script(RAISE_ON_FIVE), file_dataset(files(12)), mini_batch_size=2, run_max_try=3
    )
    assert run.wait_for_completion() == "Completed"
    metrics = run.get_metrics()
    assert (metrics["items_done"], metrics["items_failed"]) == (10, 2)
    assert (metrics["mini_batches_failed"], metrics["retries"]) == (1, 2)
    step = run.find_step_run("score-step")[0]
    errors = ws.store.errors(step.id)
    assert len(errors) == 3 and {e["try"] for e in errors} == {1, 2, 3}
    assert all("ValueError: cannot score item_005" in e["exception"] for e in errors)
    assert "raise ValueError" in errors[0]["traceback"]
    assert "item_005.txt" in errors[0]["item"]
    assert len(output_rows(run)) == 10
    assert_guarantee(run, _names(12), row_key=os.path.basename)


def test_error_threshold_exceeded_fails_and_keeps_rows(ws, write_script, files):
    run = submit_step(
        ws,
        write_script(RAISE_ON_FIVE),
        file_dataset(files(40)),
        mini_batch_size=2,
        run_max_try=1,
        error_threshold=1,
        process_count_per_node=1,
    )
    with pytest.raises(ActivityFailedException, match="error_threshold=1 exceeded"):
        run.wait_for_completion()
    assert run.get_status() == "Failed"
    step = run.find_step_run("score-step")[0]
    assert (
        "error_threshold=1 exceeded: 2 input items failed" in step.get_details()["error"]["message"]
    )
    done = run.get_metrics()["items_done"]
    assert len(output_rows(run)) == done
    assert_guarantee(run, _names(40), row_key=os.path.basename)


def test_allowed_failed_count_and_percent(ws, write_script, files):
    data = file_dataset(files(10))
    script = write_script(RAISE_ON_FIVE)
    tolerant = submit_step(
        ws, script, data, mini_batch_size=1, run_max_try=1, allowed_failed_count=1
    )
    assert tolerant.wait_for_completion() == "Completed"
    strict = submit_step(ws, script, data, mini_batch_size=1, run_max_try=1, allowed_failed_count=0)
    with pytest.raises(ActivityFailedException, match="allowed_failed_count=0 exceeded"):
        strict.wait_for_completion()
    percent = submit_step(
        ws, script, data, mini_batch_size=1, run_max_try=1, allowed_failed_percent=5
    )
    with pytest.raises(ActivityFailedException, match="allowed_failed_percent=5"):
        percent.wait_for_completion()


def test_stuck_run_is_stopped_and_retried(ws, write_script, files):
    script = write_script(
        """
        import time

        def init():
            pass

        def run(mini_batch):
            if any(p.endswith("item_002.txt") for p in mini_batch):
                time.sleep(600)
            return list(mini_batch)
        """
    )
    run = submit_step(
        ws,
        script,
        file_dataset(files(6)),
        mini_batch_size=1,
        run_invocation_timeout=1,
        run_max_try=2,
    )
    # A call that ran its course would take 600 s a try: completing within the wait, with
    # item_002 failed, means both of its tries were stopped at the limit.
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    metrics = run.get_metrics()
    assert (metrics["items_done"], metrics["items_failed"]) == (5, 1)
    step = run.find_step_run("score-step")[0]
    errors = ws.store.errors(step.id)
    assert [e["try"] for e in sorted(errors, key=lambda e: e["try"])] == [1, 2]
    assert all("run_invocation_timeout=1s" in e["exception"] for e in errors)
    assert sum(w["restarts"] for w in ws.store.workers(step.id)) == 2
    assert_guarantee(run, _names(6), row_key=os.path.basename)


def test_failing_init_fails_the_run_with_its_traceback(ws, write_script, files):
    script = write_script(
        """
        def init():
            raise RuntimeError("model file is missing")

        def run(mini_batch):
            return mini_batch
        """
    )
    run = submit_step(ws, script, file_dataset(files(4)))
    with pytest.raises(ActivityFailedException, match="model file is missing"):
        run.wait_for_completion(timeout_seconds=60)
    step = run.find_step_run("score-step")[0]
    errors = ws.store.errors(step.id)
    assert errors and 'raise RuntimeError("model file is missing")' in errors[0]["traceback"]
    assert "no worker process could start" in step.get_details()["error"]["message"]
    assert assert_guarantee(run, _names(4)).rows == []


def test_nodes_processes_environment_arguments_and_entry_script(ws, write_script, files):
    script = write_script(
        """
        import argparse, os, sys
        from jupyter_parallelrun import EntryScript

        def init():
            global args
            parser = argparse.ArgumentParser()
            parser.add_argument("--scale", type=int)
            args, _ = parser.parse_known_args()
            EntryScript().logger.info("init of %s", EntryScript().process_name)
            print("printed from init")

        def run(mini_batch):
            e = EntryScript()
            return [
                f"{os.path.basename(p)} {e.node_id} {e.process_name} "
                f"{os.environ['GREETING']} {os.environ['OMP_NUM_THREADS']} {args.scale}"
                for p in mini_batch
            ]
        """
    )
    run = submit_step(
        ws,
        script,
        file_dataset(files(16)),
        mini_batch_size=1,
        node_count=2,
        process_count_per_node=2,
        environment_variables={"GREETING": "hello"},
        step_kwargs={"arguments": ["--scale", 3]},
    )
    run.wait_for_completion()
    rows = [row.split() for row in output_rows(run)]
    assert len(rows) == 16
    assert {r[1] for r in rows} <= {"0", "1"}
    assert {r[3:] for r in map(tuple, rows)} == {("hello", "1", "3")}
    step = run.find_step_run("score-step")[0]
    workers = ws.store.workers(step.id)
    assert [(w["name"], w["node_id"]) for w in workers] == [
        ("process000", 0),
        ("process001", 0),
        ("process002", 1),
        ("process003", 1),
    ]
    busy = next(w["name"] for w in workers if w["done"])
    log = (ws.path / "runs" / step.id / "logs" / "workers" / f"{busy}.txt").read_text()
    assert f"init of {busy}" in log and "printed from init" in log


def test_empty_input_completes_with_zero_items(ws, write_script, tmp_path):
    from jupyter_parallelrun import Dataset

    (tmp_path / "empty").mkdir()
    data = Dataset.File.from_files(path=str(tmp_path / "empty"), validate=False)
    run = submit_step(ws, write_script(ECHO_SCRIPT), data)
    assert run.wait_for_completion(timeout_seconds=60) == "Completed"
    assert run.get_metrics()["items_total"] == 0


def test_run_is_found_again_from_its_id(ws, write_script, files):
    run = submit_step(ws, write_script(ECHO_SCRIPT), file_dataset(files(3)))
    run.wait_for_completion()
    again = Run.get(ws, run.id)
    assert again.get_status() == "Completed"
    assert [r.id for r in again.experiment.get_runs()] == [run.id]
    step = Run.get(ws, run.find_step_run("score-step")[0].id)
    names = step.get_file_names()
    for log in (
        "logs/job_result.txt",
        "logs/job_progress_overview.txt",
        "logs/mini_batches.jsonl",
        "logs/job_error.txt",
    ):
        assert log in names
    assert any(name.startswith("logs/workers/process00") for name in names)
    assert "Completed" in (ws.path / "runs" / step.id / "logs" / "job_result.txt").read_text()


def test_a_runner_killed_mid_run_fails_the_run_and_resumes_exactly_once(ws, write_script, files):
    import signal

    script = write_script(
        """
        import time

        def init():
            pass

        def run(mini_batch):
            time.sleep(0.5)
            return mini_batch
        """
    )
    run = submit_step(ws, script, file_dataset(files(20)), mini_batch_size=1)
    deadline = time.time() + 30
    while run.get_metrics()["mini_batches_done"] == 0 and time.time() < deadline:
        time.sleep(0.1)
    os.kill(ws.store.get_run(run.id)["runner_pid"], signal.SIGKILL)
    with pytest.raises(ActivityFailedException, match="runner process .* ended"):
        run.wait_for_completion(timeout_seconds=30)
    assert all(step.get_status() == "Failed" for step in run.get_steps())
    committed = run.get_metrics()["items_done"]
    assert 0 < committed == len(output_rows(run))
    assert_guarantee(run, _names(20), row_key=os.path.basename)

    run.resume()
    assert run.wait_for_completion(timeout_seconds=60) == "Completed"
    rows = output_rows(run)
    assert sorted(rows) == sorted(set(rows)) and len(rows) == 20
    step = run.find_step_run("score-step")[0]
    assert len(ws.store.mini_batches(step.id)) == 20
    assert_guarantee(run, _names(20), row_key=os.path.basename)


LOGGING_SCRIPT = """
import logging
import time

def init():
    pass

def run(mini_batch):
    logging.getLogger("score").debug("debug line")
    logging.getLogger("score").warning("warning line")
    time.sleep(0.3)
    return mini_batch
"""


def test_logging_level_and_resource_monitor_interval(ws, write_script, files):
    script = write_script(LOGGING_SCRIPT)
    data = file_dataset(files(6))
    quiet = submit_step(
        ws,
        script,
        data,
        logging_level="WARNING",
        resource_monitor_interval=0.1,
        process_count_per_node=1,
        mini_batch_size=1,
    )
    quiet.wait_for_completion()
    step = quiet.find_step_run("score-step")[0]
    log = (ws.path / "runs" / step.id / "logs" / "workers" / "process000.txt").read_text()
    assert "warning line" in log and "debug line" not in log
    (worker,) = ws.store.workers(step.id)
    assert worker["rss"] > 10_000_000 and worker["cpu"] > 0
    loud = submit_step(ws, script, data, logging_level="DEBUG", process_count_per_node=1)
    loud.wait_for_completion()
    step = loud.find_step_run("score-step")[0]
    assert (
        "debug line"
        in (ws.path / "runs" / step.id / "logs" / "workers" / "process000.txt").read_text()
    )


def test_progress_update_timeout_fails_a_stuck_job(ws, write_script, files):
    script = write_script(
        """
        import time

        def init():
            pass

        def run(mini_batch):
            time.sleep(30)
            return mini_batch
        """
    )
    run = submit_step(
        ws, script, file_dataset(files(2)), progress_update_timeout=1, run_invocation_timeout=60
    )
    with pytest.raises(ActivityFailedException, match="progress_update_timeout=1s"):
        run.wait_for_completion(timeout_seconds=30)


def test_a_worker_that_dies_mid_mini_batch_is_replaced_and_the_batch_retried(
    ws, write_script, files, tmp_path
):
    marker = tmp_path / "died_once"
    script = write_script(
        f"""
        import os, signal

        def init():
            pass

        def run(mini_batch):
            if any(p.endswith("item_003.txt") for p in mini_batch) and not os.path.exists(
                {str(marker)!r}
            ):
                open({str(marker)!r}, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            return mini_batch
        """
    )
    run = submit_step(ws, script, file_dataset(files(8)), mini_batch_size=1, run_max_try=2)
    assert run.wait_for_completion(timeout_seconds=60) == "Completed"
    assert run.get_metrics()["items_done"] == 8 and len(output_rows(run)) == 8
    step = run.find_step_run("score-step")[0]
    (error,) = ws.store.errors(step.id)
    assert "killed by signal 9" in error["exception"] and "item_003" in error["item"]
    assert sum(w["restarts"] for w in ws.store.workers(step.id)) == 1
    assert_guarantee(run, _names(8), row_key=os.path.basename)


def test_first_task_creation_timeout_fails_a_hanging_init(ws, write_script, files):
    script = write_script(
        """
        import time

        def init():
            time.sleep(60)

        def run(mini_batch):
            return mini_batch
        """
    )
    run = submit_step(ws, script, file_dataset(files(2)), first_task_creation_timeout=1)
    with pytest.raises(ActivityFailedException, match="first_task_creation_timeout=1s"):
        run.wait_for_completion(timeout_seconds=30)
    assert assert_guarantee(run, _names(2)).rows == []


def test_task_overhead_timeout_adds_to_the_call_limit(ws, write_script, files):
    script = write_script(
        """
        import time

        def init():
            pass

        def run(mini_batch):
            time.sleep(1.5)
            return mini_batch
        """
    )
    data = file_dataset(files(1))
    ok = submit_step(ws, script, data, run_invocation_timeout=1, task_overhead_timeout=2)
    assert ok.wait_for_completion(timeout_seconds=30) == "Completed"
    assert ok.get_metrics()["items_done"] == 1
    short = submit_step(ws, script, data, run_invocation_timeout=1, run_max_try=1)
    short.wait_for_completion(timeout_seconds=30)
    step = short.find_step_run("score-step")[0]
    assert "run_invocation_timeout=1s" in ws.store.errors(step.id)[0]["exception"]


def test_cancel_stops_workers_promptly_and_keeps_committed_rows(ws, write_script, files):
    script = write_script(
        """
        import time

        def init():
            pass

        def run(mini_batch):
            # The first four items finish; every later call would outlast the test (with
            # run_invocation_timeout=600), so the run ends only by its workers being stopped
            # mid-call: promptly, not when their calls are done.
            if not any(p.endswith(f"item_00{i}.txt") for p in mini_batch for i in range(4)):
                time.sleep(600)
            time.sleep(0.3)
            return mini_batch
        """
    )
    run = submit_step(
        ws, script, file_dataset(files(60)), mini_batch_size=1, run_invocation_timeout=600
    )
    deadline = time.time() + 60
    while run.get_metrics()["mini_batches_done"] < 2:
        assert time.time() < deadline, "no two mini-batches done"
        time.sleep(0.05)
    run.cancel()
    with pytest.raises(ActivityFailedException, match="Canceled"):
        run.wait_for_completion(timeout_seconds=120)
    step = run.find_step_run("score-step")[0]
    assert step.get_status() == "Canceled"
    workers = ws.store.workers(step.id)
    assert all(w["state"] == "stopped" for w in workers)
    for worker in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(worker["pid"], 0)
    done = run.get_metrics()["items_done"]
    assert 2 <= done <= 4 and len(output_rows(run)) == done
    assert_guarantee(run, _names(60), row_key=os.path.basename)


def test_odd_file_names_and_unreadable_files_are_counted_not_fatal(ws, write_script, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    for name in ("with space.txt", "ünïcödé.txt", "<b>bold<-b>.txt", "fine.txt"):
        (folder / name).write_text("7")
    (folder / "empty.txt").write_text("")
    script = write_script(
        """
        import os
        from jupyter_parallelrun import EntryScript

        def init():
            pass

        def run(mini_batch):
            rows = []
            for path in mini_batch:
                try:
                    rows.append(f"{os.path.basename(path)}|{int(open(path).read())}")
                except ValueError as error:
                    EntryScript().logger.warning("skipped %s: %s", path, error)
            return rows
        """
    )
    run = submit_step(ws, script, file_dataset(folder), mini_batch_size=2)
    assert run.wait_for_completion() == "Completed"
    assert sorted(output_rows(run)) == sorted(
        f"{name}|7" for name in ("with space.txt", "ünïcödé.txt", "<b>bold<-b>.txt", "fine.txt")
    )
    metrics = run.get_metrics()
    assert (metrics["items_done"], metrics["items_failed"]) == (4, 1)
    names = ["with space.txt", "ünïcödé.txt", "<b>bold<-b>.txt", "fine.txt", "empty.txt"]
    assert assert_guarantee(run, names, row_key=lambda row: row.split("|")[0]).failed == {
        "empty.txt"
    }


THREADS = """
import os
import threading

def init():
    pass

def run(mini_batch):
    names = ",".join(sorted(t.name for t in threading.enumerate()))
    return [f"{os.path.basename(p)}\\t{names}" for p in mini_batch]
"""


def test_a_worker_over_local_files_reads_its_messages_on_its_own_thread(ws, write_script, files):
    # The reader thread is for downloading blob files ahead of run() (test_blob.py): over
    # local files it only took the interpreter's lock from run() at every message.
    run = submit_step(ws, write_script(THREADS), file_dataset(files(6)), mini_batch_size=1)
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    rows = output_rows(run)
    assert len(rows) == 6
    assert all("MainThread" in row and "inbox" not in row for row in rows), rows
