"""What meets a requirement, pins as warnings, pandas' old strings, the sections not applied,
and how a run shows the environment's warnings (at submit, in get_details(), in the store)."""

from __future__ import annotations

import importlib.metadata
import stat
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ECHO_SCRIPT, file_dataset, output_rows, submit_step

from jupyter_parallelrun import CondaDependencies, Dataset, Environment, EnvironmentWarning
from jupyter_parallelrun.engine import worker
from jupyter_parallelrun.environment import RSection, SparkPackage
from jupyter_parallelrun.environment_check import (
    PANDAS_OBJECT_STRINGS,
    EnvironmentCheckError,
    check_environment,
    worker_variables,
)

PANDAS = importlib.metadata.version("pandas")
TENSORFLOW = importlib.metadata.version("tensorflow-cpu")

# The pins of Microsoft's ParallelRunStep samples (mnist, then iris).
AZURE_SAMPLE_PINS = [
    "tensorflow==2.13.0",
    "protobuf==4.23.3",
    "numpy==1.19.5",
    "pandas==1.4.4",
    "scikit-learn==0.22.2",
]


def environment(*pip_packages: str, **python) -> Environment:
    env = Environment(name="batch_environment")
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=list(pip_packages))
    for key, value in python.items():
        setattr(env.python, key, value)
    return env


def test_a_requirement_is_met_by_the_distribution_that_provides_its_import():
    # Only tensorflow-cpu is installed here; `import tensorflow` works, so tensorflow is met.
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("tensorflow")
    assert check_environment(environment("tensorflow", "tensorflow-gpu").to_spec()) == []
    assert check_environment(environment(f"tensorflow=={TENSORFLOW}").to_spec()) == []


def test_azure_sample_pins_are_warnings_not_errors():
    notes = check_environment(environment(*AZURE_SAMPLE_PINS).to_spec())
    found = {pin: [n for n in notes if f"pins {pin!r}" in n] for pin in AZURE_SAMPLE_PINS}
    assert all(len(hits) == 1 for hits in found.values()), notes
    assert len(notes) == len(AZURE_SAMPLE_PINS)
    assert (
        f"the workers' Python has tensorflow {TENSORFLOW} (from tensorflow-cpu), used as it is"
        in found["tensorflow==2.13.0"][0]
    )
    assert f"has pandas {PANDAS}, used as it is" in found["pandas==1.4.4"][0]
    assert (
        "the workers set pandas' future.infer_string=False before the entry script loads"
        in (found["pandas==1.4.4"][0])
    )
    assert "future.infer_string" not in found["numpy==1.19.5"][0]
    # An unmet lower bound is a version that differs too: a warning.
    assert len(check_environment(environment("pandas>=99").to_spec())) == 1


def test_the_iris_sample_environment_as_written():
    # Azure's tabular-dataset-inference-iris.ipynb, its environment cell with the imports changed
    deps = CondaDependencies.create(
        python_version="3.8",
        conda_packages=["pip==20.2.4"],
        pin_sdk_version=False,
        pip_packages=[
            "numpy==1.19.5",
            "pandas==1.4.4",
            "scikit-learn==0.22.2",
            "azureml-core==1.54.0",
            "azureml-dataset-runtime[fuse]==1.54.0",
        ],
    )
    predict_env = Environment(name="predict_environment")
    predict_env.python.conda_dependencies = deps
    predict_env.spark.precache_packages = False
    notes = check_environment(predict_env.to_spec())
    assert [n.split(": ", 1)[1].split(";")[0] for n in notes] == [
        "settings recorded, not applied (the workers run as local processes of this machine, "
        "with no container or cluster image): spark (precache_packages=False)",
        "pins 'numpy==1.19.5'",
        "pins 'pandas==1.4.4'",
        "pins 'scikit-learn==0.22.2'",
        "asks for python=3.8",
    ]
    assert worker_variables(predict_env.to_spec()) == {PANDAS_OBJECT_STRINGS: "1"}


def _site(tmp_path, *dists: tuple[str, str, str | None]):
    """A site folder with these distributions installed (name, version, top-level module),
    and a Python that sees it besides the notebook's own packages."""
    site = tmp_path / "site"
    for name, version, module in dists:
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        record = []
        if module:
            (site / module).mkdir()
            (site / module / "__init__.py").write_text("")
            (info / "top_level.txt").write_text(module + "\n")
            record.append(f"{module}/__init__.py,,")
        (info / "RECORD").write_text("\n".join(record) + "\n")
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{sys.executable}" "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    return str(python)


