"""One grammar per setting, at all four front doors (issue 14).

One table of values, good and bad, for every setting. For each row, the four front doors agree:
ParallelRunConfig (with the checks submit() makes before it stores anything), ``parallelrun
submit``, ``%parallelrun``, and the engine reading the step as the store holds it. Each accepts
the row as the same value or refuses it with the same message.

The command line and the magic take a row as the words a user would type. A row whose value
has no such words (a list, a dict, None, a str that reads as a number) goes only to
ParallelRunConfig and the engine. Each text door parses the row, builds its pipeline and has
submit's plan made from it, all as its submit verb does. A refused row also goes through the
whole door: it exits 2, or raises the magic's UsageError, and leaves no run. One real
submission through each text door then shows that the stored step holds what ParallelRunConfig
holds for the same values.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ECHO_SCRIPT

from jupyter_parallelrun import (
    Dataset,
    ParallelRunConfig,
    ParallelRunStep,
    Pipeline,
    PipelineData,
    Workspace,
)
from jupyter_parallelrun.cli import main, step_pipeline
from jupyter_parallelrun.command_line import CONFIG_FLAGS, parse
from jupyter_parallelrun.engine.partition import iter_mini_batches
from jupyter_parallelrun.magics import expand
from jupyter_parallelrun.settings import PARSERS, Settings, from_text
from jupyter_parallelrun.step_description import StepDescription
from jupyter_parallelrun.step_plan import make_plan

#: The words that give a setting on the command line, by setting.
FLAGS = {dest: flag for flag, dest, _, _ in CONFIG_FLAGS if dest in PARSERS}
del FLAGS["preserve_order"]  # a switch, --preserve-order or --no-preserve-order
FLAGS["partition_keys"] = "--partition-keys"
FLAGS["environment_variables"] = "--env"  # NAME=VALUE, repeatable
TYPED = object()  # a row's words are its value's own text


@dataclass(frozen=True)
class Row:
    setting: str
    value: Any
    kept: Any = None
    error: type[Exception] | None = None
    message: str = ""
    tabular: bool = False
    text: Any = TYPED

    def words(self) -> list[str] | None:
        """The command-line words of the row, or None when it has none."""
        if self.setting == "preserve_order":
            if not isinstance(self.value, bool):
                return None
            return ["--preserve-order" if self.value else "--no-preserve-order"]
        if self.setting not in FLAGS:
            return None
        if self.text is not TYPED:
            return None if self.text is None else [FLAGS[self.setting], self.text]
        if isinstance(self.value, bool) or not isinstance(self.value, int | float | str):
            return None
        text = self.value if isinstance(self.value, str) else repr(self.value)
        read = from_text(self.setting, text)
        return [FLAGS[self.setting], text] if same(read, self.value) else None


def same(a: Any, b: Any) -> bool:
    """Equal and of one type; NaN is the same as NaN."""
    if type(a) is not type(b):
        return False
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def good(setting: str, value: Any, kept: Any = TYPED, **kw: Any) -> Row:
    return Row(setting, value, kept=value if kept is TYPED else kept, **kw)


def bad(setting: str, value: Any, error: type[Exception], rule: str, **kw: Any) -> Row:
    """A row every door refuses with ``{setting} must be {rule}; got {value!r}``."""
    shown = kw.pop("shown", repr(value))
    return Row(setting, value, error=error, message=f"{setting} must be {rule}; got {shown}", **kw)


def size(value: str) -> dict[str, Any]:
    return {"shown": f'"{value}"'}


SIZE = 'a positive int or a size like "10MB" for tabular input'
FILES = 'a positive number of files (an int or a digit string like "5") for file input'
INT_1, INT_MINUS_1 = "an int >= 1", "an int >= -1"
ABOVE_0, FROM_0, FROM_1 = "a finite number > 0", "a finite number >= 0", "a finite number >= 1"
ACTIONS = "one of 'append_row', 'summary_only'"
LEVELS = "one of 'WARNING', 'INFO', 'DEBUG', 'ERROR', 'CRITICAL'"
FILE_NAME = "a bare file name (no '/', '\\\\' or NUL, not '.' or '..', at most 255 bytes)"
LONG_NAME = "x" * 251 + ".txt"  # 255 bytes: the longest file name there may be
KEYS = "a list of non-empty strings"
VARIABLES = "a dict of strings to strings (a name not empty, without '='; no NUL)"

# fmt: off
ROWS = [
    good("mini_batch_size", 5),
    good("mini_batch_size", "5"),
    good("mini_batch_size", None),
    good("mini_batch_size", "10MB", tabular=True),
    good("mini_batch_size", " 1GB ", "1GB", tabular=True),
    good("mini_batch_size", "2kb", tabular=True),
    good("mini_batch_size", "1024", tabular=True),
    # Azure's grammar: KB, MB and GB only (see settings.py); the engine once took these two.
    bad("mini_batch_size", "512B", ValueError, SIZE, tabular=True, **size("512B")),
    bad("mini_batch_size", "1TB", ValueError, SIZE, tabular=True, **size("1TB")),
    bad("mini_batch_size", "10MB", ValueError, FILES, **size("10MB")),
    bad("mini_batch_size", "1.5MB", ValueError, SIZE, tabular=True, **size("1.5MB")),
    bad("mini_batch_size", "abc", ValueError, SIZE, **size("abc")),
    bad("mini_batch_size", "", ValueError, SIZE, **size("")),
    bad("mini_batch_size", "0", ValueError, SIZE, **size("0")),
    bad("mini_batch_size", 0, ValueError, SIZE),
    bad("mini_batch_size", 2.5, TypeError, SIZE),
    good("error_threshold", 10),
    good("error_threshold", -1),
    bad("error_threshold", -2, ValueError, INT_MINUS_1),
    bad("error_threshold", 1.5, TypeError, INT_MINUS_1),
    bad("error_threshold", "x", TypeError, INT_MINUS_1),
    good("output_action", "summary_only"),
    good("output_action", "SUMMARY_ONLY", "summary_only"),
    bad("output_action", "append", ValueError, ACTIONS),
    bad("output_action", 1, TypeError, ACTIONS),
    good("append_row_file_name", "rows.csv"),
    good("append_row_file_name", "", "parallel_run_step.txt"),
    good("append_row_file_name", LONG_NAME),
    bad("append_row_file_name", "out/rows.txt", ValueError, FILE_NAME),
    bad("append_row_file_name", "..", ValueError, FILE_NAME),
    bad("append_row_file_name", "x" + LONG_NAME, ValueError, FILE_NAME,
        shown=f"{('x' + LONG_NAME)[:40]!r}... (256 characters)"),
    good("node_count", 2),
    bad("node_count", 0, ValueError, INT_1),
    bad("node_count", "abc", TypeError, INT_1),
    bad("node_count", 1.5, TypeError, INT_1),
    bad("node_count", True, TypeError, INT_1),
    good("process_count_per_node", 4),
    good("process_count_per_node", None, 1),
    bad("process_count_per_node", 0, ValueError, INT_1),
    good("logging_level", "debug", "DEBUG"),
    good("logging_level", "WARNING"),
    bad("logging_level", "LOUD", ValueError, LEVELS),
    bad("logging_level", 10, TypeError, LEVELS),
    good("run_invocation_timeout", 0.5),
    good("run_invocation_timeout", 600),
    bad("run_invocation_timeout", 0, ValueError, ABOVE_0),
    bad("run_invocation_timeout", math.nan, ValueError, ABOVE_0),
    bad("run_invocation_timeout", math.inf, ValueError, ABOVE_0),
    bad("run_invocation_timeout", "soon", TypeError, ABOVE_0),
    good("run_max_try", 1),
    good("run_max_try", 5),
    bad("run_max_try", 0, ValueError, INT_1),
    bad("run_max_try", 2.5, TypeError, INT_1),
    good("allowed_failed_count", 2),
    good("allowed_failed_count", None),
    bad("allowed_failed_count", -2, ValueError, INT_MINUS_1),
    good("allowed_failed_percent", 12.5),
    good("allowed_failed_percent", 0),
    bad("allowed_failed_percent", 101, ValueError, "a number from 0 to 100"),
    bad("allowed_failed_percent", "5", TypeError, "a number from 0 to 100"),
    good("partition_keys", ["region", "day"], tabular=True, text="region,day"),
    good("partition_keys", None, tabular=True),
    bad("partition_keys", ["region", ""], ValueError, KEYS, tabular=True, text="region,"),
    bad("partition_keys", [], ValueError, KEYS, tabular=True),
    bad("partition_keys", "region", TypeError, KEYS, tabular=True, text=None),
    good("environment_variables", {"A": "1"}, text="A=1"),
    good("environment_variables", {"QUERY": "a=b"}, text="QUERY=a=b"),
    good("environment_variables", {"EMPTY": ""}, text="EMPTY="),
    good("environment_variables", None, {}),
    bad("environment_variables", {"A": 1}, TypeError, VARIABLES),
    bad("environment_variables", ["A"], TypeError, VARIABLES),
    # A worker's start would refuse these names: refused before any worker starts.
    bad("environment_variables", {"": "x"}, ValueError, VARIABLES),
    bad("environment_variables", {"A=B": "x"}, ValueError, VARIABLES),
    bad("environment_variables", {"A": "x\0y"}, ValueError, VARIABLES),
    good("progress_update_timeout", 30),
    good("progress_update_timeout", None),
    bad("progress_update_timeout", -1, ValueError, ABOVE_0),
    good("first_task_creation_timeout", 1.5),
    good("first_task_creation_timeout", None),
    bad("first_task_creation_timeout", 0, ValueError, ABOVE_0),
    good("task_overhead_timeout", 2),
    bad("task_overhead_timeout", "1", TypeError, ABOVE_0),
    bad("task_overhead_timeout", -1, ValueError, ABOVE_0),
    good("resource_monitor_interval", 0),
    good("resource_monitor_interval", 5.5),
    bad("resource_monitor_interval", -1, ValueError, FROM_0),
    good("heartbeat_timeout", 1),
    good("heartbeat_timeout", 90.5),
    bad("heartbeat_timeout", 0, ValueError, FROM_1),
    bad("heartbeat_timeout", 1e-9, ValueError, FROM_1),
    good("preserve_order", True),
    good("preserve_order", False),
    bad("preserve_order", 1, TypeError, "True or False"),
]
# fmt: on


@dataclass
class Doors:
    """What every door of one workspace needs: its inputs and its script."""

    ws: Workspace
    folder: Path
    script: Path

    def input_of(self, tabular: bool) -> str:
        return str(self.folder / ("table.csv" if tabular else "files"))

    def dataset(self, tabular: bool) -> Any:
        if tabular:
            return Dataset.Tabular.from_delimited_files(self.input_of(True))
        return Dataset.File.from_files(self.input_of(False))


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Doors:
    folder = tmp_path_factory.mktemp("doors")
    (folder / "files").mkdir()
    for i in range(3):
        (folder / "files" / f"item_{i}.txt").write_text(str(i))
    (folder / "table.csv").write_text("region,day,value\nnorth,1,2.5\nsouth,2,3.5\n")
    (folder / "src").mkdir()
    (folder / "src" / "score.py").write_text(ECHO_SCRIPT)
    return Doors(Workspace.create("doors", path=folder / "ws"), folder, folder / "src" / "score.py")


def outcome(do: Any) -> tuple:
    """``("kept", what do() returns)``, or ``("refused", type, message)``."""
    try:
        return ("kept", do())
    except (TypeError, ValueError) as error:
        return ("refused", type(error), str(error))


def plan_step(doors: Doors, pipeline: Pipeline) -> dict:
    """The step submit() would store for ``pipeline``: its checks all made, nothing stored."""
    return make_plan(doors.ws, pipeline, None, "doors_run", "doors").steps[0].to_json()


def api_pipeline(doors: Doors, row: Row, **settings: Any) -> Pipeline:
    config = ParallelRunConfig(
        source_directory=str(doors.script.parent), entry_script="score.py", **settings
    )
    step = ParallelRunStep(
        name="doors",
        parallel_run_config=config,
        inputs=[doors.dataset(row.tabular).as_named_input("input")],
        output=PipelineData(name="output", datastore=doors.ws.get_default_datastore()),
    )
    return Pipeline(workspace=doors.ws, steps=[step])


def kept(row: Row, step: dict) -> tuple[Any, int]:
    """The row's setting, and the mini-batch size, as a stored step holds them."""
    return step["config"][row.setting], step["config"]["mini_batch_size_parsed"]


