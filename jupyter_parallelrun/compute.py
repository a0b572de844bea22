"""Compute targets: where a step's worker processes run.

An ``AmlCompute`` target is local: its N nodes are groups of worker processes on this machine,
so creating one only records its settings and waiting for it returns at once. Each kind of
target stores a ``"type"`` in its spec; ``ComputeTarget(workspace, name)`` returns an object of
the class registered for that type, so other kinds (``DaskCompute``, a Dask cluster, in
``dask_compute.py``) add a subclass. The spec also names the kind's ``"backend"``, by which the
runner finds where to start the workers (``engine/backends``), without knowing the types.
"""

from __future__ import annotations

import importlib
import re
import time
from typing import TYPE_CHECKING, Any, ClassVar

from .environment_check import check_environment
from .settings import check_int
from .workspace import register_collection

if TYPE_CHECKING:
    from .workspace import Workspace

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,23}$")
VM_PRIORITIES = ("dedicated", "lowpriority")
#: Modules of the kinds of target defined outside this one, imported when first needed.
_MODULES = {"DaskCompute": "jupyter_parallelrun.dask_compute"}


def check_name(name: Any) -> str:
    """A compute target's name, or a ValueError saying what a name may be."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"name must be 2 to 24 letters, digits and '-', starting with a letter; got {name!r}"
        )
    return name


class AmlComputeProvisioningConfiguration:
    """The settings of an AmlCompute target, from :meth:`AmlCompute.provisioning_configuration`."""

    compute_type = "AmlCompute"

    def __init__(
        self,
        vm_size: str = "",
        vm_priority: str = "dedicated",
        min_nodes: int = 0,
        max_nodes: int = 4,
        idle_seconds_before_scaledown: int = 1800,
        **kwargs: Any,
    ) -> None:
        if not isinstance(vm_size, str):
            raise TypeError(f"vm_size must be a string; got {vm_size!r}")
        if vm_priority not in VM_PRIORITIES:
            raise ValueError(
                f"vm_priority must be one of {', '.join(map(repr, VM_PRIORITIES))}; "
                f"got {vm_priority!r}"
            )
        check_int("min_nodes", min_nodes, 0)
        check_int("max_nodes", max_nodes, 1)
        if min_nodes > max_nodes:
            raise ValueError(f"min_nodes must be <= max_nodes={max_nodes}; got {min_nodes}")
        check_int("idle_seconds_before_scaledown", idle_seconds_before_scaledown, 0)
        self.vm_size = vm_size
        self.vm_priority = vm_priority
        self.min_nodes = min_nodes
        self.max_nodes = max_nodes
        self.idle_seconds_before_scaledown = idle_seconds_before_scaledown

    def to_spec(self) -> dict[str, Any]:
        """The settings as a JSON-able dict."""
        return {
            "vm_size": self.vm_size,
            "vm_priority": self.vm_priority,
            "min_nodes": self.min_nodes,
            "max_nodes": self.max_nodes,
            "idle_seconds_before_scaledown": self.idle_seconds_before_scaledown,
        }


class ComputeTarget:
    """A named compute target of a workspace.

    ``ComputeTarget(workspace, name)`` opens a registered target, as an object of its own class
    (an :class:`AmlCompute` for ``type == "AmlCompute"``).

    Parameters
    ----------
    workspace : Workspace
        The workspace holding the target.
    name : str
        The target's name.

    Examples
    --------
    >>> config = AmlCompute.provisioning_configuration(max_nodes=2)       # doctest: +SKIP
    >>> compute = ComputeTarget.create(ws, "cpucluster", config)            # doctest: +SKIP
    >>> compute.wait_for_completion(show_output=True)                       # doctest: +SKIP
    """

    #: The class for each stored ``"type"``; a subclass with a ``compute_type`` joins it.
    _classes: ClassVar[dict[str, type[ComputeTarget]]] = {}
    compute_type: ClassVar[str] = ""
    #: The name the runner finds this kind's backend by (stored in the spec as ``"backend"``).
    backend: ClassVar[str] = "local"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.compute_type:
            ComputeTarget._classes[cls.compute_type] = cls

    def __new__(cls, workspace: Workspace, name: str) -> ComputeTarget:
        spec = _lookup(workspace, name)
        if spec["type"] in _MODULES:
            importlib.import_module(_MODULES[spec["type"]])
        target_class = ComputeTarget._classes.get(spec["type"])
        if target_class is None:
            raise ValueError(
                f"compute target {name!r} has type {spec['type']!r}, which this version does "
                f"not know; known types: {', '.join(sorted(ComputeTarget._classes))}"
            )
        if not issubclass(target_class, cls):
            raise TypeError(f"compute target {name!r} is a {spec['type']}, not a {cls.__name__}")
        return super().__new__(target_class)

    def __init__(self, workspace: Workspace, name: str) -> None:
        self.workspace = workspace
        self.name = name
        self._spec = _lookup(workspace, name)

    @staticmethod
    def create(workspace: Workspace, name: str, provisioning_configuration: Any) -> ComputeTarget:
        """Register a compute target; one of that name takes the new settings.

        Parameters
        ----------
        workspace : Workspace
            The workspace to hold it.
        name : str
            2 to 24 letters, digits and ``-``, starting with a letter.
        provisioning_configuration : AmlComputeProvisioningConfiguration
            From :meth:`AmlCompute.provisioning_configuration`, or
            :meth:`DaskCompute.provisioning_configuration` (which starts a Dask cluster on
            this machine).
        """
        check_name(name)
        compute_type = getattr(provisioning_configuration, "compute_type", None)
        if compute_type not in ComputeTarget._classes:
            raise TypeError(
                "provisioning_configuration must come from "
                "AmlCompute.provisioning_configuration() or "
                "DaskCompute.provisioning_configuration(); "
                f"got {type(provisioning_configuration).__name__}"
            )
        spec = {
            "type": compute_type,
            "backend": ComputeTarget._classes[compute_type].backend,
            "name": name,
            **provisioning_configuration.to_spec(),
            "created": time.time(),
        }
        existing = workspace.store.lookup("compute", name)
        if existing is not None:
            spec["created"] = existing[1].get("created", spec["created"])
            ComputeTarget(workspace, name)._release()
        spec = ComputeTarget._classes[compute_type]._provision(workspace, spec)
        workspace.store.register("compute", name, spec, new_version=False)
        return ComputeTarget(workspace, name)

    @classmethod
    def _provision(cls, workspace: Workspace, spec: dict[str, Any]) -> dict[str, Any]:
        """Start what a new target needs; returns the spec to store (a local target: as is)."""
        return spec

    def _release(self) -> None:  # noqa: B027 - a hook: only targets that start something stop it
        """Stop what :meth:`_provision` started, before the target is deleted or replaced."""

    @staticmethod
    def list(workspace: Workspace) -> list[ComputeTarget]:
        """Every compute target of ``workspace``."""
        return [ComputeTarget(workspace, name) for name, _, _ in workspace.store.entries("compute")]

    @property
    def type(self) -> str:
        """The kind of target, as stored: ``"AmlCompute"``."""
        return self._spec["type"]

    @property
    def provisioning_state(self) -> str:
        """Always ``"Succeeded"``: a local target is ready when created."""
        return "Succeeded"

    def wait_for_completion(
        self,
        show_output: bool = False,
        min_node_count: int | None = None,
        timeout_in_minutes: int = 20,
    ) -> None:
        """Return at once: a local target is ready when created."""
        if show_output:
            print(f"{self.type} {self.name!r}: provisioning operation finished, Succeeded")

    def delete(self) -> None:
        """Remove the target from the workspace (stopping what creating it started)."""
        self._release()
        self.workspace.store.unregister("compute", self.name)

    def check_step(self, node_count: int, environment: dict[str, Any] | None) -> list[str]:
        """Raise when a step cannot run here with these settings; returns warnings to show.

        Parameters
        ----------
        node_count : int
            The step's resolved node_count: at most ``max_nodes``.
        environment : dict or None
            ``Environment.to_spec()``: checked against the Python of this machine's workers.
        """
        check_node_count(self._spec, node_count)
        return check_environment(environment)

    def to_spec(self) -> dict[str, Any]:
        """The target's stored settings, ``"type"`` and ``"name"`` among them."""
        return dict(self._spec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workspace={self.workspace.name!r}, name={self.name!r})"


