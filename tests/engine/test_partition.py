"""Tests of partitioning inputs into mini-batches and loading them back."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jupyter_parallelrun.dataset import Dataset
from jupyter_parallelrun.engine.mini_batch import (
    MiniBatch,
    describe,
    load_mini_batch,
    mini_batch_context,
    mini_batch_dataset,
)
from jupyter_parallelrun.engine.partition import count_mini_batches, iter_mini_batches


def csv_file(path: Path, first: int, count: int, header: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{i},name-{i},{i * 0.5}\n" for i in range(first, first + count))
    path.write_text(("id,name,score\n" if header else "") + rows)
    return path


# -- file input ---------------------------------------------------------------------------------


def test_file_mini_batches(tmp_path):
    for i in range(7):
        (tmp_path / f"{i:02d}.png").write_text(str(i))
    dataset = Dataset.File.from_files(str(tmp_path))
    batches = list(iter_mini_batches(dataset, "3"))
    assert [b.id for b in batches] == [0, 1, 2]
    assert [b.n_items for b in batches] == [3, 3, 1]
    assert batches[0] == MiniBatch(0, {"kind": "files", "paths": batches[0].spec["paths"]}, 3)
    paths = [p for b in batches for p in load_mini_batch(b.spec)]
    assert paths == list(dataset.iter_files())
    assert batches == list(iter_mini_batches(Dataset.from_spec(dataset.to_spec()), 3))
    assert describe(batches[0].spec) == "3 files: 00.png, 01.png, 02.png"
    assert describe(batches[2].spec) == "1 file: 06.png"
    assert describe(list(iter_mini_batches(dataset, 5))[0].spec).endswith(", …")
    assert mini_batch_context(batches[0].spec) == {}
    json.dumps([b.spec for b in batches])


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, "4"])
def test_the_count_of_file_mini_batches_is_that_of_the_mini_batches_formed(tmp_path, size):
    # The counting thread counts plain file input from its files alone; take/skip apply.
    for i in range(7):
        (tmp_path / "in" / f"{i % 2}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / f"{i % 2}" / f"{i:02d}.png").write_text(str(i))
    plain = Dataset.File.from_files(str(tmp_path / "in"))
    for dataset in (plain, plain.skip(2), plain.take(4), plain.skip(9)):
        formed = list(iter_mini_batches(dataset, size))
        counted = (len(formed), sum(mb.n_items for mb in formed))
        assert count_mini_batches(dataset, size) == counted


def test_the_count_of_tabular_and_keyed_mini_batches_is_that_of_those_formed(tmp_path):
    csv_file(tmp_path / "a.csv", 0, 50)
    csv_file(tmp_path / "b.csv", 50, 30)
    table = Dataset.Tabular.from_delimited_files(str(tmp_path / "*.csv"))
    assert count_mini_batches(table, 300) == (len(list(iter_mini_batches(table, 300))), None)
    keyed = count_mini_batches(table, 300, partition_keys=["name"], scratch_dir=tmp_path / "s")
    assert keyed == (80, 80)


def test_file_input_partition_keys_must_be_keys_of_its_partition_format(tmp_path):
    (tmp_path / "a.png").write_text("a")
    with pytest.raises(ValueError, match=r"partition_keys=\['x'\] on a FileDataset .* are \[\]"):
        list(iter_mini_batches(Dataset.File.from_files(str(tmp_path)), 1, partition_keys=["x"]))


def test_file_partition_keys_one_mini_batch_per_folder_value(tmp_path):
    # The per-folder sample's layout: user/season/genre.wav, partitioned by user and genre.
    layout = ["u1/winter/disco", "u1/fall/orchestra", "u2/summer/piano", "u4/spring/piano",
              "u4/fall/piano"]  # fmt: skip
    for name in layout:
        (tmp_path / f"{name}.wav").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"{name}.wav").write_bytes(b"x" * len(name))
    dataset = Dataset.File.from_files(
        str(tmp_path / "*/*/*.wav"), partition_format="{user}/{season}/{genres}.wav"
    )
    batches = list(iter_mini_batches(dataset, 1, partition_keys=["user", "genres"]))
    assert [mini_batch_context(b.spec)["partition_key_value"] for b in batches] == [
        {"user": "u1", "genres": "disco"},
        {"user": "u1", "genres": "orchestra"},
        {"user": "u2", "genres": "piano"},
        {"user": "u4", "genres": "piano"},
    ]
    both = load_mini_batch(batches[3].spec)
    assert both == [str(tmp_path / "u4/fall/piano.wav"), str(tmp_path / "u4/spring/piano.wav")]
    assert [b.n_items for b in batches] == [1, 1, 1, 2]
    assert describe(batches[3].spec) == "user='u4', genres='piano', 2 files: piano.wav, piano.wav"
    json.dumps([b.spec for b in batches])
    part = mini_batch_dataset(batches[3].spec)
    # Read from the spec alone, as a dataset is: the worker imports no dataset.
    assert not part.tabular and list(part.iter_files()) == both
    assert mini_batch_dataset(next(iter_mini_batches(dataset, 2)).spec) is None


# -- delimited and JSON lines ---------------------------------------------------------------------


def loaded_ids(batches: list[MiniBatch], column: str = "id") -> list[int]:
    return [i for b in batches for i in load_mini_batch(b.spec)[column].tolist()]


@pytest.mark.parametrize("size", [1, 10, 25, 64, 100, 1000, "1MB"])
def test_csv_byte_ranges_cover_every_record_once(tmp_path, size):
    csv_file(tmp_path / "a.csv", 0, 40)
    csv_file(tmp_path / "b.csv", 40, 3)
    csv_file(tmp_path / "c.csv", 43, 0)
    dataset = Dataset.Tabular.from_delimited_files(str(tmp_path / "*.csv"))
    batches = list(iter_mini_batches(dataset, size))
    assert loaded_ids(batches) == list(range(43))
    assert all(b.n_items is None for b in batches)
    for batch in batches:
        frame = load_mini_batch(batch.spec)
        assert list(frame.columns) == ["id", "name", "score"]
        assert batch.spec["start"] < batch.spec["end"]
        assert frame["name"].tolist() == [f"name-{i}" for i in frame["id"]]
    by_file = {}
    for batch in batches:
        by_file.setdefault(batch.spec["path"], []).append((batch.spec["start"], batch.spec["end"]))
    header = len("id,name,score\n")
    for path, ranges in by_file.items():
        assert ranges[0][0] == header and ranges[-1][1] == Path(path).stat().st_size
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert str(tmp_path / "c.csv") not in by_file


def test_csv_range_size_and_description(tmp_path):
    path = csv_file(tmp_path / "data.csv", 0, 1000)
    batches = list(iter_mini_batches(Dataset.Tabular.from_delimited_files(str(path)), "1KB"))
    assert len(batches) > 5
    line = max(len(row) + 1 for row in path.read_text().splitlines())
    assert all(b.spec["end"] - b.spec["start"] <= 1024 + line for b in batches)
    spec = batches[0].spec
    assert describe(spec) == f"data.csv bytes {spec['start']}–{spec['end']}"
    assert loaded_ids(batches) == list(range(1000))


def test_csv_without_header_and_final_newline(tmp_path):
    path = tmp_path / "raw.csv"
    path.write_text("".join(f"{i},x\n" for i in range(9)) + "9,x")
    dataset = Dataset.Tabular.from_delimited_files(str(path), header=False)
    for size in (1, 7, 1000):
        batches = list(iter_mini_batches(dataset, size))
        assert loaded_ids(batches, "Column1") == list(range(10))
        assert batches[0].spec["start"] == 0


def test_multi_line_csv_is_kept_whole(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text('id,text\n1,"two\nlines"\n2,plain\n')
    dataset = Dataset.Tabular.from_delimited_files(str(path), support_multi_line=True)
    batches = list(iter_mini_batches(dataset, 1))
    assert len(batches) == 1
    assert load_mini_batch(batches[0].spec)["text"].tolist() == ["two\nlines", "plain"]


def test_json_lines_ranges(tmp_path):
    for name, first in (("a.jsonl", 0), ("b.jsonl", 30)):
        rows = [json.dumps({"id": i, "text": "x" * (i % 7)}) for i in range(first, first + 30)]
        (tmp_path / name).write_text("\n".join(rows) + "\n")
    dataset = Dataset.Tabular.from_json_lines_files(str(tmp_path))
    for size in (1, 50, 300, "1MB"):
        batches = list(iter_mini_batches(dataset, size))
        assert loaded_ids(batches) == list(range(60))
        assert len({b.spec["path"] for b in batches}) == 2
    assert list(iter_mini_batches(dataset, "1MB"))[0].spec["kind"] == "json_lines"


# -- parquet --------------------------------------------------------------------------------------


def test_parquet_row_group_runs(tmp_path):
    table = pa.table({"id": list(range(100)), "payload": [f"row-{i}" * 10 for i in range(100)]})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=10)
    pq.write_table(table.slice(0, 5), tmp_path / "b.parquet", row_group_size=5)
    dataset = Dataset.Tabular.from_parquet_files(str(tmp_path))
    metadata = pq.ParquetFile(tmp_path / "a.parquet").metadata
    sizes = [
        sum(metadata.row_group(g).column(c).total_compressed_size for c in range(2))
        for g in range(metadata.num_row_groups)
    ]

    singles = list(iter_mini_batches(dataset, 1))
    assert [b.spec["row_groups"] for b in singles[:3]] == [[0], [1], [2]]
    assert len(singles) == 11 and singles[-1].spec["path"].endswith("b.parquet")
    assert [b.n_items for b in singles] == [10] * 10 + [5]

    pairs = list(iter_mini_batches(dataset, sizes[0] + sizes[1]))
    assert pairs[0].spec["row_groups"] == [0, 1]
    assert [b.n_items for b in pairs] == [len(load_mini_batch(b.spec)) for b in pairs]
    assert loaded_ids(pairs) == list(range(100)) + list(range(5))
    assert describe(pairs[0].spec) == "a.parquet row groups 0–1"
    assert len(list(iter_mini_batches(dataset, "1GB"))) == 2


# -- take/skip/sample and partition_keys ----------------------------------------------------------


def test_tabular_with_take_is_rewritten_in_scratch(tmp_path):
    csv_file(tmp_path / "in" / "a.csv", 0, 50)
    dataset = Dataset.Tabular.from_delimited_files(str(tmp_path / "in")).skip(5).take(30)
    with pytest.raises(ValueError, match="scratch_dir must be a folder"):
        list(iter_mini_batches(dataset, 100))
    batches = list(iter_mini_batches(dataset, 100, scratch_dir=tmp_path / "scratch"))
    assert len(batches) > 1
    assert loaded_ids(batches) == list(range(5, 35))
    assert sum(b.n_items for b in batches) == 30


def test_partition_keys(tmp_path):
    rows = pd.DataFrame(
        {
            "store": ["b", "a", "b", "a", "c", "a"],
            "day": [2, 1, 1, 1, 3, 2],
            "sales": [10, 20, 30, 40, 50, 60],
        }
    )
    rows.iloc[:3].to_csv(tmp_path / "1.csv", index=False)
    rows.iloc[3:].to_csv(tmp_path / "2.csv", index=False)
    dataset = Dataset.Tabular.from_delimited_files(str(tmp_path / "*.csv"))
    with pytest.raises(ValueError, match="scratch_dir must be a folder"):
        list(iter_mini_batches(dataset, None, partition_keys=["store"]))
    scratch = tmp_path / "scratch"
    batches = list(iter_mini_batches(dataset, None, partition_keys=["store", "day"],
                                     scratch_dir=scratch))  # fmt: skip
    contexts = [mini_batch_context(b.spec)["partition_key_value"] for b in batches]
    assert contexts == [
        {"store": "a", "day": 1},
        {"store": "a", "day": 2},
        {"store": "b", "day": 1},
        {"store": "b", "day": 2},
        {"store": "c", "day": 3},
    ]
    assert [b.id for b in batches] == [0, 1, 2, 3, 4]
    first = load_mini_batch(batches[0].spec)
    assert sorted(first["sales"].tolist()) == [20, 40] and batches[0].n_items == 2
    assert sum(len(load_mini_batch(b.spec)) for b in batches) == 6
    assert describe(batches[0].spec) == "partition store='a', day=1"
    json.dumps([b.spec for b in batches])
    part = mini_batch_dataset(batches[0].spec)
    pd.testing.assert_frame_equal(part.to_pandas_dataframe(), first)

    with pytest.raises(
        ValueError, match=r"'region'.*available columns: \['store', 'day', 'sales'\]"
    ):
        list(iter_mini_batches(dataset, None, partition_keys=["region"], scratch_dir=scratch))
    with pytest.raises(ValueError, match="partition_keys must be a non-empty list"):
        list(iter_mini_batches(dataset, None, partition_keys="store", scratch_dir=scratch))


def test_partition_keys_from_partition_format(tmp_path):
    for state, city in (("wa", "seattle"), ("or", "bend"), ("wa", "tacoma")):
        csv_file(tmp_path / state / city / "data.csv", 0, 2)
    dataset = Dataset.Tabular.from_delimited_files(
        str(tmp_path / "**/*.csv"), partition_format="{state}/{city}/data.csv"
    )
    batches = list(iter_mini_batches(dataset, "1MB", partition_keys=["state"],
                                     scratch_dir=tmp_path / "s"))  # fmt: skip
    assert [mini_batch_context(b.spec) for b in batches] == [
        {"partition_key_value": {"state": "or"}},
        {"partition_key_value": {"state": "wa"}},
    ]
    # Grouped by path: the files are not read to form the mini-batches.
    assert [b.spec["kind"] for b in batches] == ["partition_files", "partition_files"]
    assert sorted(load_mini_batch(batches[1].spec)["city"].unique()) == ["seattle", "tacoma"]
    part = mini_batch_dataset(batches[1].spec)
    assert part.tabular and part.format == "delimited"
    pd.testing.assert_frame_equal(part.to_pandas_dataframe(), load_mini_batch(batches[1].spec))
    plain = list(iter_mini_batches(dataset, "1MB"))
    assert load_mini_batch(plain[0].spec)["city"].tolist() == ["bend", "bend"]


def test_load_mini_batch_rejects_unknown_kind():
    with pytest.raises(ValueError, match='spec\\["kind"\\] must be'):
        load_mini_batch({"kind": "video"})
