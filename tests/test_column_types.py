"""Column types of delimited datasets: inferred once when the dataset is made (dates too),
Azure's DataType in set_column_types, and the same types in every mini-batch."""

from __future__ import annotations

import pandas as pd
import pytest

from jupyter_parallelrun import Dataset, DataType
from jupyter_parallelrun.engine.mini_batch import load_mini_batch
from jupyter_parallelrun.engine.partition import iter_mini_batches
from jupyter_parallelrun.engine.rows import format_rows, result_rows

OJ = """WeekStarting,Store,Brand,Price,Advert,Sold,When,Stamp,Empty
1990-06-14,2,dominicks,1.59,True,10,06/14/1990,1990-06-14 10:30:00,
1990-06-21,5,tropicana,2.5,False,0,06/21/1990,1990-06-21 11:00:00,
"""


def test_types_are_inferred_when_the_dataset_is_made(tmp_path):
    (tmp_path / "oj.csv").write_text(OJ)
    dataset = Dataset.Tabular.from_delimited_files(str(tmp_path / "oj.csv"))
    kinds = {column: spec["type"] for column, spec in dataset.options["column_types"].items()}
    assert kinds == {"WeekStarting": "datetime", "Store": "long", "Brand": "string",
                     "Price": "float", "Advert": "bool", "Sold": "long", "When": "datetime",
                     "Stamp": "datetime", "Empty": "string"}  # fmt: skip
    assert dataset.options["column_types"]["When"]["formats"] == ["%m/%d/%Y"]
    frame = dataset.to_pandas_dataframe()
    assert frame["WeekStarting"].tolist() == [
        pd.Timestamp("1990-06-14"),
        pd.Timestamp("1990-06-21"),
    ]
    assert frame["When"].tolist() == frame["WeekStarting"].tolist()
    assert frame["Stamp"].iloc[0] == pd.Timestamp("1990-06-14 10:30")
    assert frame["Store"].dtype == "int64" and frame["Price"].dtype == "float64"
    assert frame["Advert"].tolist() == [True, False] and frame["Brand"].tolist()[0] == "dominicks"
    assert frame["Empty"].isna().all()
    text = Dataset.Tabular.from_delimited_files(str(tmp_path / "oj.csv"), infer_column_types=False)
    assert "column_types" not in text.options
    assert text.to_pandas_dataframe()["Store"].tolist() == ["2", "5"]


def test_every_mini_batch_reads_the_same_types(tmp_path):
    # Per byte range, pandas would read "007" alone as the number 7: the inferred type keeps
    # the column text in every mini-batch, and a numeric column numeric.
    rows = ["code,qty"] + [f"x{i},{i}" for i in range(200)] + [f"{i:03d},{i}" for i in range(200)]
    (tmp_path / "codes.csv").write_text("\n".join(rows) + "\n")
    dataset = Dataset.Tabular.from_delimited_files(str(tmp_path / "codes.csv"))
    batches = [load_mini_batch(b.spec) for b in iter_mini_batches(dataset, "1KB")]
    assert len(batches) > 2
    assert all(batch["qty"].dtype == "int64" for batch in batches)
    assert batches[-1]["code"].tolist()[-1] == "199" and batches[-1]["code"].iloc[0][0] != "x"
    assert {type(code) for batch in batches for code in batch["code"]} == {str}
    # A missing integer in one range: that range reads nullable integers, the others int64.
    rows[-1] = "199,"
    (tmp_path / "codes.csv").write_text("\n".join(rows) + "\n")
    last = [load_mini_batch(b.spec) for b in iter_mini_batches(dataset, "1KB")][-1]
    assert str(last["qty"].dtype) == "Int64" and last["qty"].isna().sum() == 1


def test_set_column_types_takes_azures_data_types(tmp_path):
    (tmp_path / "oj.csv").write_text(OJ)
    (tmp_path / "eu.csv").write_text("price;ok;day\n1,5;ja;14.06.1990\n2,25;nein;21.06.1990\n")
    types = {
        "Store": DataType.to_string(),
        "Sold": DataType.to_float(),
        "Price": "str",
        "When": DataType.to_datetime(["%d/%m/%Y", "%m/%d/%Y"]),
        "Advert": DataType.to_bool(),
    }
    frame = Dataset.Tabular.from_delimited_files(
        str(tmp_path / "oj.csv"), set_column_types=types
    ).to_pandas_dataframe()
    assert frame["Store"].tolist() == ["2", "5"] and frame["Price"].tolist() == ["1.59", "2.5"]
    assert frame["Sold"].dtype == "float64"
    assert frame["When"].tolist() == [pd.Timestamp("1990-06-14"), pd.Timestamp("1990-06-21")]
    european = Dataset.Tabular.from_delimited_files(
        str(tmp_path / "eu.csv"), separator=";",
        set_column_types={"price": DataType.to_float(decimal_mark=","),
                          "ok": DataType.to_bool(["ja"], ["nein"]),
                          "day": DataType.to_datetime("%d.%m.%Y")},
    ).to_pandas_dataframe()  # fmt: skip
    assert european["price"].tolist() == [1.5, 2.25] and european["ok"].tolist() == [True, False]
    assert european["day"].iloc[1] == pd.Timestamp("1990-06-21")
    assert repr(DataType.to_datetime("%d.%m.%Y")) == "DataType.to_datetime(formats=['%d.%m.%Y'])"
    assert DataType.to_long() == DataType.to_long() != DataType.to_string()


def test_column_type_errors_name_the_column_and_the_value(tmp_path):
    (tmp_path / "oj.csv").write_text(OJ)
    path = str(tmp_path / "oj.csv")
    with pytest.raises(
        ValueError, match=r"column 'Brand' of .* cannot be read as DataType\.to_long"
    ):
        Dataset.Tabular.from_delimited_files(
            path, set_column_types={"Brand": DataType.to_long()}
        ).to_pandas_dataframe()
    with pytest.raises(ValueError, match="'dominicks' is in neither true_values nor false_values"):
        Dataset.Tabular.from_delimited_files(
            path, set_column_types={"Brand": DataType.to_bool()}
        ).to_pandas_dataframe()
    with pytest.raises(ValueError, match=r"'06/14/1990' matches none of formats \['%Y-%m-%d'\]"):
        Dataset.Tabular.from_delimited_files(
            path, set_column_types={"When": DataType.to_datetime("%Y-%m-%d")}
        ).to_pandas_dataframe()
    with pytest.raises(ValueError, match=r"set_column_types\['Store'\] must be a DataType"):
        Dataset.Tabular.from_delimited_files(path, set_column_types={"Store": 3})
    with pytest.raises(ValueError, match='decimal_mark must be "." or ","'):
        DataType.to_float(decimal_mark=";")
    with pytest.raises(ValueError, match='mismatch_as must be "error", "true" or "false"'):
        DataType.to_bool(mismatch_as="maybe")
    # Data not there yet (validate=False): the types are left to each read.
    later = Dataset.Tabular.from_delimited_files(str(tmp_path / "later/*.csv"), validate=False)
    assert later.options["column_types"] == {}


def test_dates_in_append_row_output_are_one_field_each():
    day = pd.to_datetime(["1990-06-14", "1990-06-21"])
    frame = pd.DataFrame(
        {"day": day, "at": pd.to_datetime(["1990-06-14 10:30", None]), "n": [1, 2]}
    )
    assert (
        format_rows(result_rows(frame, 2)[0])
        == b"1990-06-14 1990-06-14T10:30:00 1\n1990-06-21 NaT 2\n"
    )
