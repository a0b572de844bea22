"""Tests of datasets: file patterns, order, take/skip/sample, registry, specs, tabular reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from jupyter_parallelrun.dataset import Dataset, FileDataset, TabularDataset
from jupyter_parallelrun.datastore import Datastore
from jupyter_parallelrun.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.create("test", path=tmp_path / "ws")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for name in ["b/2.png", "b/1.png", "a.png", "a/z.png", "a/notes.txt", "c/d/3.png"]:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return root


def names(dataset: FileDataset, root: Path) -> list[str]:
    return [os.path.relpath(p, root) for p in dataset.iter_files()]


ALL = ["a/notes.txt", "a/z.png", "a.png", "b/1.png", "b/2.png", "c/d/3.png"]
PNG = [name for name in ALL if name.endswith(".png")]


def test_from_files_folder_glob_and_file(images):
    assert names(Dataset.File.from_files(str(images)), images) == ALL
    assert names(Dataset.File.from_files(str(images / "**" / "*.png")), images) == PNG
    assert names(Dataset.File.from_files(images / "a.png"), images) == ["a.png"]
    assert isinstance(Dataset.File.from_files(str(images)), FileDataset)
    assert all(os.path.isabs(p) for p in Dataset.File.from_files(str(images)).iter_files())


def test_from_files_relative_path_is_made_absolute(images, monkeypatch):
    monkeypatch.chdir(images)
    dataset = Dataset.File.from_files("b")
    monkeypatch.chdir(images.parent)
    assert names(dataset, images) == ["b/1.png", "b/2.png"]


def test_from_files_datapath_tuple_and_list(ws, images):
    store = Datastore.register_local_folder(ws, "images", images)
    assert names(Dataset.File.from_files(store.path("b/")), images) == ["b/1.png", "b/2.png"]
    assert names(Dataset.File.from_files((store, "**/*.txt")), images) == ["a/notes.txt"]
    mixed = Dataset.File.from_files([(store, "c"), str(images / "a.png"), store.path("b/*")])
    assert names(mixed, images) == ["a.png", "b/1.png", "b/2.png", "c/d/3.png"]


def test_overlapping_patterns_yield_each_file_once_in_sorted_order(images):
    dataset = Dataset.File.from_files([str(images / "b"), str(images), str(images / "**/*.png")])
    assert names(dataset, images) == ALL


def test_validate(images):
    with pytest.raises(ValueError, match=r"path '.*nothing\*\.csv' matches no file"):
        Dataset.File.from_files([str(images), str(images / "nothing*.csv")])
    lazy = Dataset.File.from_files(str(images / "later/*.csv"), validate=False)
    assert list(lazy.iter_files()) == []
    (images / "later").mkdir()
    (images / "later" / "x.csv").write_text("x")
    assert names(lazy, images) == ["later/x.csv"]


@pytest.mark.parametrize("path", [None, 5, [], ""])
def test_from_files_rejects_bad_paths(path):
    with pytest.raises(ValueError, match="path must"):
        Dataset.File.from_files(path)


def test_iter_files_is_a_stream(images):
    files = Dataset.File.from_files(str(images)).iter_files()
    assert not isinstance(files, list)
    assert next(files).endswith("notes.txt")


def test_take_skip_sample(images):
    dataset = Dataset.File.from_files(str(images))
    assert names(dataset.take(2), images) == ALL[:2]
    assert names(dataset.skip(4), images) == ALL[4:]
    assert names(dataset.skip(1).take(2), images) == ALL[1:3]
    sample = dataset.take_sample(0.5, seed=7)
    assert names(sample, images) == names(dataset.take_sample(0.5, seed=7), images)
    assert set(names(sample, images)) <= set(ALL)
    assert names(dataset.take_sample(1.0), images) == ALL
    assert names(dataset.take_sample(0.0), images) == []
    unseeded = dataset.take_sample(0.5)
    assert names(Dataset.from_spec(unseeded.to_spec()), images) == names(unseeded, images)
    with pytest.raises(ValueError, match="probability must be a number in"):
        dataset.take_sample(1.5)
    with pytest.raises(ValueError, match="count must be an int >= 0; got -1"):
        dataset.take(-1)


def test_to_path_and_download(images, tmp_path):
    dataset = Dataset.File.from_files(str(images / "**/*.png"))
    assert dataset.to_path() == ["/" + name for name in PNG]
    written = dataset.download(tmp_path / "out")
    assert written == [str(tmp_path / "out" / name) for name in PNG]
    assert Path(written[-1]).read_text() == "c/d/3.png"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        dataset.download(tmp_path / "out")
    assert len(dataset.download(tmp_path / "out", overwrite=True)) == len(PNG)
    assert all(os.path.isfile(p) for p in dataset.download())


def test_register_get_by_name_and_versions(ws, images):
    first = Dataset.File.from_files(str(images / "a"))
    registered = first.register(ws, "images", description="first", tags={"k": "v"})
    assert (registered.name, registered.version, registered.id) == ("images", 1, "images:1")
    assert registered.description == "first" and registered.tags == {"k": "v"}
    assert first.register(ws, "images").version == 1
    second = Dataset.File.from_files(str(images / "b"))
    with pytest.raises(ValueError, match="'images' is already registered.*create_new_version"):
        second.register(ws, "images")
    assert second.register(ws, "images", create_new_version=True).version == 2
    latest = Dataset.get_by_name(ws, "images")
    assert latest.version == 2 and names(latest, images) == ["b/1.png", "b/2.png"]
    assert names(Dataset.get_by_name(ws, "images", version=1), images) == ["a/notes.txt", "a/z.png"]
    assert Dataset.get_by_id(ws, "images:1").version == 1
    assert set(ws.datasets) == {"images"}
    with pytest.raises(ValueError, match=r"no dataset named 'other'.*\['images'\]"):
        Dataset.get_by_name(ws, "other")
    with pytest.raises(ValueError, match="no dataset named 'images' at version 9"):
        Dataset.get_by_name(ws, "images", 9)


def test_spec_roundtrip_through_json(ws, images):
    store = Datastore.register_local_folder(ws, "images", images)
    dataset = Dataset.File.from_files([store.path("b"), str(images / "a.png")]).skip(1).take(5)
    spec = json.loads(json.dumps(dataset.to_spec()))
    rebuilt = Dataset.from_spec(spec)
    assert isinstance(rebuilt, FileDataset)
    assert rebuilt.to_spec() == dataset.to_spec()
    assert list(rebuilt.iter_files()) == list(dataset.iter_files())
    registered = Dataset.from_spec(dataset.register(ws, "pics").to_spec(), ws)
    assert (registered.name, registered.version) == ("pics", 1)
    with pytest.raises(ValueError, match='spec\\["type"\\] must be'):
        Dataset.from_spec({"type": "video"})


def test_fingerprint_follows_content(images):
    dataset = Dataset.File.from_files(str(images))
    before = dataset.fingerprint()
    assert Dataset.from_spec(dataset.to_spec()).fingerprint() == before
    (images / "a.png").write_text("a different, longer content")
    changed = dataset.fingerprint()
    assert changed != before
    (images / "new.png").write_text("new")
    assert dataset.fingerprint() != changed
    assert dataset.take(1).fingerprint() != dataset.fingerprint()


def test_partition_keys_of_partition_format(images):
    dataset = Dataset.File.from_files(str(images), partition_format="{group}/*.png")
    assert dataset.partition_keys == ["group"]
    assert Dataset.File.from_files(str(images)).partition_keys == []
    with pytest.raises(ValueError, match="partition_format must be a string with"):
        Dataset.File.from_files(str(images), partition_format="plain/*.png")


# -- tabular --------------------------------------------------------------------------------------


@pytest.fixture
def tables(tmp_path: Path) -> Path:
    root = tmp_path / "tables"
    for state, city, rows in [("wa", "seattle", [(1, 2.5), (2, 3.5)]), ("or", "bend", [(3, 1.0)])]:
        folder = root / state / city
        folder.mkdir(parents=True)
        (folder / "data.csv").write_text("id;value\n" + "".join(f"{i};{v}\n" for i, v in rows))
        (folder / "data.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i, _ in rows))
        pd.DataFrame({"id": [i for i, _ in rows]}).to_parquet(folder / "data.parquet")
    return root


def test_delimited_to_pandas_dataframe(tables):
    dataset = Dataset.Tabular.from_delimited_files(
        str(tables / "**/*.csv"), separator=";", partition_format="{state}/{city}/data.csv"
    )
    assert isinstance(dataset, TabularDataset) and dataset.format == "delimited"
    assert dataset.partition_keys == ["state", "city"]
    frame = dataset.to_pandas_dataframe()
    assert list(frame.columns) == ["id", "value", "state", "city"]
    assert frame["id"].tolist() == [3, 1, 2]
    assert frame["state"].tolist() == ["or", "wa", "wa"]
    assert frame["value"].dtype == float
    assert len(dataset.files) == 2


def test_delimited_options(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("1,x\n2,\n")
    frame = Dataset.Tabular.from_delimited_files(
        str(path), header=False, include_path=True, set_column_types={"Column1": "float"}
    ).to_pandas_dataframe()
    assert list(frame.columns) == ["Column1", "Column2", "Path"]
    assert frame["Column1"].dtype == float and frame["Path"].iloc[0] == str(path)
    assert frame["Column2"].isna().tolist() == [False, True]
    text = Dataset.Tabular.from_delimited_files(
        str(path), header=False, infer_column_types=False, empty_as_string=True
    ).to_pandas_dataframe()
    assert text["Column1"].tolist() == ["1", "2"] and text["Column2"].tolist() == ["x", ""]
    with pytest.raises(ValueError, match="set_column_types names column 'nope'"):
        Dataset.Tabular.from_delimited_files(
            str(path), set_column_types={"nope": "int"}
        ).to_pandas_dataframe()
    with pytest.raises(ValueError, match="encoding must be a known text encoding"):
        Dataset.Tabular.from_delimited_files(str(path), encoding="klingon")
    with pytest.raises(ValueError, match="separator must be a non-empty string; got ''"):
        Dataset.Tabular.from_delimited_files(str(path), separator="")


def test_parquet_and_json_lines(tables):
    parquet = Dataset.Tabular.from_parquet_files(str(tables / "**/*.parquet"))
    assert parquet.format == "parquet"
    assert parquet.to_pandas_dataframe()["id"].tolist() == [3, 1, 2]
    lines = Dataset.Tabular.from_json_lines_files(str(tables / "**/*.jsonl"), include_path=True)
    frame = lines.to_pandas_dataframe()
    assert frame["id"].tolist() == [3, 1, 2] and frame["Path"].str.endswith(".jsonl").all()


def test_json_lines_invalid_lines(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(ValueError, match="invalid JSON on line 2"):
        Dataset.Tabular.from_json_lines_files(str(path)).to_pandas_dataframe()
    dropped = Dataset.Tabular.from_json_lines_files(str(path), invalid_lines="drop")
    assert dropped.to_pandas_dataframe()["a"].tolist() == [1, 2]
    with pytest.raises(ValueError, match='invalid_lines must be "error" or "drop"'):
        Dataset.Tabular.from_json_lines_files(str(path), invalid_lines="skip")


def test_tabular_take_skip_sample_and_spec(tables):
    dataset = Dataset.Tabular.from_delimited_files(str(tables / "**/*.csv"), separator=";")
    assert dataset.skip(1).take(1).to_pandas_dataframe()["id"].tolist() == [1]
    sample = dataset.take_sample(0.5, seed=3).to_pandas_dataframe()
    assert sample.equals(dataset.take_sample(0.5, seed=3).to_pandas_dataframe())
    rebuilt = Dataset.from_spec(json.loads(json.dumps(dataset.to_spec())))
    assert isinstance(rebuilt, TabularDataset)
    assert rebuilt.to_pandas_dataframe().equals(dataset.to_pandas_dataframe())


def test_consumption_configs(images):
    pytest.importorskip("jupyter_parallelrun.pipeline")
    dataset = Dataset.File.from_files(str(images))
    named = dataset.as_named_input("pictures")
    assert (named.name, named.mode, named.dataset) == ("pictures", "direct", dataset)
    mount = dataset.as_mount("/mnt/pics")
    assert (mount.name, mount.mode, mount.path_on_compute) == ("dataset", "mount", "/mnt/pics")
    assert dataset.as_download().mode == "download"


# -- partition_by ---------------------------------------------------------------------------


@pytest.fixture
def sales(ws, tmp_path: Path) -> TabularDataset:
    frame = pd.DataFrame(
        {
            "Week": ["w1", "w2", "w1", "w2", "w1"],
            "Store": [2, 2, 5, 5, 2],
            "Brand": ["tropicana", "tropicana", "dominicks", "minute.maid", "dominicks"],
            "INCOME": [10.5, 10.5, 11.25, 11.25, 10.5],
        }
    )
    frame.to_csv(tmp_path / "oj.csv", index=False)
    datastore = ws.get_default_datastore()
    datastore.upload_files([tmp_path / "oj.csv"], tmp_path, "oj", show_progress=False)
    return Dataset.Tabular.from_delimited_files(path=(datastore, "oj/*.csv"))


def test_partition_by_writes_a_partitioned_copy(ws, sales, capsys):
    datastore = ws.get_default_datastore()
    parts = sales.partition_by(partition_keys=["Store", "Brand"], target=(datastore, "by_key"))
    assert "Wrote 5 rows in 4 partitions" in capsys.readouterr().out
    assert parts.partition_keys == ["Store", "Brand"]
    assert isinstance(parts, TabularDataset) and parts.name is None
    # A new GUID folder under the target, one folder per key value, Parquet inside.
    files = [os.path.relpath(f, datastore.local_path("by_key")) for f in parts.files]
    assert len({f.split(os.sep)[0] for f in files}) == 1
    assert sorted(f.split(os.sep, 1)[1] for f in files) == [
        "2/dominicks/part-00000.parquet",
        "2/tropicana/part-00000.parquet",
        "5/dominicks/part-00000.parquet",
        "5/minute.maid/part-00000.parquet",
    ]
    frame = parts.to_pandas_dataframe()
    # As Azure's: the key columns come back from the paths, as strings, after the others.
    assert list(frame.columns) == ["Week", "INCOME", "Store", "Brand"]
    original = sales.to_pandas_dataframe().astype({"Store": str})[list(frame.columns)]
    by = ["Store", "Brand", "Week"]
    pd.testing.assert_frame_equal(
        frame.sort_values(by).reset_index(drop=True),
        original.sort_values(by).reset_index(drop=True),
    )
    again = sales.partition_by(["Store"], (datastore, "by_key"), show_progress=False)
    assert set(again.files).isdisjoint(parts.files)


def test_partition_by_registers_and_gives_file_datasets(ws, sales, capsys):
    target = ws.get_default_datastore().path("parts")
    registered = sales.partition_by(["Brand"], target, name="oj_parts", show_progress=False)
    assert capsys.readouterr().out == ""
    assert (registered.name, registered.version) == ("oj_parts", 1)
    assert Dataset.get_by_name(ws, "oj_parts").partition_keys == ["Brand"]
    assert sales.partition_by(["Brand"], target, name="oj_parts").version == 2
    files = sales.partition_by(["Brand"], target, partition_as_file_dataset=True)
    assert isinstance(files, FileDataset) and files.partition_keys == ["Brand"]
    assert len(list(files.iter_files())) == 3


@pytest.mark.parametrize(
    ("keys", "target", "message"),
    [
        ("Store", None, "partition_keys must be a non-empty list of column names; got 'Store'"),
        ([], None, "partition_keys must be a non-empty list"),
        (["Region"], None, r"columns \['Region'\] that the dataset does not have"),
        (["Store"], "some/folder", "target must be a DataPath or a \\(Datastore, "),
    ],
)
def test_partition_by_errors(ws, sales, keys, target, message):
    target = target or (ws.get_default_datastore(), "parts")
    with pytest.raises(ValueError, match=message):
        sales.partition_by(keys, target)


def test_partition_by_refuses_values_that_cannot_name_folders(ws, tmp_path):
    target = (ws.get_default_datastore(), "parts")
    (tmp_path / "a.csv").write_text("key,value\na/b,1\n")
    with pytest.raises(ValueError, match="column 'key' has the value 'a/b', which cannot name"):
        Dataset.Tabular.from_delimited_files(str(tmp_path / "a.csv")).partition_by(["key"], target)
    (tmp_path / "a.csv").write_text("key,value\n,1\nx,2\n")
    with pytest.raises(ValueError, match="column 'key' has missing values"):
        Dataset.Tabular.from_delimited_files(str(tmp_path / "a.csv")).partition_by(["key"], target)
