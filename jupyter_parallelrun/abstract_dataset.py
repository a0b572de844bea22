"""What every dataset is, as Azure's ``azureml.data.abstract_dataset``: a definition.

A dataset stores *patterns* (local paths, globs, datastore paths) and options, never a file
list: the files are found when the dataset is used, in sorted order, as a stream. A dataset is
fully described by :meth:`AbstractDataset.to_spec`, which the engine uses to rebuild it in
another process, and :meth:`AbstractDataset.fingerprint` tells whether its content changed
(for ``allow_reuse``). ``take``, ``skip`` and ``take_sample`` add transforms to the definition.

This is the base the pipeline's inputs check a dataset against (``pipeline_inputs.py``);
``dataset.py`` builds :class:`~jupyter_parallelrun.dataset.Dataset` and its two kinds on it.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from .input_data import InputData
from .records import PARTITION_KEY
from .storage import Listings

if TYPE_CHECKING:
    from .workspace import Workspace

#: A dataset's own class: take, skip and take_sample return a dataset of the same kind.
_Dataset = TypeVar("_Dataset", bound="AbstractDataset")


class AbstractDataset:
    """A dataset's definition and what can be known from it alone.

    Parameters
    ----------
    definition : dict
        The sources, transforms and options, as ``Dataset.File`` or ``Dataset.Tabular`` made
        them.
    workspace : Workspace, optional
        The workspace it was found in, if any.

    Attributes
    ----------
    listings : storage.Listings or None
        Where its local folders are read, once for every listing of this dataset (the runner
        gives a step's input one); None: each listing reads them anew.
    """

    _type = ""

    def __init__(self, definition: dict[str, Any], workspace: Workspace | None = None) -> None:
        self._definition = definition
        self.workspace = workspace
        self.listings: Listings | None = None
        self.name: str | None = None
        self.version: int | None = None
        self.description: str | None = None
        self.tags: dict[str, str] = {}

    @property
    def id(self) -> str | None:
        """``"name:version"`` once registered, else None."""
        return None if self.name is None else f"{self.name}:{self.version}"

    @property
    def partition_keys(self) -> list[str]:
        """The column names that ``partition_format`` takes from file paths."""
        return PARTITION_KEY.findall(self._definition.get("partition_format") or "")

    # -- specs and fingerprints -------------------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        """A complete JSON-able description; ``Dataset.from_spec`` rebuilds the dataset from it."""
        return {
            **copy.deepcopy(self._definition),
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "tags": dict(self.tags),
        }

    @property
    def _data(self) -> InputData:
        """The definition, read (``input_data.py``: the engine reads it the same way)."""
        return InputData(self._definition, self.listings)

    def _source_files(self) -> Iterator[str]:
        """Every file the patterns match, sorted, each once, before take/skip/sample."""
        return self._data.source_files()

    def _storage(self) -> dict[str, dict]:
        return self._data.storage()

    def fingerprint(self) -> str:
        """sha256 over the definition and each file's path, size and modification time."""
        return self._data.fingerprint()

    # -- take, skip, sample -----------------------------------------------------------------

    def _with_transform(self: _Dataset, transform: list) -> _Dataset:
        definition = copy.deepcopy(self._definition)
        definition["transforms"].append(transform)
        return type(self)(definition, self.workspace)

    def take(self: _Dataset, count: int) -> _Dataset:
        """A new dataset with the first ``count`` files or records."""
        return self._with_transform(["take", _count("count", count)])

    def skip(self: _Dataset, count: int) -> _Dataset:
        """A new dataset without the first ``count`` files or records."""
        return self._with_transform(["skip", _count("count", count)])

    def take_sample(self: _Dataset, probability: float, seed: int | None = None) -> _Dataset:
        """A new dataset keeping each file or record with ``probability``.

        The sample is the same every time for the same ``seed``; without one a seed is drawn
        now and kept in the definition, so the sample still never changes.
        """
        if isinstance(probability, bool) or not isinstance(probability, (int, float)):
            raise ValueError(f"probability must be a number in [0, 1]; got {probability!r}")
        if not 0 <= probability <= 1:
            raise ValueError(f"probability must be a number in [0, 1]; got {probability!r}")
        if seed is None:
            seed = random.randrange(2**31)
        elif isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int or None; got {seed!r}")
        return self._with_transform(["sample", float(probability), seed])

    def _transformed_files(self) -> Iterator[str]:
        """The files with take, skip and sample applied, as a stream."""
        return self._data.iter_files()

    def __repr__(self) -> str:
        sources = [s.get("path") for s in self._definition["sources"]]
        label = f"name={self.name!r}, version={self.version}, " if self.name else ""
        return f"{type(self).__name__}({label}sources={sources})"


def _count(parameter: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{parameter} must be an int >= 0; got {value!r}")
    return value
