"""Run Microsoft's four ParallelRunStep samples here, from a local copy the user gives.

The samples (``Azure/MachineLearningNotebooks``, folder
``how-to-use-azureml/machine-learning-pipelines/parallel-run/``) are Microsoft's and are not in
this repository: clone or download that folder and pass its path::

    python tests/azure_samples/run_samples.py path/to/parallel-run [--only iris,mnist] [--work DIR]

For each sample it makes a work folder with a workspace (``config.json``) and the sample's
``Code/`` folder, then runs the notebook's code cells in a real Jupyter kernel with nbclient,
changed only where this machine differs from Azure:

- imports: ``azureml.*`` and ``azureml_user.parallel_run`` become ``jupyter_parallelrun``, in
  the notebook and in the entry scripts of ``Code/``;
- cells that fetch data or a model (a public blob container, a URL) are replaced by local data
  of the same shape, made by ``sample_data.py`` (each replaced cell starts ``# [replaced]``);
- one cell is appended that checks the results (digits accuracy above 0.8; iris rows read back
  equal the inputs; per-folder and per-column totals equal pandas' groupby of the same data).

The executed notebooks are left in the work folders. Exit status 0 when all pass.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent
SAMPLES = {
    "mnist": "file-dataset-image-inference-mnist",
    "iris": "tabular-dataset-inference-iris",
    "folder": "file-dataset-partition-per-folder",
    "column": "tabular-dataset-partition-per-column",
}
_FROM_IMPORT = re.compile(r"^(\s*)from (?:azureml(?:\.[\w.]+)?|azureml_user\.parallel_run) import ")
_IMPORT_CORE = re.compile(r"^(\s*)import azureml\.core\s*$")


def translate(source: str) -> str:
    """``source`` with its ``azureml`` imports (and ``azureml.core.VERSION``) pointing here."""
    lines = []
    for line in source.splitlines(keepends=True):
        line = _FROM_IMPORT.sub(r"\1from jupyter_parallelrun import ", line)
        line = _IMPORT_CORE.sub(r"\1import jupyter_parallelrun", line.rstrip("\n"))
        lines.append(line if line.endswith("\n") else line + "\n")
    text = "".join(lines)
    text = text.replace("azureml.core.VERSION", "jupyter_parallelrun.VERSION")
    return text if source.endswith("\n") else text.rstrip("\n")


# -- the cells replaced, found by what they contain ---------------------------------------------

_MNIST_DATA = """# [replaced] the blob container of MNIST PNGs -> digits made here, same layout
from jupyter_parallelrun import Datastore
from sample_data import mnist_images

datastore_name = "mnist_datastore"
mnist_labels = mnist_images("local_blob/sampledata")
mnist_data = Datastore.register_local_folder(ws, datastore_name, "local_blob/sampledata")"""

_MNIST_MODEL = """# [replaced] the download of mnist-tf.tar.gz -> a TF1-style checkpoint made here
from sample_data import train_mnist_checkpoint

model_dir = 'models'
if not os.path.isdir(model_dir):
    os.mkdir(model_dir)
train_mnist_checkpoint(model_dir)
os.listdir(model_dir)"""

_IRIS_DATA = """# [replaced] the blob container -> scikit-learn's iris as CSV in a local folder
from jupyter_parallelrun import Datastore
from sample_data import iris_data as make_iris

account_name = "pipelinedata"
datastore_name = "iris_datastore_data"
container_name = "sampledata"
make_iris("local_blob/sampledata", "local_blob/iris-model")
iris_data = Datastore.register_local_folder(ws, datastore_name, "local_blob/" + container_name)"""

_IRIS_MODEL = """# [replaced] the public model container -> a local folder holding iris_model.pkl
model_container_name = "iris-model"
model_datastore_name = "iris_model_datastore"
model_datastore = Datastore.register_local_folder(
    ws, model_datastore_name, "local_blob/" + model_container_name
)"""

_OJ_DATA = """# [replaced] the download of the orange-juice sales CSV -> a table of the same shape
from sample_data import oj_sales

oj_sales_path = "./oj.csv"
oj_sales(oj_sales_path)"""

REPLACED = {
    "mnist": [("register_azure_blob_container", _MNIST_DATA), ("urlretrieve", _MNIST_MODEL)],
    "iris": [
        ("iris_data = Datastore.register_azure_blob_container", _IRIS_DATA),
        ("model_datastore = Datastore.register_azure_blob_container", _IRIS_MODEL),
    ],
    "folder": [],
    "column": [("requests.get(", _OJ_DATA)],
}

# -- the checks appended ------------------------------------------------------------------------

CHECKS = {
    "mnist": """# [check] every image scored once; accuracy against the labels; the resubmission
predicted = dict(zip(df.Filename.str.strip(), df.Prediction))
assert sorted(predicted) == sorted(mnist_labels), (len(predicted), len(mnist_labels))
accuracy = sum(predicted[n] == mnist_labels[n] for n in mnist_labels) / len(mnist_labels)
print(f"CHECK mnist: {len(predicted)} images, accuracy {accuracy:.3f}")
assert accuracy > 0.8, accuracy
second = pipeline_run_2.find_step_run(parallelrun_step.name)[0].get_output_data(output_dir.name)
second_dir = tempfile.mkdtemp()
second.download(local_path=second_dir)
rows = open(os.path.join(second_dir, second.path_on_datastore,
                         parallel_run_config.append_row_file_name)).read().splitlines()
