"""arm_driver.yaml is the single source of truth: same keys and types as the node declares, a reason per key,
and the node loads it through --params-file."""

from pathlib import Path

import pytest
import yaml

from roarm_common.parameters import check_value, parameter_table
from roarm_driver.arm_driver_node import PARAMETERS

CONFIG = Path(__file__).resolve().parents[2] / "roarm_vla_bringup" / "config" / "arm_driver.yaml"


def load():
    return yaml.safe_load(CONFIG.read_text())["arm_driver"]["ros__parameters"]


def test_yaml_keys_and_types_match_the_declared_parameters():
    params = load()
    table = parameter_table(PARAMETERS)
    assert set(params) == set(table)
    for name, value in params.items():
        assert type(value) is type(table[name].default), name
        assert not check_value(table[name], value), check_value(table[name], value)


def test_every_yaml_parameter_has_a_comment_with_its_reason():
    lines = CONFIG.read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and line.startswith("    ") and ":" in stripped:
            j = i - 1
            while j >= 0 and lines[j].strip().startswith("#") is False and lines[j].strip() and \
                    lines[j].startswith("    "):
                j -= 1  # keys grouped under one comment (rts, dtr)
            assert lines[j].strip().startswith("#"), f"no comment above {stripped}"


def test_node_loads_the_yaml_through_params_file():
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context
    from rclpy.parameter import Parameter
    from roarm_driver.arm_driver_node import ArmDriverNode
    from roarm_driver.firmware_sim import FirmwareSimulator

    context = Context()
    rclpy.init(context=context)
    sim = FirmwareSimulator(boot_text=False)
    sim.start()
    try:
        node = ArmDriverNode(context=context, cli_args=["--ros-args", "--params-file", str(CONFIG)],
                             parameter_overrides=[Parameter("port", value=sim.port)])
        try:
            assert node.get_parameter("max_step").value == load()["max_step"]
            assert node.get_parameter("port").value == sim.port
            from rclpy.lifecycle import TransitionCallbackReturn
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
        sim.stop()


def test_bad_parameter_is_refused_with_its_allowed_values():
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context
    from rclpy.parameter import Parameter
    from roarm_driver.arm_driver_node import ArmDriverNode

    context = Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(ValueError, match=r"limit_mode='ignore': must be one of \['clamp', 'reject'\]"):
            ArmDriverNode(context=context, parameter_overrides=[Parameter("limit_mode", value="ignore")])
    finally:
        rclpy.shutdown(context=context)