def by_parallel_run_config(doors: Doors, row: Row) -> tuple:
    return outcome(lambda: plan_step(doors, api_pipeline(doors, row, **{row.setting: row.value})))


def by_text(doors: Doors, row: Row, line: str | list[str], notebook: bool) -> tuple:
    def do() -> dict:
        args = parse(line, prog="%parallelrun" if notebook else "parallelrun", notebook=notebook)
        return plan_step(doors, step_pipeline(args, doors.ws)[1])

    return outcome(do)


def by_the_engine(doors: Doors, row: Row, step: dict) -> tuple:
    """What the engine makes of ``step`` as the store holds it, read as the runner reads it:
    the description's settings, and the size its partitioner cuts the input by."""
    run_id = f"doors_{len(doors.ws.store.list_runs(limit=10_000))}"
    doors.ws.store.create_run(id=run_id, experiment="doors", kind="step", status="Failed",
                              spec=step)  # fmt: skip

    def do() -> tuple[Any, int]:
        described = StepDescription.from_json(doors.ws.store.get_run(run_id)["spec"])
        size = described.mini_batch_size_parsed
        list(iter_mini_batches(doors.dataset(row.tabular), size))
        return getattr(described.settings, row.setting), size

    return outcome(do)


def submit_words(doors: Doors, row: Row) -> list[str]:
    tabular = ["--tabular"] if row.tabular else []
    return [str(doors.script), "--input", doors.input_of(row.tabular), *tabular, *row.words()]


