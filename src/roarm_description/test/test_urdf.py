"""The project's URDF: joint names/order/limits equal joints.py; its FK (from its own origins) is the driver's."""

import math

import numpy as np
import pytest

from roarm_description import joints
from roarm_description.urdf_model import UrdfModel, default_urdf_path


@pytest.fixture(scope="module")
def model():
    return UrdfModel.from_file(default_urdf_path())


def test_frames_world_to_hand_tcp(model):
    assert model.root_link == "world"
    chain = [j.child for j in model.chain("hand_tcp")]
    assert chain == ["base_link", "link1", "link2", "link3", "link4", "link5", "hand_tcp"]
    assert model.chain("gripper_link")[-1].name == "link5_to_gripper_link"


def test_joint_table_is_read_from_the_urdf(model):
    # Limits of ../shared/roarm_m3_facts.md (URDF limits row); velocity as written in the URDF.
    expected = [("base_link_to_link1", -math.pi, math.pi), ("link1_to_link2", -math.pi / 2, math.pi / 2),
                ("link2_to_link3", -1.0, 2.95), ("link3_to_link4", -math.pi / 2, math.pi / 2),
                ("link4_to_link5", -math.pi, math.pi), ("link5_to_gripper_link", 0.0, 1.5)]
    assert [(j.urdf_name, pytest.approx(j.lower), pytest.approx(j.upper)) for j in joints.JOINTS] == expected
    assert joints.VELOCITY_LIMITS.tolist() == [3.0] * 6
    for urdf_joint in model.movable_joints:
        assert urdf_joint.axis == (0.0, 0.0, 1.0)  # every joint turns about its local z (roarm_m3_facts.md)


def test_an_edited_urdf_changes_the_joint_table(model):
    text = default_urdf_path().read_text()
    edited = text.replace('<limit lower="-1.0" upper="2.95" effort="3.0" velocity="3.0"/>',
                          '<limit lower="-0.5" upper="2.5" effort="3.0" velocity="1.25"/>')
    assert edited != text
    table = joints.joints_from_urdf(UrdfModel(edited))
    elbow = table[2]
    assert (elbow.urdf_name, elbow.lower, elbow.upper, elbow.velocity) == ("link2_to_link3", -0.5, 2.5, 1.25)
    assert elbow.firmware_key == "e" and elbow.home == pytest.approx(math.pi / 2)
    broken = text.replace('name="link4_to_link5"', 'name="wrist_roll"')
    with pytest.raises(ValueError, match="movable joints"):
        joints.joints_from_urdf(UrdfModel(broken))


def test_fixed_origins_from_facts(model):
    # Numbers from ../shared/roarm_m3_facts.md (Kinematics section).
    assert model.joints["world_to_base_link"].xyz == (0.0, 0.0, 0.0701)
    assert model.joints["link2_to_link3"].xyz == (0.236815, 0.030002, 0.0)
    assert model.joints["link5_to_hand_tcp"].xyz == (0.0, 0.0, 0.115428)


def test_home_pose_geometry(model):
    # At firmware home the upper arm is vertical and the forearm horizontal (elbow = pi/2): the TCP lies in the
    # x-z plane, in front of the base, at the sum of the horizontal offsets and of the vertical ones.
    tcp = model.positions(joints.JOINT_NAMES, joints.HOME_POSITIONS)[0]
    assert tcp[1] == pytest.approx(0.0, abs=1e-9)
    assert tcp[0] == pytest.approx(0.030002 + 0.144586 + 0.053653 + 0.115428, abs=1e-6)
    assert tcp[2] == pytest.approx(0.051959 + 0.236815 - 0.015147, abs=1e-6)
    # Base rotation turns the TCP about z without changing its height or radius.
    q = joints.HOME_POSITIONS.copy()
    q[0] = math.pi / 2
    turned = model.positions(joints.JOINT_NAMES, q)[0]
    assert turned[:2] == pytest.approx([0.0, tcp[0]], abs=1e-9)
    assert turned[2] == pytest.approx(tcp[2], abs=1e-12)


def _random_configurations(count, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(joints.LOWER_LIMITS, joints.UPPER_LIMITS, size=(count, joints.NUM_JOINTS))


def test_urdf_fk_agrees_with_driver_kinematics(model):
    from roarm_vla_bringup.action_markers import kinematics_tcp_fk

    pytest.importorskip("roarm_description.kinematics", reason="engineer E's roarm_description.kinematics not there yet")
    fk = kinematics_tcp_fk()
    rows = np.vstack([joints.HOME_POSITIONS, np.zeros(joints.NUM_JOINTS), _random_configurations(200)])
    expected = model.positions(joints.JOINT_NAMES, rows, tip="hand_tcp", base="base_link")
    np.testing.assert_allclose(fk(rows), expected, atol=1e-6)


def test_every_link_frame_agrees_with_driver_kinematics(model):
    # The ghost arm and the real arm are drawn by robot_state_publisher from this URDF: every frame (rotation
    # included), not just the TCP, must be where the driver's kinematics puts it.
    kinematics = pytest.importorskip("roarm_description.kinematics", reason="roarm_description.kinematics not there yet")
    rows = _random_configurations(50, seed=7)
    frames = kinematics.link_transforms_batch(rows)
    for link in ("link1", "link2", "link3", "link4", "link5", "gripper_link", "hand_tcp"):
        for row, expected in zip(rows, frames[link]):
            got = model.transform(dict(zip(joints.JOINT_NAMES, row)), link, "base_link")
            np.testing.assert_allclose(got, expected, atol=1e-9, err_msg=link)
    assert model.joints["world_to_base_link"].xyz[2] == pytest.approx(kinematics.BASE_LINK_HEIGHT)
