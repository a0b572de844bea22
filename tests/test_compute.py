"""Compute targets: provisioning settings, create, open by name, status, delete, node limits."""

from __future__ import annotations

import pytest

from jupyter_parallelrun import AmlCompute, ComputeTarget
from jupyter_parallelrun.compute import check_node_count


def test_provisioning_configuration():
    config = AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V2", max_nodes=2)
    assert (config.vm_size, config.min_nodes, config.max_nodes) == ("STANDARD_D2_V2", 0, 2)
    assert AmlCompute.provisioning_configuration(vnet_name="ignored").max_nodes == 4


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"max_nodes": 0}, ValueError, "max_nodes must be an int >= 1; got 0"),
        ({"max_nodes": 2.0}, TypeError, "max_nodes must be an int >= 1; got 2.0"),
        ({"min_nodes": -1}, ValueError, "min_nodes must be an int >= 0; got -1"),
        ({"min_nodes": 3, "max_nodes": 2}, ValueError, "min_nodes must be <= max_nodes=2; got 3"),
        ({"vm_priority": "spot"}, ValueError, "vm_priority must be one of 'dedicated', 'lowpri"),
        ({"vm_size": 2}, TypeError, "vm_size must be a string; got 2"),
        ({"idle_seconds_before_scaledown": -5}, ValueError, "idle_seconds_before_scaledown must"),
    ],
)
def test_provisioning_configuration_rejects(settings, error, message):
    with pytest.raises(error, match=message):
        AmlCompute.provisioning_configuration(**settings)


def test_create_and_open(ws):
    config = AmlCompute.provisioning_configuration(max_nodes=2)
    compute = ComputeTarget.create(ws, "cpucluster", config)
    assert isinstance(compute, AmlCompute)
    assert (compute.name, compute.type, compute.max_nodes) == ("cpucluster", "AmlCompute", 2)
    assert compute.wait_for_completion(show_output=False) is None
    opened = ComputeTarget(workspace=ws, name="cpucluster")
    assert isinstance(opened, AmlCompute) and opened.max_nodes == 2
    assert AmlCompute(ws, "cpucluster").to_spec() == compute.to_spec()
    assert sorted(ws.compute_targets) == ["cpucluster"]
    assert [c.name for c in ComputeTarget.list(ws)] == ["cpucluster"]


def test_create_again_takes_the_new_settings(ws):
    ComputeTarget.create(ws, "cpucluster", AmlCompute.provisioning_configuration(max_nodes=2))
    again = ComputeTarget.create(
        ws, "cpucluster", AmlCompute.provisioning_configuration(max_nodes=8)
    )
    assert again.max_nodes == 8 and ComputeTarget(ws, "cpucluster").max_nodes == 8


def test_create_rejects(ws):
    config = AmlCompute.provisioning_configuration()
    for bad in ("1cluster", "c", "cpu_cluster", "x" * 25):
        with pytest.raises(ValueError, match=f"name must be 2 to 24 letters.*got '{bad}'"):
            ComputeTarget.create(ws, bad, config)
    with pytest.raises(TypeError, match="provisioning_configuration must come from"):
        ComputeTarget.create(ws, "cpucluster", {"max_nodes": 2})


def test_unknown_name_lists_the_targets(ws):
    with pytest.raises(ValueError, match="no compute target 'gpu' .*are: \\(none\\)"):
        ComputeTarget(ws, "gpu")
    ComputeTarget.create(ws, "cpucluster", AmlCompute.provisioning_configuration())
    with pytest.raises(ValueError, match="no compute target 'gpu' .*are: cpucluster"):
        ComputeTarget(ws, "gpu")


def test_status(ws, capsys):
    config = AmlCompute.provisioning_configuration(
        min_nodes=1, max_nodes=3, vm_priority="lowpriority"
    )
    compute = ComputeTarget.create(ws, "cpucluster", config)
    compute.wait_for_completion(show_output=True)
    assert "Succeeded" in capsys.readouterr().out
    status = compute.get_status().serialize()
    assert status["provisioningState"] == "Succeeded"
    assert (status["currentNodeCount"], status["targetNodeCount"]) == (0, 1)
    assert status["scaleSettings"] == {
        "minNodeCount": 1,
        "maxNodeCount": 3,
        "nodeIdleTimeBeforeScaleDown": "PT1800S",
    }
    assert status["nodeStateCounts"]["runningNodeCount"] == 0
    assert status["vmPriority"] == "LowPriority"


def test_delete(ws):
    ComputeTarget.create(ws, "cpucluster", AmlCompute.provisioning_configuration()).delete()
    with pytest.raises(ValueError, match="no compute target 'cpucluster'"):
        ComputeTarget(ws, "cpucluster")
    assert ws.compute_targets == {}


def test_check_node_count(ws):
    compute = ComputeTarget.create(
        ws, "cpucluster", AmlCompute.provisioning_configuration(max_nodes=4)
    )
    check_node_count(compute.to_spec(), 4)
    with pytest.raises(
        ValueError, match="node_count=5 exceeds max_nodes=4 of compute target 'cpucluster'"
    ):
        check_node_count(compute.to_spec(), 5)
