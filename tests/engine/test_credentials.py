"""Credentials out of mini-batch specs and back: the shapes the partitioner makes for blob
input, as plain dicts (the processes are in tests/test_blob.py)."""

from __future__ import annotations

import pytest

from jupyter_parallelrun.engine.credentials import with_credentials, without_credentials

ROOT = "az://box"
OPTIONS = {ROOT: {"connection_string": "BlobEndpoint=http://h;AccountName=a;AccountKey=k=="}}
DATASTORE = {"name": "blobs", "root": ROOT, "account_name": "a", "account_key": "k=="}
CREDENTIALS = {"storage": OPTIONS, "datastores": {ROOT: {"account_key": "k=="}}}

#: Specs as main stored them before credentials left the specs: files, tabular, path keys.
MADE = [
    {"kind": "files", "paths": [f"{ROOT}/a.txt"], "storage": OPTIONS},
    {"kind": "delimited", "path": f"{ROOT}/t.csv", "options": {"header": True, "storage": OPTIONS}},
    {"kind": "files", "paths": [f"{ROOT}/u/a.txt"], "storage": OPTIONS, "datastores": [DATASTORE]},
    {"kind": "parquet", "path": "/local/t.parquet", "row_groups": [0], "options": {}},
]


@pytest.mark.parametrize("spec", MADE, ids=["files", "delimited", "path keys", "local"])
def test_a_spec_loses_its_credentials_and_its_worker_puts_them_back(spec):
    clean = without_credentials(spec)
    assert "k==" not in repr(clean)
    assert without_credentials(clean) == clean  # a spec stored that way compares equal
    assert with_credentials(clean, CREDENTIALS) == spec


def test_a_clean_spec_names_the_roots_it_reads():
    clean = without_credentials(MADE[1])
    assert clean["options"] == {"header": True, "storage": [ROOT]}
    assert without_credentials(MADE[2])["datastores"] == [
        {"name": "blobs", "root": ROOT, "account_name": "a"}
    ]
