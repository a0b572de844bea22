"""What a pipeline's steps read and pass on: PipelineParameter, DatasetConsumptionConfig and
PipelineData, with the SDK v1 names and arguments, each checked when made.

The checks that ``pipeline.py`` shares for its steps (:func:`require_type`, :func:`is_dataset`,
:data:`SCALARS`) are here too.
"""

from __future__ import annotations

import re
from typing import Any

from .abstract_dataset import AbstractDataset

_PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_DATA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SCALARS = str | int | float | bool


def is_dataset(value: Any) -> bool:
    """Whether ``value`` is a FileDataset or a TabularDataset (a dataset of a kind)."""
    return isinstance(value, AbstractDataset) and bool(value._type)


def require_type(value: Any, kinds: Any, what: str, expected: str) -> Any:
    """``value``, or a TypeError saying that ``what`` must be ``expected``."""
    if not isinstance(value, kinds):
        raise TypeError(f"{what} must be {expected}; got {type(value).__name__}")
    return value


def _check_data_name(value: Any, what: str = "name") -> str:
    if not _DATA_NAME.match(require_type(value, str, what, "a string")):
        raise ValueError(
            f"{what} must be letters, digits and '_', starting with a letter or '_'; got {value!r}"
        )
    return value


class PipelineParameter:
    """A named value of a pipeline, overridable at ``submit(..., pipeline_parameters=...)``.

    Parameters
    ----------
    name : str
        Letters, digits, ``_``, ``-`` and ``.``, starting with a letter or ``_``.
    default_value : str, int, float, bool, Dataset or DatasetConsumptionConfig
        The value used when a submission does not override it.

    Examples
    --------
    >>> batch_size = PipelineParameter(name="batch_size_param", default_value="5")
    >>> batch_size.name, batch_size.default_value
    ('batch_size_param', '5')
    """

    def __init__(self, name: str, default_value: Any) -> None:
        if not _PARAMETER_NAME.match(require_type(name, str, "name", "a string")):
            raise ValueError(
                "name must be letters, digits, '_', '-' and '.', starting with a letter or '_'; "
                f"got {name!r}"
            )
        if not (
            isinstance(default_value, SCALARS | DatasetConsumptionConfig)
            or is_dataset(default_value)
        ):
            raise TypeError(
                f"default_value of PipelineParameter {name!r} must be a str, int, float, bool, "
                f"Dataset or DatasetConsumptionConfig; got {type(default_value).__name__}"
            )
        self.name = name
        self.default_value = default_value

    @property
    def holds_dataset(self) -> bool:
        """Whether the default is a Dataset (or a DatasetConsumptionConfig of one)."""
        return isinstance(self.default_value, DatasetConsumptionConfig) or is_dataset(
            self.default_value
        )

    def __repr__(self) -> str:
        return f"PipelineParameter(name={self.name!r}, default_value={self.default_value!r})"


class DatasetConsumptionConfig:
    """How a step consumes a dataset: the input's name and its mode.

    Parameters
    ----------
    name : str
        The input's name: letters, digits and ``_``, starting with a letter or ``_``.
    dataset_or_pipeline_parameter : Dataset or PipelineParameter
        The dataset, or a PipelineParameter whose default value is a dataset.
    mode : {"direct", "mount", "download"}
        Recorded as Azure records it; locally every mode reads the files in place.
    path_on_compute : str, optional
        Recorded; inputs are read where their datastore keeps them.
    """

    MODES = ("direct", "mount", "download")

    def __init__(
        self,
        name: str,
        dataset_or_pipeline_parameter: Any,
        mode: str = "direct",
        path_on_compute: str | None = None,
    ) -> None:
        self.name = _check_data_name(name)
        source = dataset_or_pipeline_parameter
        if isinstance(source, PipelineParameter):
            if not source.holds_dataset:
                raise TypeError(
                    "dataset_or_pipeline_parameter must be a Dataset or a PipelineParameter whose "
                    f"default_value is a Dataset; PipelineParameter {source.name!r} holds "
                    f"{source.default_value!r}"
                )
        elif not is_dataset(source):
            raise TypeError(
                "dataset_or_pipeline_parameter must be a Dataset or a PipelineParameter; "
                f"got {type(source).__name__}"
            )
        if mode not in self.MODES:
            raise ValueError(
                f"mode must be one of {', '.join(map(repr, self.MODES))}; got {mode!r}"
            )
        require_type(path_on_compute, str | None, "path_on_compute", "a string or None")
        self.dataset = source
        self.mode = mode
        self.path_on_compute = path_on_compute

    def as_mount(self, path_on_compute: str | None = None) -> DatasetConsumptionConfig:
        """The same input in ``mount`` mode."""
        return DatasetConsumptionConfig(self.name, self.dataset, "mount", path_on_compute)

    def as_download(self, path_on_compute: str | None = None) -> DatasetConsumptionConfig:
        """The same input in ``download`` mode."""
        return DatasetConsumptionConfig(self.name, self.dataset, "download", path_on_compute)

    def __repr__(self) -> str:
        return f"DatasetConsumptionConfig(name={self.name!r}, mode={self.mode!r})"


class PipelineData:
    """An output of one step, which a later step may take as an input.

    Parameters
    ----------
    name : str
        Letters, digits and ``_``, starting with a letter or ``_``; unique in a pipeline.
    datastore : Datastore, optional
        Where the output is written; the workspace's default datastore when None.
    output_path_on_compute : str, optional
        Recorded as Azure records it.
    output_name, output_mode, output_overwrite, data_type, is_directory
        Accepted as Azure accepts them and recorded.
    """

    OUTPUT_MODES = ("mount", "upload")

    def __init__(
        self,
        name: str,
        datastore: Any = None,
        output_name: str | None = None,
        output_mode: str = "mount",
        output_path_on_compute: str | None = None,
        output_overwrite: bool | None = None,
        data_type: str | None = None,
        is_directory: bool | None = None,
    ) -> None:
        self.name = _check_data_name(name)
        if datastore is not None and not isinstance(getattr(datastore, "name", None), str):
            raise TypeError(
                f"datastore must be a Datastore or None; got {type(datastore).__name__}"
            )
        if output_mode not in self.OUTPUT_MODES:
            raise ValueError(
                f"output_mode must be one of {', '.join(map(repr, self.OUTPUT_MODES))}; "
                f"got {output_mode!r}"
            )
        self.datastore = datastore
        self.output_name = output_name or name
        self.output_mode = output_mode
        self.output_path_on_compute = output_path_on_compute
        self.output_overwrite = output_overwrite
        self.data_type = data_type
        self.is_directory = is_directory

    def as_dataset(self) -> PipelineData:
        """This output, to be consumed as a dataset by a later step."""
        return self

    def as_input(self, input_name: str | None = None) -> PipelineData:
        """This output, to be consumed as an input by a later step."""
        return self

    def __repr__(self) -> str:
        return f"PipelineData(name={self.name!r})"
