"""Kinematics: URDF chain by hand, against the firmware's own formula, IK round trips, limits, jaws."""

import math

import numpy as np
import pytest

from roarm_description import kinematics as kin
from roarm_description.joints import (
    GRIPPER_INDEX,
    HOME_POSITIONS,
    JOINT_NAMES,
    LOWER_LIMITS,
    UPPER_LIMITS,
    urdf_to_firmware,
)

RNG_SEED = 20261121


def random_joints(n: int, seed: int = RNG_SEED) -> np.ndarray:
    return np.random.default_rng(seed).uniform(LOWER_LIMITS, UPPER_LIMITS, size=(n, len(JOINT_NAMES)))


def firmware_point_in_base_link(q_urdf: np.ndarray) -> np.ndarray:
    """The firmware's x/y/z (mm, z from the shoulder) moved into base_link metres."""
    x, y, z, _ = kin.firmware_xyz(urdf_to_firmware(q_urdf))
    return np.array([x / 1000, y / 1000, z / 1000 + kin.SHOULDER_HEIGHT])


# --- forward kinematics, numbers worked out by hand from the URDF ----------------------------------------------------
def test_home_pose_tcp_from_urdf_numbers():
    # Home: upper arm up, forearm and tool horizontal. x = 30.002 (upper-arm offset) + 144.586 (forearm)
    # + 53.653 + 115.428 (wrist to tcp); z = 51.959 (shoulder) + 236.815 (upper arm) - 15.147 (tool below axis).
    pose = kin.forward_kinematics(HOME_POSITIONS)
    np.testing.assert_allclose(pose[:3, 3], [0.343669, 0.0, 0.273627], atol=1e-9)
    np.testing.assert_allclose(pose[:3, :3], np.eye(3), atol=1e-9)  # tool x forward, z up
    assert kin.tool_pitch(HOME_POSITIONS) == pytest.approx(0.0)


def test_all_zero_pose_points_straight_up():
    pose = kin.forward_kinematics(np.zeros(6))
    np.testing.assert_allclose(pose[:3, 3], [0.030002 + 0.015147, 0.0, 0.051959 + 0.236815 + 0.144586 + 0.169081],
                               atol=1e-9)
    np.testing.assert_allclose(pose[:3, 0], [0, 0, 1], atol=1e-9)  # approach axis up


def test_firmware_home_matches_its_init_position():
    # The firmware's initX = l2B + l3A + l4A, initZ = l2A - l4B, initT = 0 (RoArm-M3_config.h).
    x, y, z, tit = kin.firmware_xyz([0.0, 0.0, math.pi / 2, 0.0, 0.0, math.pi])
    assert (x, y, z, tit) == pytest.approx((30.0 + 144.49 + 171.67, 0.0, 236.82 - 13.69, 0.0))


def test_joint_directions():
    base = HOME_POSITIONS.copy()
    home_tcp = kin.tcp_position(base)
    # base + turns left (+y), shoulder + leans forward and down, wrist + pitches the tool down.
    q = base.copy(); q[0] = 0.3
    assert kin.tcp_position(q)[1] > 0.05
    np.testing.assert_allclose(np.hypot(*kin.tcp_position(q)[:2]), home_tcp[0], atol=1e-12)
    q = base.copy(); q[1] = 0.3
    assert kin.tcp_position(q)[0] > home_tcp[0] and kin.tcp_position(q)[2] < home_tcp[2]
    q = base.copy(); q[3] = 0.3
    assert kin.tcp_position(q)[2] < home_tcp[2]
    assert kin.forward_kinematics(q)[2, 0] < 0  # approach axis tilted down
    # Roll and gripper turn about axes through hand_tcp: the TCP stays put, the orientation does not (roll).
    q = base.copy(); q[4] = 1.0; q[5] = 1.2
    np.testing.assert_allclose(kin.tcp_position(q), home_tcp, atol=1e-12)
    assert not np.allclose(kin.forward_kinematics(q)[:3, :3], np.eye(3))