def test_the_table_holds_good_and_bad_values_of_every_setting():
    assert {row.setting for row in ROWS if row.error is None} == set(PARSERS)
    assert {row.setting for row in ROWS if row.error is not None} == set(PARSERS)
    assert {row.setting for row in ROWS if row.words()} == {*FLAGS, "preserve_order"}
    # Every setting is a flag of the command line and the magic.
    assert {*FLAGS, "preserve_order"} == set(PARSERS)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.setting}={r.value!r}"[:60])
def test_every_front_door_accepts_or_refuses_a_value_alike(doors, row, monkeypatch, capsys):
    from IPython.core.error import UsageError
    from IPython.testing.globalipapp import get_ipython

    monkeypatch.chdir(doors.ws.config_file.parent)
    api = by_parallel_run_config(doors, row)
    if row.error is None:
        assert api[0] == "kept", api
        stored = api[1]
        assert kept(row, stored)[0] == row.kept
    else:
        assert api == ("refused", row.error, row.message)
        # A stored step holding the value, as a store written by hand or by another version
        # might hold it: what submit() stores for the defaults, with the row's value in it.
        stored = json.loads(json.dumps(plan_step(doors, api_pipeline(doors, row))))
        stored["config"][row.setting] = row.value
    found = {"ParallelRunConfig": api[:1] + ((kept(row, api[1]),) if api[0] == "kept" else api[1:])}
    found["engine"] = by_the_engine(doors, row, stored)
    if row.words() is not None:
        shell = get_ipython()
        line = shlex.join(submit_words(doors, row))
        for name, door in (
            ("parallelrun submit", by_text(doors, row, submit_words(doors, row), False)),
            ("%parallelrun", by_text(doors, row, expand(line, shell.user_ns), True)),
        ):
            found[name] = door[:1] + ((kept(row, door[1]),) if door[0] == "kept" else door[1:])
        if row.error is not None:  # the whole door, as a user meets it
            runs = len(doors.ws.store.list_runs(limit=10_000))
            assert main(submit_words(doors, row)) == 2
            assert capsys.readouterr().err == f"parallelrun: {row.message}\n"
            shell.run_line_magic("load_ext", "jupyter_parallelrun")
            with pytest.raises(UsageError) as refused:
                shell.run_line_magic("parallelrun", line)
            assert str(refused.value) == f"%parallelrun: {row.message}"
            assert len(doors.ws.store.list_runs(limit=10_000)) == runs  # no run left behind
    assert found == dict.fromkeys(found, found["ParallelRunConfig"])


