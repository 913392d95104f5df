"""Joint conventions shared by every package: names, order, limits, firmware <-> URDF <-> SDK degrees."""

import math

import numpy as np
import pytest

from roarm_description import joints


def test_names_and_order_follow_the_urdf_chain():
    assert joints.JOINT_NAMES == (
        "base_link_to_link1", "link1_to_link2", "link2_to_link3",
        "link3_to_link4", "link4_to_link5", "link5_to_gripper_link",
    )
    assert joints.FIRMWARE_KEYS == ("b", "s", "e", "t", "r", "g")
    assert np.all(joints.LOWER_LIMITS < joints.UPPER_LIMITS)


def test_gripper_is_pi_minus_g_and_the_conversion_is_its_own_inverse():
    firmware = [0.1, -0.2, math.pi / 2, 0.3, -0.4, math.pi]  # g = pi: gripper closed
    urdf = joints.firmware_to_urdf(firmware)
    assert urdf[:5] == pytest.approx(firmware[:5])
    assert urdf[5] == pytest.approx(0.0)  # closed = 0 in the URDF convention
    assert joints.urdf_to_firmware(urdf) == pytest.approx(firmware)
    batch = np.array([firmware, firmware])
    assert joints.firmware_to_urdf(batch)[:, 5] == pytest.approx([0.0, 0.0])


def test_firmware_home_maps_to_urdf_home():
    firmware_home = [0.0, 0.0, math.pi / 2, 0.0, 0.0, math.pi]
    assert joints.firmware_to_urdf(firmware_home) == pytest.approx(joints.HOME_POSITIONS)


def test_seed_report_state_reads_as_sdk_degrees():
    # The seed report's first state [b, s, e, t, r, pi-g] in degrees; round trip through URDF radians.
    seed_state = [0.79, 31.73, -1.05, 68.38, 7.47, 1.93]
    urdf = joints.sdk_degrees_to_urdf(seed_state)
    assert urdf[1] == pytest.approx(math.radians(31.73))
    assert joints.urdf_to_sdk_degrees(urdf) == pytest.approx(seed_state)


def test_order_by_names_reorders_and_names_bad_joints():
    names = list(reversed(joints.JOINT_NAMES))
    values = [float(i) for i in range(6)]
    ordered = joints.order_by_names(names, values)
    assert ordered == pytest.approx(list(reversed(values)))
    with pytest.raises(ValueError, match="unknown joint name.*elbow"):
        joints.order_by_names(["elbow", *joints.JOINT_NAMES[1:]], values)
    with pytest.raises(ValueError, match="missing joint name.*base_link_to_link1"):
        joints.order_by_names(joints.JOINT_NAMES[1:], values[1:])


def test_limits_clamp_and_violations():
    q = joints.HOME_POSITIONS.copy()
    q[2] = 3.5  # elbow above its 2.95 limit
    assert joints.limit_violations(joints.HOME_POSITIONS) == []
    assert joints.limit_violations(q) == ["link2_to_link3=3.500 outside [-1.000, 2.950]"]
    assert joints.clamp_to_limits(q)[2] == pytest.approx(2.95)