def test_link_transforms_lists_every_frame_in_chain_order():
    frames = kin.link_transforms(HOME_POSITIONS)
    assert [name for name, _ in frames] == list(kin.LINK_FRAMES)
    assert frames[0][0] == "base_link" and np.allclose(frames[0][1], np.eye(4))
    np.testing.assert_allclose(dict(frames)["hand_tcp"], kin.forward_kinematics(HOME_POSITIONS))
    np.testing.assert_allclose(dict(frames)["link2"][:3, 3], [0, 0, kin.SHOULDER_HEIGHT], atol=1e-12)
    for _, pose in frames:  # proper rigid transforms
        np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-12)
        assert np.linalg.det(pose[:3, :3]) == pytest.approx(1.0)


def test_batch_equals_single():
    q_batch = random_joints(50)
    positions = kin.tcp_positions(q_batch)
    assert positions.shape == (50, 3)
    for q, p in zip(q_batch, positions):
        np.testing.assert_allclose(p, kin.tcp_position(q), atol=1e-12)
    frames = kin.link_transforms_batch(q_batch)
    np.testing.assert_allclose(frames["link3"][7], dict(kin.link_transforms(q_batch[7]))["link3"], atol=1e-12)


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((2, 7)), [0, 0, float("nan"), 0, 0, 0]])
def test_bad_joint_vectors_are_rejected(bad):
    with pytest.raises(ValueError):
        kin.tcp_positions(np.atleast_2d(bad))
    with pytest.raises(ValueError):
        kin.forward_kinematics(np.atleast_1d(np.asarray(bad, dtype=float)))


def test_world_frame_is_base_link_raised_by_the_base_height():
    p = kin.tcp_position(HOME_POSITIONS)
    np.testing.assert_allclose(kin.base_link_to_world(p), p + [0, 0, 0.0701])
    np.testing.assert_allclose(kin.world_to_base_link(kin.base_link_to_world(p)), p)


# --- the URDF chain against the firmware's own formula -------------------------------------------------------------
def test_chain_equals_its_planar_reduction():
    q_batch = random_joints(500)
    chain = kin.tcp_positions(q_batch)
    planar = np.array([kin.planar_position(q) for q in q_batch])
    np.testing.assert_allclose(chain, planar, atol=1e-12)


def test_firmware_numbers_in_the_urdf_model_reproduce_the_firmware_exactly():
    # Same signs, zeros and axes: only link numbers differ (and z's origin, the shoulder pivot).
    fw_geometry = kin.PlanarGeometry.firmware()
    for q in random_joints(500):
        np.testing.assert_allclose(kin.planar_position(q, fw_geometry), firmware_point_in_base_link(q), atol=1e-12)


def test_firmware_point_is_fixed_in_link4_and_differs_from_hand_tcp_by_the_tool_numbers():
    q_batch = random_joints(500)
    link4 = kin.link_transforms_batch(q_batch)["link4"]
    firmware_from_urdf = (link4 @ np.append(kin.FIRMWARE_POINT_IN_LINK4, 1.0))[:, :3]
    firmware = np.array([firmware_point_in_base_link(q) for q in q_batch])
    # Residual = forearm 144.586 vs 144.49 mm and upper arm (236.815, 30.002) vs (236.82, 30.0): < 0.11 mm.
    assert np.abs(firmware_from_urdf - firmware).max() < 0.11e-3
    # Raw TCP difference: the tool numbers (2.589 mm along, 1.457 mm across) plus that residual, never more.
    distance = np.linalg.norm(kin.tcp_positions(q_batch) - firmware, axis=1)
    assert distance.max() < math.hypot(2.589, 1.457) * 1e-3 + 0.11e-3
    assert distance.min() > math.hypot(2.589, 1.457) * 1e-3 - 0.11e-3
    # tit is the URDF tool pitch; x/y share the base angle.
    for q in q_batch[:50]:
        x, y, _, tit = kin.firmware_xyz(urdf_to_firmware(q))
        assert tit == pytest.approx(kin.tool_pitch(q))
        if math.hypot(x, y) > 1.0:
            tcp = kin.tcp_position(q)
            assert math.atan2(y, x) == pytest.approx(math.atan2(tcp[1], tcp[0]), abs=0.02)


def test_firmware_xyz_ignores_roll_and_gripper():
    q = np.array([0.4, 0.2, 1.2, -0.3, 0.0, math.pi])
    reference = kin.firmware_xyz(q)
    q[4], q[5] = 2.0, 1.5
    assert kin.firmware_xyz(q) == pytest.approx(reference)


