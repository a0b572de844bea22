"""Blob credentials travel once per worker, never inside a mini-batch spec.

A mini-batch spec is kept for good (the ``mini_batches`` table of ``store.sqlite`` and the
step's ``logs/mini_batches.jsonl``) and sent with every try. The credentials of a step's blob
datastores (their storage options, a connection string holding the account key or SAS token,
and the secret fields of the datastores ``mini_batch_context.dataset`` is rebuilt on) are the
same for every mini-batch of the step. So each spec names only the datastore roots it reads
(``"storage": ["az://container"]``); the runner hands the credentials to each worker once, in
its start-up arguments (stdin, from an unnamed 0600 file), and the worker's inbox puts them
back into each spec it receives (``fetch.Inbox``).
"""

from __future__ import annotations

from typing import Any

#: The fields of a datastore's spec that let one in.
SECRET_FIELDS = ("account_key", "sas_token")


def step_credentials(dataset: Any) -> dict[str, Any]:
    """What every worker of a step over ``dataset`` gets once: the storage options of its blob
    datastores and their secret fields, each by datastore root; empty for local input."""
    storage = dataset.storage()
    if not storage:
        return {}
    datastores = {}
    for source in dataset.to_spec()["sources"]:
        datastore = source.get("datastore") or {}
        if datastore.get("root") in storage:
            secrets = {key: datastore[key] for key in SECRET_FIELDS if datastore.get(key)}
            datastores[datastore["root"]] = secrets
    return {"storage": storage, "datastores": datastores}


def without_credentials(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` naming its datastores' roots in place of their storage options, and without
    their secret fields. A spec stored before credentials left the specs comes out as one
    made now (resume compares them). A spec with none of those fields is returned as it is
    (the local files of every mini-batch of a big step: no copy per mini-batch)."""
    if "storage" not in spec and "options" not in spec and "datastores" not in spec:
        return spec
    clean = dict(spec)
    if isinstance(spec.get("storage"), dict):
        clean["storage"] = sorted(spec["storage"])
    if isinstance((spec.get("options") or {}).get("storage"), dict):
        clean["options"] = {**spec["options"], "storage": sorted(spec["options"]["storage"])}
    if "datastores" in spec:
        clean["datastores"] = [
            {key: value for key, value in datastore.items() if key not in SECRET_FIELDS}
            for datastore in spec["datastores"]
        ]
    return clean


def with_credentials(spec: dict[str, Any], credentials: dict[str, Any]) -> dict[str, Any]:
    """``spec`` as the partitioner made it: the storage options and secret fields of the
    datastores it names, from the ``credentials`` its worker was started with."""
    storage = credentials.get("storage", {})
    full = dict(spec)
    if isinstance(spec.get("storage"), list):
        full["storage"] = {root: storage[root] for root in spec["storage"]}
    if isinstance((spec.get("options") or {}).get("storage"), list):
        roots = spec["options"]["storage"]
        full["options"] = {**spec["options"], "storage": {root: storage[root] for root in roots}}
    if "datastores" in spec:
        secrets = credentials.get("datastores", {})
        full["datastores"] = [
            {**datastore, **secrets.get(datastore["root"], {})} for datastore in spec["datastores"]
        ]
    return full
