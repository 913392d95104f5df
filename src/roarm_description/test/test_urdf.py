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


def test_movable_joints_match_joints_py(model):
    movable = model.movable_joints
    assert [j.name for j in movable] == list(joints.JOINT_NAMES)
    for urdf_joint, spec in zip(movable, joints.JOINTS):
        assert urdf_joint.type == "revolute"
        assert urdf_joint.lower == pytest.approx(spec.lower, abs=1e-9), urdf_joint.name
        assert urdf_joint.upper == pytest.approx(spec.upper, abs=1e-9), urdf_joint.name
        assert urdf_joint.axis == (0.0, 0.0, 1.0)  # every joint turns about its local z (roarm_m3_facts.md)


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