# --- inverse kinematics ------------------------------------------------------------------------------------------------
def test_ik_round_trip_over_random_reachable_targets():
    for q in random_joints(400, seed=7):
        target = kin.tcp_position(q)
        pitch = kin.tool_pitch(q)
        solution = kin.inverse_kinematics(target, pitch=pitch, roll=q[4], gripper=q[GRIPPER_INDEX], q_seed=q)
        np.testing.assert_allclose(kin.tcp_position(solution), target, atol=1e-9)
        assert kin.tool_pitch(solution) == pytest.approx(pitch, abs=1e-9)
        assert np.all(solution >= LOWER_LIMITS) and np.all(solution <= UPPER_LIMITS)
        # Seeded with the sampled joints, IK returns them (the closest solution).
        np.testing.assert_allclose(solution, q, atol=1e-9)


def test_ik_top_down_picks_on_the_table():
    table_z = kin.world_to_base_link([0, 0, 0.02])[2]  # a 4 cm object's centre on the surface
    for x in np.linspace(0.15, 0.32, 5):
        for y in np.linspace(-0.15, 0.15, 5):
            q = kin.inverse_kinematics([x, y, table_z], pitch=math.pi / 2, gripper=0.8)
            pose = kin.forward_kinematics(q)
            np.testing.assert_allclose(pose[:3, 3], [x, y, table_z], atol=1e-9)
            np.testing.assert_allclose(pose[:3, 0], [0, 0, -1], atol=1e-9)  # approach straight down
            assert q[GRIPPER_INDEX] == 0.8
            assert np.all(q >= LOWER_LIMITS) and np.all(q <= UPPER_LIMITS)


def test_ik_lists_every_solution_and_the_seed_picks_among_them():
    q = np.array([2.059, -0.285, 1.171, -1.484, 0.0, 0.0])  # reachable facing it and turned away, elbow both ways
    target, pitch = kin.tcp_position(q), kin.tool_pitch(q)
    solutions = kin.inverse_kinematics_all(target, pitch=pitch)
    assert len(solutions) == 4
    assert len({tuple(np.round(s, 6)) for s in solutions}) == 4
    for solution in solutions:
        np.testing.assert_allclose(kin.tcp_position(solution), target, atol=1e-9)
        assert kin.tool_pitch(solution) == pytest.approx(pitch)
        np.testing.assert_allclose(kin.inverse_kinematics(target, pitch=pitch, q_seed=solution + 0.05), solution)


@pytest.mark.parametrize(
    "target, pitch, reason",
    [
        ([0.8, 0.0, 0.1], math.pi / 2, "arm spans"),  # far beyond reach
        ([0.10, 0.0, 0.0], -0.5, "outside"),  # close in, tool pointing up: shoulder/wrist past their limits
        ([0.0, 0.0, 0.62], 0.0, "arm spans"),
    ],
)
def test_ik_unreachable_raises_clear_error(target, pitch, reason):
    with pytest.raises(ValueError, match=reason):
        kin.inverse_kinematics(target, pitch=pitch)
    assert not kin.is_reachable(target, pitch)


@pytest.mark.parametrize("target", [[float("nan"), 0, 0], [0.2, 0.0], "abc"])
def test_ik_bad_target_raises(target):
    with pytest.raises((ValueError, TypeError)):
        kin.inverse_kinematics(target)


def test_radial_reach_bounds_are_reachable_and_tight():
    z = kin.world_to_base_link([0, 0, 0.02])[2]
    r_min, r_max = kin.radial_reach(z)
    assert 0.0 <= r_min < 0.15 < 0.3 < r_max < 0.45
    for r in np.linspace(r_min, r_max, 20):
        for angle in (-1.0, 0.0, 2.0):
            assert kin.is_reachable([r * math.cos(angle), r * math.sin(angle), z])
    assert not kin.is_reachable([r_max + 0.002, 0.0, z])


