"""The sections of an Environment that Azure applies when it builds an image, kept as Azure has
them: Docker, Spark, Databricks and R. Here they are recorded with the environment and reported
as not applied (``environment_check.not_applied_warnings``); nothing on this machine uses them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .environment_check import DEFAULT_CPU_IMAGE


@dataclasses.dataclass
class ContainerRegistry:
    """Where a Docker base image comes from, as Azure's (``env.docker.base_image_registry``).

    Recorded without its ``password``: it has no use here and is not written to the workspace.
    """

    address: str | None = None
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    registry_identity: Any = None


@dataclasses.dataclass
class DockerSection:
    """Docker settings of an Environment: recorded and reported, not applied."""

    enabled: bool = False
    base_image: str | None = DEFAULT_CPU_IMAGE
    base_dockerfile: str | None = None
    build_context: Any = None
    base_image_registry: ContainerRegistry = dataclasses.field(default_factory=ContainerRegistry)
    shm_size: str | None = None
    shared_volumes: bool = True
    gpu_support: bool = False
    arguments: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class SparkPackage:
    """A Spark package (Maven coordinates) of :class:`SparkSection`."""

    group: str | None = None
    artifact: str | None = None
    version: str | None = None


@dataclasses.dataclass
class SparkSection:
    """Spark settings of an Environment (Azure's defaults): recorded and reported, not applied."""

    repositories: list[str] = dataclasses.field(default_factory=list)
    packages: list[SparkPackage] = dataclasses.field(default_factory=list)
    precache_packages: bool = True


@dataclasses.dataclass
class DatabricksSection:
    """Databricks libraries of an Environment: recorded and reported, not applied."""

    maven_libraries: list[Any] = dataclasses.field(default_factory=list)
    pypi_libraries: list[Any] = dataclasses.field(default_factory=list)
    rcran_libraries: list[Any] = dataclasses.field(default_factory=list)
    jar_libraries: list[Any] = dataclasses.field(default_factory=list)
    egg_libraries: list[Any] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class RSection:
    """The R of an Environment (``env.r = RSection()``): recorded and reported, not applied."""

    r_version: str | None = None
    user_managed: bool = False
    rscript_path: str | None = None
    snapshot_date: str | None = None
    cran_packages: list[Any] = dataclasses.field(default_factory=list)
    github_packages: list[Any] = dataclasses.field(default_factory=list)
    custom_url_packages: list[str] = dataclasses.field(default_factory=list)
    bioconductor_packages: list[str] = dataclasses.field(default_factory=list)


def to_plain(value: Any) -> Any:
    """``value`` as JSON: Azure's library objects (MavenLibrary, CranPackage, ...) by their
    attributes, anything else unknown by its text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [f.name for f in dataclasses.fields(value) if f.name != "password"]
        return {name: to_plain(getattr(value, name)) for name in fields}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "__dict__"):
        return {k: to_plain(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


def section_from_spec(cls: type, spec: dict[str, Any] | None) -> Any:
    """``cls`` from its stored fields, ignoring fields a later version may have added."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in (spec or {}).items() if k in names})
