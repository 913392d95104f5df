"""sim_world.yaml and scripted_expert.yaml are the one source of truth for their nodes: every key the node declares,
with a value of the declared type inside the declared range; the table refuses what the node would refuse."""

import pytest
import yaml

pytest.importorskip("rclpy")  # the node modules import rclpy at module level

from roarm_common.parameters import check_value, compatible, parameter_table  # noqa: E402
from roarm_sim import scripted_expert_node, sim_world_node  # noqa: E402
from roarm_sim.sim_world_node import PARAMETERS  # noqa: E402
from roarm_vla_bringup import graph as g  # noqa: E402


@pytest.mark.parametrize("node, module", [("sim_world", sim_world_node), ("scripted_expert", scripted_expert_node)])
def test_yaml_lists_every_declared_parameter_with_an_allowed_value(node, module):
    values = yaml.safe_load(g.config_path(f"{node}.yaml").read_text())[node]["ros__parameters"]
    table = parameter_table(module.PARAMETERS)
    assert set(values) == set(table)
    for name, value in values.items():
        assert compatible(table[name], value), (name, value)
        assert not check_value(table[name], value), check_value(table[name], value)


def test_out_of_range_values_are_refused_by_name():
    table = parameter_table(PARAMETERS)
    assert "camera_rate=0.0" in check_value(table["camera_rate"], 0.0)
    assert "must be within [0.0, 60.0]" in check_value(table["fault_camera_dropout_s"], -1.0)
    assert check_value(table["box_size"], [0.025, 0.5])  # one element out of range
    assert not check_value(table["fault_camera_dropout_s"], 5.0)
    expert = parameter_table(scripted_expert_node.PARAMETERS)
    assert "perturbation_std=-0.1" in check_value(expert["perturbation_std"], -0.1)
    assert check_value(expert["command_rate"], 0.0)  # a zero rate would divide by zero in the timer