def _lookup(workspace: Workspace, name: str) -> dict[str, Any]:
    found = workspace.store.lookup("compute", name)
    if found is None:
        names = [n for n, _, _ in workspace.store.entries("compute")]
        raise ValueError(
            f"no compute target {name!r} in workspace {workspace.name!r}; "
            f"its compute targets are: {', '.join(names) or '(none)'}"
        )
    return found[1]


class AmlComputeStatus:
    """The state of an AmlCompute target, as ``get_status()`` returns it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.current_node_count = 0
        self.target_node_count = spec["min_nodes"]
        self.provisioning_state = "Succeeded"
        self.allocation_state = "Steady"
        self._spec = spec

    def serialize(self) -> dict[str, Any]:
        """The status as Azure's REST API spells it."""
        spec = self._spec
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(spec.get("created", 0)))
        return {
            "currentNodeCount": self.current_node_count,
            "targetNodeCount": self.target_node_count,
            "nodeStateCounts": {
                "idleNodeCount": 0,
                "leavingNodeCount": 0,
                "preemptedNodeCount": 0,
                "preparingNodeCount": 0,
                "runningNodeCount": 0,
                "unusableNodeCount": 0,
            },
            "allocationState": self.allocation_state,
            "creationTime": created,
            "modifiedTime": created,
            "errors": None,
            "provisioningState": self.provisioning_state,
            "scaleSettings": {
                "minNodeCount": spec["min_nodes"],
                "maxNodeCount": spec["max_nodes"],
                "nodeIdleTimeBeforeScaleDown": f"PT{spec['idle_seconds_before_scaledown']}S",
            },
            "vmPriority": spec["vm_priority"].capitalize().replace("Lowpriority", "LowPriority"),
            "vmSize": spec["vm_size"],
        }