#: A value for every setting a flag gives, as a user types it (all but one not the default).
TYPED_SETTINGS = {
    "mini_batch_size": "2",
    "error_threshold": "10",
    "allowed_failed_count": "2",
    "allowed_failed_percent": "12.5",
    "append_row_file_name": "rows.csv",
    "node_count": "2",
    "process_count_per_node": "1",
    "run_invocation_timeout": "30.5",
    "run_max_try": "2",
    "logging_level": "debug",
    "heartbeat_timeout": "45",
    "progress_update_timeout": "300",
    "first_task_creation_timeout": "120",
    "task_overhead_timeout": "2",
    "resource_monitor_interval": "0",
}


@pytest.mark.parametrize("door", ["parallelrun submit", "%parallelrun"])
def test_a_submission_stores_what_parallel_run_config_holds(doors, door, monkeypatch, capsys):
    from IPython.testing.globalipapp import get_ipython

    from jupyter_parallelrun import Run

    monkeypatch.chdir(doors.ws.config_file.parent)
    flags = [w for name, text in TYPED_SETTINGS.items() for w in (FLAGS[name], text)]
    flags += ["--env", "MODE=fast", "--env", "QUERY=a=b", "--env", "MODE=slow"]  # later wins
    words = [*submit_words(doors, good("preserve_order", True)), *flags, "--wait", "--no-reuse"]
    untyped = {"output_action", "partition_keys", "environment_variables"}
    assert set(TYPED_SETTINGS) | untyped == set(FLAGS)
    if door == "parallelrun submit":
        assert main(words) == 0
        run = Run.get(doors.ws, capsys.readouterr().out.split("submitted run ")[1].split()[0])
    else:
        shell = get_ipython()
        shell.run_line_magic("load_ext", "jupyter_parallelrun")
        run = shell.run_line_magic("parallelrun", shlex.join(words))
    assert run.get_status() == "Completed"
    (step,) = run.get_steps()
    stored = step._record["spec"]["config"]
    values = {name: from_text(name, text) for name, text in TYPED_SETTINGS.items()}
    values["environment_variables"] = {"MODE": "slow", "QUERY": "a=b"}
    row = good("preserve_order", True)
    api = plan_step(doors, api_pipeline(doors, row, preserve_order=True, **values))["config"]
    assert {k: stored[k] for k in PARSERS} == {k: api[k] for k in PARSERS}
    assert Settings.from_mapping(stored) == Settings.from_mapping(api)
    assert Settings.from_mapping(stored).logging_level == "DEBUG"
    assert stored["environment_variables"] == {"MODE": "slow", "QUERY": "a=b"}