def test_aliases_and_local_version_labels_in_another_python(tmp_path):
    python = _site(
        tmp_path,
        ("opencv-python-headless", "4.9.0.80", "cv2"),
        ("torch", "2.1.0+cpu", "torch"),
    )
    met = environment("opencv-python", "opencv-contrib-python", "torch==2.1.0", "torch>=2")
    with pytest.raises(EnvironmentCheckError, match="'opencv-python', 'opencv-contrib-python'"):
        check_environment(met.to_spec())  # the notebook's Python has neither
    met.python.interpreter_path = python
    assert check_environment(met.to_spec()) == []
    differs = environment("opencv-python==4.8.1.78", "torch==2.2.0", interpreter_path=python)
    notes = check_environment(differs.to_spec())
    assert "has opencv-python 4.9.0.80 (from opencv-python-headless)" in notes[0]
    assert "has torch 2.1.0+cpu, used as it is" in notes[1]


def test_other_sections_are_recorded_and_reported_once():
    env = environment("pandas")
    env.docker.enabled = True
    env.spark.precache_packages = False
    env.spark.repositories.append("https://mmlspark.azureedge.net/maven")
    env.spark.packages.append(SparkPackage("com.microsoft.ml.spark", "mmlspark_2.11", "0.15"))
    env.databricks.pypi_libraries.append({"package": "nltk"})
    env.r = RSection(r_version="4.0.2", cran_packages=[{"name": "dplyr"}])
    env.inferencing_stack_version = "latest"
    again = Environment.from_spec(env.to_spec())
    assert again.to_spec() == env.to_spec()
    assert again.spark.packages == [SparkPackage("com.microsoft.ml.spark", "mmlspark_2.11", "0.15")]
    notes = check_environment(env.to_spec())
    assert len(notes) == 1
    assert "settings recorded, not applied" in notes[0]
    for shown in (
        "docker (enabled=True)",
        "spark (repositories=['https://mmlspark.azureedge.net/maven'], packages=[{'group': "
        "'com.microsoft.ml.spark', 'artifact': 'mmlspark_2.11', 'version': '0.15'}], "
        "precache_packages=False)",
        "databricks (pypi_libraries=[{'package': 'nltk'}])",
        "r (r_version='4.0.2', cran_packages=[{'name': 'dplyr'}])",
        "inferencing_stack_version='latest'",
    ):
        assert shown in notes[0]
    # Azure's defaults, and an environment stored before these sections existed, say nothing.
    assert check_environment(Environment("plain").to_spec()) == []
    old = {k: v for k, v in env.to_spec().items() if k in ("name", "version", "python")}
    assert Environment.from_spec(old).spark.precache_packages is True


def test_the_worker_side_of_a_pandas_pin_below_3():
    assert PANDAS_OBJECT_STRINGS == worker.PANDAS_OBJECT_STRINGS
    for pin in ("pandas==1.4.4", "pandas<3", "pandas~=2.2", "pandas<=2.3.1", "pandas==2.*"):
        assert worker_variables(environment(pin).to_spec()) == {PANDAS_OBJECT_STRINGS: "1"}, pin
    for pin in ("pandas", "pandas>=1.4", "pandas==3.0.1", "pandas<4"):
        assert worker_variables(environment(pin).to_spec()) == {}, pin
    assert worker_variables(None) == {}


# Azure's iris sample (Code/iris_score.py) does exactly this: predictions of shape (n, 1),
# strings, assigned to a new column. pandas 3's Arrow-backed strings refuse it.
IRIS_STYLE_SCRIPT = """
import numpy as np

def init():
    pass

def run(input_data):
    num_rows, num_cols = input_data.shape
    pred = np.array(["setosa" if x < 5.5 else "virginica" for x in input_data["sepal_length"]])
    result = input_data.drop(input_data.columns[4:], axis=1)
    result["variety"] = pred.reshape((num_rows, 1))
    return result
"""