class AmlCompute(ComputeTarget):
    """A local compute target of ``max_nodes`` nodes: groups of processes on this machine."""

    compute_type = "AmlCompute"

    @staticmethod
    def provisioning_configuration(
        vm_size: str = "",
        vm_priority: str = "dedicated",
        min_nodes: int = 0,
        max_nodes: int = 4,
        idle_seconds_before_scaledown: int = 1800,
        **kwargs: Any,
    ) -> AmlComputeProvisioningConfiguration:
        """The settings of a new AmlCompute target.

        ``vm_size`` and ``vm_priority`` are recorded; ``max_nodes`` bounds a step's node_count.
        Azure's other arguments (``vnet_name``, ``admin_username``, ...) are accepted and
        ignored: there is no cloud resource to configure.
        """
        return AmlComputeProvisioningConfiguration(
            vm_size, vm_priority, min_nodes, max_nodes, idle_seconds_before_scaledown, **kwargs
        )

    @property
    def max_nodes(self) -> int:
        """The most nodes a step may use."""
        return self._spec["max_nodes"]

    @property
    def min_nodes(self) -> int:
        """Recorded as Azure records it."""
        return self._spec["min_nodes"]

    @property
    def vm_size(self) -> str:
        """Recorded as Azure records it."""
        return self._spec["vm_size"]

    def get_status(self) -> AmlComputeStatus:
        """The target's state; a local target is always provisioned and steady."""
        return AmlComputeStatus(self._spec)


def check_where_it_runs(
    workspace: Workspace,
    compute_target: str | None,
    node_count: int,
    environment: dict[str, Any] | None,
) -> list[str]:
    """Raise when a step cannot run where its workers will; returns warnings to show.

    The check ``submit()`` makes, and ``resume()`` makes again before a runner starts (the
    cluster, or the Python the workers run, may have changed since): on a compute target its
    :meth:`ComputeTarget.check_step` (on a Dask cluster, every Dask worker), else the
    environment against this machine's Python.

    Parameters
    ----------
    workspace : Workspace
        The workspace the step runs in.
    compute_target : str or None
        The step's compute target's name; None for this machine.
    node_count : int
        The step's resolved node_count.
    environment : dict or None
        ``Environment.to_spec()``.
    """
    if compute_target:
        return ComputeTarget(workspace, compute_target).check_step(node_count, environment)
    return check_environment(environment)


def check_node_count(compute_spec: dict[str, Any], node_count: int) -> None:
    """Raise when a step asks for more nodes than its compute target has.

    Parameters
    ----------
    compute_spec : dict
        ``ComputeTarget.to_spec()``.
    node_count : int
        The step's resolved node_count.
    """
    max_nodes = compute_spec.get("max_nodes")
    if max_nodes is not None and node_count > max_nodes:
        raise ValueError(
            f"node_count={node_count} exceeds max_nodes={max_nodes} of compute target "
            f"{compute_spec.get('name')!r}"
        )


register_collection(
    "compute_targets",
    lambda ws: {name: ComputeTarget(ws, name) for name, _, _ in ws.store.entries("compute")},
)