print("CHECK mnist resubmission:", rows)
assert len(rows) == 1 and rows[0].startswith("0.png: "), rows""",
    "iris": """# [check] the rows read back are the inputs, each once, with a variety
inputs = pd.read_csv("local_blob/sampledata/iris/iris.csv")
features = list(inputs.columns)
got = df[features].sort_values(features).reset_index(drop=True)
want = inputs.sort_values(features).reset_index(drop=True)
pd.testing.assert_frame_equal(got, want, check_dtype=False)
assert set(df.variety) <= {"Setosa", "Versicolor", "Virginica"}, set(df.variety)
print(f"CHECK iris: {len(df)} rows read back = {len(inputs)} inputs; varieties",
      df.variety.value_counts().to_dict())""",
    "folder": """# [check] per (user, genres): totals equal pandas' groupby of the files uploaded
import glob
rows = []
for path in glob.glob(str(datastore.local_path("dataset_partition_test/*/*/*.wav"))):
    user, season, name = path.split(os.sep)[-3:]
    rows.append((user, name[:-4], os.path.getsize(path)))
files = pd.DataFrame(rows, columns=["user", "genres", "size"])
want = files.groupby(["user", "genres"])["size"].sum()
totals = df.groupby(["user", "genres"])["Total File Size of Partition"]
assert (totals.nunique() == 1).all()
pd.testing.assert_series_equal(totals.first(), want, check_names=False)
pd.testing.assert_series_equal(df.groupby(["user", "genres"])["File Size"].sum(), want,
                               check_names=False)
assert len(df) == len(files), (len(df), len(files))
print(f"CHECK folder: {len(df)} files in {len(want)} partitions; totals =", want.to_dict())""",
    "column": """# [check] per (Store, Brand): total_income equals pandas' groupby of the same CSV
import numpy as np
source = pd.read_csv("oj.csv")
want = source.groupby(["Store", "Brand"])["INCOME"].sum()
totals = df.groupby(["Store", "Brand"])["total_income"]
assert (totals.nunique() == 1).all()
got = totals.first()
assert list(got.index) == list(want.index), (list(got.index), list(want.index))
assert np.allclose(got.values, want.values, rtol=1e-9), (got, want)
assert len(df) == len(source), (len(df), len(source))
pd.testing.assert_series_equal(df.groupby(["Store", "Brand"])["INCOME"].sum(), want,
                               check_names=False, rtol=1e-9)
print(f"CHECK column: {len(df)} rows in {len(want)} partitions; totals match pandas' groupby")""",
}


def prepare(sample: str, samples_dir: Path, work: Path) -> nbformat.NotebookNode:
    """Make ``work`` (workspace, translated ``Code/``, data that sits beside the notebook) and
    return the translated notebook."""
    if work.exists():
        shutil.rmtree(work)
    (work / "Code").mkdir(parents=True)
    for script in sorted((samples_dir / "Code").glob("*.py")):
        (work / "Code" / script.name).write_text(translate(script.read_text()))
    from jupyter_parallelrun import Workspace

    Workspace.create(f"samples-{sample}", path=work)
    if sample == "folder":
        sys.path.insert(0, str(HERE))
        from sample_data import genre_files

        genre_files(work / "test_files")
    notebook = nbformat.read(samples_dir / f"{SAMPLES[sample]}.ipynb", as_version=4)
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in cells:
        cell.source = translate(cell.source)
        cell.outputs, cell.execution_count = [], None
    for marker, replacement in REPLACED[sample]:
        found = [cell for cell in cells if marker in cell.source]
        if len(found) != 1:
            raise SystemExit(f"{sample}: expected one cell with {marker!r}, found {len(found)}")
        found[0].source = replacement
    notebook.cells = [*cells, nbformat.v4.new_code_cell(CHECKS[sample])]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}  # fmt: skip
    return notebook


def execute(sample: str, notebook: nbformat.NotebookNode, work: Path) -> tuple[bool, str]:
    """Run every cell in a fresh kernel in ``work``; the executed notebook is written there."""
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    os.environ["PYTHONPATH"] = path  # the kernel, the runner and the workers inherit it
    client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}})  # fmt: skip
    try:
        client.execute()
        ok, message = True, ""
    except CellExecutionError as error:
        ok, message = False, re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    nbformat.write(notebook, work / f"{SAMPLES[sample]}.ipynb")
    checks = [
        output.get("text", "")
        for output in notebook.cells[-1].get("outputs", [])
        if output.get("output_type") == "stream"
    ]
    return ok, ("".join(checks).strip() if ok else message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("samples_dir", type=Path, help="a local copy of the parallel-run folder")
    parser.add_argument("--only", default=",".join(SAMPLES), help="comma-separated: " +
                        ", ".join(SAMPLES))  # fmt: skip
    parser.add_argument("--work", type=Path, default=None, help="where the work folders go")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SAMPLES))
    if unknown:
        parser.error(f"--only names unknown samples {unknown}; known: {list(SAMPLES)}")
    if not (args.samples_dir / "Code").is_dir():
        parser.error(f"{str(args.samples_dir)!r} has no Code/ folder; pass the parallel-run folder")
    work_root = args.work or Path(tempfile.mkdtemp(prefix="azure-samples-"))
    results = {}
    for sample in chosen:
        work = (work_root / sample).resolve()
        notebook = prepare(sample, args.samples_dir.resolve(), work)
        results[sample] = execute(sample, notebook, work)
        ok, message = results[sample]
        print(f"{'PASS' if ok else 'FAIL'} {SAMPLES[sample]} ({work})\n{message}\n", flush=True)
    return 0 if all(ok for ok, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
