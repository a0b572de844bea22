"""The mini-batch log: one JSON record per line, the text ``json.dumps`` writes, the spec
encoded once for the store and the log."""

from __future__ import annotations

import json

import pytest

from jupyter_parallelrun.engine.logs import StepLogs, encode_json

ODD = [
    {"kind": "files", "paths": ["caf\u00e9.png", "bad-\udcff.png", 'quote".png', "tab\t.png"]},
    {"kind": "delimited", "path": "/d/x.csv", "start": 0, "end": 10, "options": {"header": True}},
    {"nested": [1, 2.5, None, False, {"a": []}], "big": 10**30, "tiny": 1e-300},
]


@pytest.mark.parametrize("value", ODD)
def test_encode_json_writes_what_json_dumps_writes(value):
    assert encode_json(value) == json.dumps(value)


def test_not_json_is_refused_as_json_refuses_it():
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode_json({"spec": object()})


def test_each_line_is_its_record_with_the_spec_given(tmp_path):
    records = [
        {
            "run_id": "run-1",
            "mb_id": i,
            "spec": spec,
            "status": "failed" if i else "done",
            "error": 'ValueError: "spec": null' if i else None,
            "started": 1.5,
            "ended": None,
        }
        for i, spec in enumerate(ODD)
    ]
    logs = StepLogs(tmp_path)
    logs.mini_batches(records, [json.dumps(r["spec"]) for r in records])
    logs.close()
    lines = (tmp_path / "mini_batches.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == json.loads(json.dumps(records))
    assert lines == [json.dumps(r) for r in records]
