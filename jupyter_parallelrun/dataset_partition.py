"""``mini_batch_context.dataset``: a partition mini-batch's part of the input, as a dataset.

A step with ``partition_keys`` gets one mini-batch per partition; an entry script that reads
``mini_batch_context.dataset`` gets that partition's files or rows as a dataset of its own,
made here from the mini-batch's spec. Only such a worker imports this module (and with it the
datasets).
"""

from __future__ import annotations

from typing import Any

from .dataset import FileDataset, TabularDataset


def mini_batch_dataset(spec: dict[str, Any]) -> FileDataset | TabularDataset | None:
    """``mini_batch_context.dataset``: a partition mini-batch's part of the input as a dataset
    of its own (its files, or its rows); None for a mini-batch that is not a partition.

    Only a worker whose entry script reads ``mini_batch_context.dataset`` calls this: the
    datasets are imported then, not to run every mini-batch."""
    kind = spec.get("kind")
    if kind == "files" and "keys" in spec:
        sources = [_file_source(path, spec.get("datastores", [])) for path in spec["paths"]]
        definition = {"type": "file", "sources": sources, "partition_format": None,
                      "transforms": []}  # fmt: skip
        return FileDataset.from_spec(definition)
    if kind == "partition":
        return TabularDataset.Tabular.from_parquet_files(path=spec["path"], validate=False)
    if kind != "partition_files":
        return None
    factory = {
        "delimited": TabularDataset.Tabular.from_delimited_files,
        "parquet": TabularDataset.Tabular.from_parquet_files,
        "json_lines": TabularDataset.Tabular.from_json_lines_files,
    }[spec["format"]]
    definition = factory(path=list(spec["paths"]), validate=False).to_spec()
    # The input's read options (column types, separator, storage) apply as they are.
    options = dict(spec["options"])
    definition["partition_format"] = options.pop("partition_format", None)
    definition["options"] = options
    return TabularDataset.from_spec(definition)


def _file_source(path: str, datastores: list[dict[str, Any]]) -> dict[str, Any]:
    """A dataset source for one file: on its blob datastore (credentials and all), or local."""
    for datastore in datastores:
        if path.startswith(datastore["root"] + "/"):
            return {"datastore": datastore, "path": path[len(datastore["root"]) + 1 :]}
    return {"path": path}
