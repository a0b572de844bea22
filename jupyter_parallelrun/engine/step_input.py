"""A step's input, as the runner hands it to the scheduler, and its output's upload.

Where the input is (a dataset of its own, or the output folder of an earlier step, as the
step's description says) and the local paths the entry script's arguments name; on a resume,
which mini-batches are still to run and the counters of those already committed; the count of
all of them, made in the background for progress; and the two digests that reuse compares: the
step's definition and its fingerprint together with the input's.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..input_data import InputData, storage_options
from ..step_description import InputSpec, OutputLocation, StepDescription
from ..storage import filesystem, iter_local_files
from . import partition
from .budget import StepFailed
from .credentials import without_credentials
from .fingerprint import fingerprint_apart
from .mini_batch import describe

if TYPE_CHECKING:
    from ..store import RunStore


def upload_output(store: RunStore, output: OutputLocation) -> None:
    """Copy a completed step's output to its blob datastore (nothing to do for a local one).

    The rows were committed exactly once into the local folder first; a failed upload fails
    the step and leaves them there, and uploading again overwrites the same blobs. The
    datastore's credentials are read from the workspace's registry now, not from the run.
    """
    if not output.uploaded:
        return
    found = store.lookup("datastore", output.datastore)
    where = f"datastore {output.datastore!r}"
    if found is None:
        raise StepFailed(
            f"the output is committed in {output.folder}, but {where} is no longer "
            "registered in the workspace, so it cannot be uploaded"
        )
    spec = found[1]
    files = list(iter_local_files(output.folder))
    remote = f"{spec['root']}/{output.path_on_datastore}"
    try:
        if files:  # one call: adlfs uploads the files concurrently
            options = storage_options(spec)
            relative = [Path(f).relative_to(output.folder).as_posix() for f in files]
            destinations = [f"{remote}/{path}" for path in relative]
            filesystem("az", options, output.datastore).put(files, destinations)
    except Exception as error:  # noqa: BLE001 - whatever the storage raised, said plainly
        raise StepFailed(
            f"the output is committed in {output.folder}, but uploading it to {where} "
            f"({remote}) failed: {type(error).__name__}: {error}"
        ) from error


def input_dataset(plan: InputSpec, steps: dict[str, StepDescription]) -> InputData:
    """The data a step reads: its own dataset's, or the files in the output folder of the
    step that produces it."""
    if plan.dataset is not None:
        return InputData(plan.dataset)
    folder = steps[plan.producer].output.folder
    return InputData({"type": "file", "sources": [{"path": folder}], "partition_format": None,
                      "transforms": []})  # fmt: skip


def local_path(plan: str | InputSpec, steps: dict[str, StepDescription]) -> str:
    """What a side input or a dataset argument looks like to the script: a local path."""
    if isinstance(plan, str):
        return plan
    if plan.producer is not None:
        return steps[plan.producer].output.folder
    return input_dataset(plan, steps).mount_root()


def step_definition(step: StepDescription) -> str:
    """A digest of what the step runs, apart from its input: settings, arguments, side inputs
    and the entry script's source snapshot.

    The workers run the snapshot, so it is the snapshot's files that count, not the folder it
    was taken from: a resubmitted run's step is taken from the earlier run's snapshot, and
    unchanged, it is the same step."""
    digest = hashlib.sha256()
    described = step.to_json()
    ignored = ("description", "source_directory")
    settings = {k: v for k, v in described["config"].items() if k not in ignored}
    digest.update(
        json.dumps(
            [settings, described["arguments"], described["side_inputs"]],
            sort_keys=True,
            default=str,
        ).encode()
    )
    for path in sorted(Path(step.snapshot).rglob("*")):
        if path.is_file():
            digest.update(os.fsencode(path.relative_to(step.snapshot)))
            digest.update(path.read_bytes())
    return digest.hexdigest()


def step_fingerprint(definition: str, input_fingerprint: str) -> str:
    """What reuse compares: the step's definition and its input's fingerprint."""
    return hashlib.sha256(f"{definition}\0{input_fingerprint}".encode()).hexdigest()


def not_committed(mini_batches, committed: dict[int, dict]):
    """The mini-batches still to run. Committed ones are known by id, so on a resume the input
    must split as it did before; when it does not (a file deleted, or added before others),
    going on would skip or repeat items, and the step fails instead."""
    for mb in mini_batches:
        record = committed.get(mb.id)
        if record is None:
            yield mb
        elif json.loads(json.dumps(mb.spec)) != without_credentials(record["spec"]):
            raise StepFailed(
                f"the input changed since this run started: mini-batch {mb.id} was "
                f"{describe(record['spec'])}, now it is {describe(mb.spec)}; resuming would skip "
                "or repeat items, so submit a new run"
            )


def committed_counters(records) -> dict[str, int]:
    """The counters of the mini-batches committed before, for a resumed step run."""
    counters = {"items_done": 0, "items_failed": 0, "mb_done": 0, "mb_failed": 0}
    for mb in records:
        counters["mb_done" if mb["status"] == "done" else "mb_failed"] += 1
        counters["items_done"] += mb["succeeded"] or 0
        counters["items_failed"] += mb["failed"] or 0
    return counters


def signal_first(mini_batches, formed: threading.Event):
    """Pass the mini-batches through, setting ``formed`` once the first one is out (or none)."""
    mini_batches = iter(mini_batches)
    try:
        for mb in mini_batches:
            formed.set()
            yield mb
            break
    finally:
        formed.set()
    yield from mini_batches


def count_mini_batches(
    on_counted: Callable[[int], None],
    store,
    run_id: str,
    dataset: Any,
    size: int,
    keys,
    scratch,
    formed: threading.Event,
    unfingerprinted: str | None,
):
    """Count the mini-batches and items in the background, for progress and ETA; then, for a
    step whose fingerprint was not needed up front (``unfingerprinted``: its definition),
    record it for later ones, taken in a process of its own (see fingerprint.py).

    It waits until the scheduler has its first mini-batch, so the two listings of the input
    do not share the interpreter before the first dispatch.
    """
    formed.wait()
    mb_total, items = partition.count_mini_batches(
        dataset, size, partition_keys=keys, scratch_dir=scratch
    )
    on_counted(mb_total)
    store.update_run(run_id, mb_total=mb_total, items_total=items)
    if unfingerprinted is not None:
        store.update_run(
            run_id,
            fingerprint=step_fingerprint(unfingerprinted, fingerprint_apart(InputData.of(dataset))),
        )