# --- gripper jaws ------------------------------------------------------------------------------------------------------
def test_closed_jaw_tip_meets_the_tcp_and_opens_across_the_tool():
    q = HOME_POSITIONS.copy()
    np.testing.assert_allclose(kin.jaw_tip_position(q), kin.tcp_position(q), atol=1e-12)
    gaps = []
    for g in np.linspace(0.0, 1.5, 7):
        q[GRIPPER_INDEX] = g
        hand = kin.forward_kinematics(q)
        offset_in_hand = hand[:3, :3].T @ (kin.jaw_tip_position(q) - hand[:3, 3])
        gaps.append(-offset_in_hand[1])  # the jaw opens towards hand_tcp -y
        assert abs(offset_in_hand[2]) < 1e-12
        assert gaps[-1] == pytest.approx(kin.gripper_gap(g), abs=1e-12)
        assert kin.gripper_for_gap(kin.gripper_gap(g)) == pytest.approx(g)
    assert np.all(np.diff(gaps) > 0)
    assert 0.05 < gaps[-1] < 0.07  # about 63 mm fully open
    np.testing.assert_allclose(kin.grasp_point(q), 0.5 * (kin.tcp_position(q) + kin.jaw_tip_position(q)))
    with pytest.raises(ValueError):
        kin.gripper_for_gap(0.2)


def test_jaw_tip_batch_equals_single():
    q_batch = random_joints(20)
    tips = kin.jaw_tip_positions(q_batch)
    for q, tip in zip(q_batch, tips):
        np.testing.assert_allclose(tip, kin.jaw_tip_position(q), atol=1e-12)


# --- the firmware's own Cartesian IK (T:104 / T:1041) --------------------------------------------------------------------
def test_firmware_ik_inverts_firmware_xyz_on_the_firmware_branch():
    rng = np.random.default_rng(11)
    fw_mm = kin.PlanarGeometry(0.0, kin.FW_L2A, kin.FW_L2B, kin.FW_L3A, kin.FW_L4A, kin.FW_L4B)
    checked = 0
    for _ in range(400):
        # Elbow-up poses (the firmware's branch) whose wrist lies in front of the base axis.
        q = np.array([rng.uniform(-math.pi, math.pi), rng.uniform(-1.2, 1.2), rng.uniform(0.2, 2.6),
                      rng.uniform(-1.4, 1.4), rng.uniform(-1, 1), rng.uniform(1.1, 3.1)])
        wrist_r = kin.FW_L2B * math.cos(q[1]) + kin.FW_L2A * math.sin(q[1]) + kin.FW_L3A * math.sin(q[1] + q[2])
        tcp_r = kin.planar_tcp(q[1], q[2], q[3], fw_mm)[0]
        if wrist_r < 1.0 or tcp_r < 1.0:  # wrist and tool point in front of the base axis
            continue
        x, y, z, tit = kin.firmware_xyz(q)
        solution = kin.firmware_inverse_kinematics(x, y, z, tit, q[4], q[5])
        np.testing.assert_allclose(solution, q, atol=1e-9)
        assert kin.firmware_xyz(solution) == pytest.approx((x, y, z, tit), abs=1e-6)
        # The same answer as the general IK with the firmware's numbers (elbow up, facing the target).
        general = kin._ik_candidates(np.array([x, y, z]), tit, q[4], q[5], fw_mm)[0][0]
        np.testing.assert_allclose(kin.wrap_to_limits(general)[:4], kin.wrap_to_limits(solution)[:4], atol=1e-9)
        checked += 1
    assert checked > 250
    x, y, z, tit = kin.firmware_xyz([0.0, 0.0, math.pi / 2, 0.0, 0.0, math.pi])
    np.testing.assert_allclose(kin.firmware_inverse_kinematics(x, y, z, tit), [0, 0, math.pi / 2, 0, 0, math.pi],
                               atol=1e-9)


def test_firmware_ik_wrist_behind_the_axis_and_out_of_reach():
    # Tool pitched 0.5 rad down reaches ~144 mm forward of the wrist; a target 50 mm from the axis would need the
    # wrist behind it: the firmware puts the wrist on the base axis with the base at 0 instead.
    q = kin.firmware_inverse_kinematics(30.0, 40.0, 100.0, 0.5)
    assert q[0] == 0.0
    x, y, z, tit = kin.firmware_xyz(q)
    reach = math.hypot(kin.FW_L4A, kin.FW_L4B) * math.cos(0.5 + math.atan2(kin.FW_L4B, kin.FW_L4A))
    assert (x, y, z, tit) == pytest.approx((reach, 0.0, 100.0, 0.5), abs=1e-6)
    with pytest.raises(ValueError, match="firmware IK"):
        kin.firmware_inverse_kinematics(900.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        kin.firmware_inverse_kinematics(float("nan"), 0.0, 0.0, 0.0)