#: ``--env`` words that give no variable: only the text doors have them, and both refuse them
#: naming the flag, the word and what is allowed.
NOT_VARIABLES = ["NOEQUALS", "=x", "="]


@pytest.mark.parametrize("word", NOT_VARIABLES)
def test_env_words_that_give_no_variable_are_refused_by_both_text_doors(
    doors, word, monkeypatch, capsys
):
    from IPython.core.error import UsageError
    from IPython.testing.globalipapp import get_ipython

    monkeypatch.chdir(doors.ws.config_file.parent)
    message = (
        f"--env must be NAME=VALUE, with a NAME that is not empty (VALUE may be); got {word!r}"
    )
    words = [*submit_words(doors, good("error_threshold", 10)), "--env", "A=1", "--env", word]
    runs = len(doors.ws.store.list_runs(limit=10_000))
    assert main(words) == 2
    assert capsys.readouterr().err == f"parallelrun: {message}\n"
    shell = get_ipython()
    shell.run_line_magic("load_ext", "jupyter_parallelrun")
    with pytest.raises(UsageError) as refused:
        shell.run_line_magic("parallelrun", shlex.join(words))
    assert str(refused.value) == f"%parallelrun: {message}"
    assert len(doors.ws.store.list_runs(limit=10_000)) == runs  # no run left behind