@pytest.mark.skipif(int(PANDAS.split(".")[0]) < 3, reason="pandas 3 is the one that changed")
def test_a_pandas_pin_below_3_gives_the_workers_the_old_strings(ws, write_script, tmp_path):
    with pytest.raises(Exception, match="1-dimensional"):
        frame = pd.DataFrame({"a": [1, 2]})
        frame["b"] = np.array([["x"], ["y"]])
    table = tmp_path / "iris.csv"
    rows = [(4.9 + i / 10, 3.0, 1.4, 0.2) for i in range(12)]
    table.write_text(
        "sepal_length,sepal_width,petal_length,petal_width\n"
        + "".join(",".join(map(str, row)) + "\n" for row in rows)
    )
    dataset = Dataset.Tabular.from_delimited_files(str(table))
    source = write_script(IRIS_STYLE_SCRIPT)
    expected = sorted(
        f"{' '.join(map(str, r))} {'setosa' if r[0] < 5.5 else 'virginica'}" for r in rows
    )
    results = {}
    for pin in ("pandas", "pandas==1.4.4"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EnvironmentWarning)
            run = submit_step(
                ws,
                source,
                dataset,
                environment=environment(pin),
                mini_batch_size="1KB",
                error_threshold=0,
            )
        status = run.wait_for_completion(timeout_seconds=120, raise_on_error=False)
        results[pin] = (status, sorted(output_rows(run)))
    # Unpinned, pandas 3 runs the script as it is: it fails. Pinned below 3, it runs as there.
    assert results["pandas"] == ("Failed", [])
    assert results["pandas==1.4.4"] == ("Completed", expected)


def test_warnings_are_shown_at_submit_and_kept_with_the_run(ws, write_script, files):
    env = environment("pandas==1.4.4", "tensorflow==2.13.0")
    env.spark.precache_packages = False
    with pytest.warns(EnvironmentWarning) as shown:
        run = submit_step(ws, write_script(ECHO_SCRIPT), file_dataset(files(3)), environment=env)
    ours = [w for w in shown if w.category is EnvironmentWarning]
    messages = [str(w.message) for w in ours]
    assert len(messages) == 3
    assert all(
        m.startswith("step 'score-step': environment 'batch_environment': ") for m in messages
    )
    assert any("pins 'pandas==1.4.4'" in m for m in messages)
    assert any("spark (precache_packages=False)" in m for m in messages)
    # Each points at the line that called submit(), as it would in the user's notebook.
    assert {Path(w.filename).name for w in ours} == {"conftest.py"}
    assert run.wait_for_completion(timeout_seconds=120) == "Completed"
    step = run.find_step_run("score-step")[0]
    for details in (run.get_details(), step.get_details()):
        assert [w["message"] for w in details["warnings"]] == [
            m.removeprefix("step 'score-step': ") for m in messages
        ]
        assert {w["source"] for w in details["warnings"]} == {"environment"}
    assert ws.store.get_run(step.id)["spec"]["warnings"] == [
        w["message"] for w in details["warnings"]
    ]
    runner_log = (step._folder / "logs" / "runner.txt").read_text()
    assert "pins 'tensorflow==2.13.0'" in runner_log
    # Made an error by the user's filter, a warning refuses the submission: no run is left.
    runs = len(ws.store.list_runs())
    with warnings.catch_warnings():
        warnings.simplefilter("error", EnvironmentWarning)
        with pytest.raises(EnvironmentWarning, match=r"spark \(precache_packages=False\)"):
            submit_step(ws, write_script(ECHO_SCRIPT), file_dataset(files(3)), environment=env)
    assert len(ws.store.list_runs()) == runs
    # A run without an environment says nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("error", EnvironmentWarning)
        plain = submit_step(ws, write_script(ECHO_SCRIPT), file_dataset(files(2)))
    assert plain.wait_for_completion(timeout_seconds=120) == "Completed"
    assert plain.get_details()["warnings"] == []


def test_the_same_warning_is_shown_at_every_submit(ws, write_script, files):
    env = environment("pandas==1.4.4")
    source, data = write_script(ECHO_SCRIPT), file_dataset(files(1))
    with warnings.catch_warnings(record=True) as shown:  # the filters as they are, not "always"
        runs = [submit_step(ws, source, data, environment=env) for _ in range(2)]
    assert [str(w.message).count("pins 'pandas==1.4.4'") for w in shown] == [1, 1]
    assert [run.wait_for_completion(timeout_seconds=120) for run in runs] == ["Completed"] * 2
