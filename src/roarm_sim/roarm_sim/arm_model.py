"""The arm's geometry as the sim world needs it: what to draw, where the jaws clamp, and the pick IK.

ROS-free. Every number comes from the project's shared kinematics module (``roarm_description.kinematics``), so the
rendered arm, the grasp geometry and the expert agree with the driver, the URDF and the firmware. Only the
pick-specific glue lives here.

Gripper geometry (from the kinematics module): hand_tcp is the FIXED jaw's tip, the moving jaw turns about
gripper_link's z and opens towards hand_tcp's -y; the gap across the tool axis is ``gripper_gap(angle)``.
A box of width w is clamped with its centre at the midpoint of the two tips at the angle whose gap is w.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from roarm_description import joints, kinematics

HALF_PI = math.pi / 2
GRIPPER_OPEN_ANGLE = float(joints.UPPER_LIMITS[joints.GRIPPER_INDEX])
MAX_GAP = kinematics.gripper_gap(GRIPPER_OPEN_ANGLE)


def jaw_gap(gripper_angle: float) -> float:
    """Distance across the tool axis between the jaw tips (m) for a URDF gripper angle (0 = closed)."""
    return kinematics.gripper_gap(float(gripper_angle))


def gripper_angle_for_gap(gap: float) -> float:
    """URDF gripper angle that opens the jaws by ``gap`` metres (ValueError beyond what the gripper opens)."""
    return kinematics.gripper_for_gap(float(gap))


def tcp_transform(q: Sequence[float]) -> np.ndarray:
    """4x4 pose of hand_tcp (the fixed jaw's tip) in base_link; its x axis is the tool's approach direction."""
    return kinematics.forward_kinematics(np.asarray(q, dtype=float))


def clamp_point_in_tcp(box_width: float) -> np.ndarray:
    """Where a clamped box of this width has its centre, in hand_tcp's frame (constant per width).

    Both jaw tips are fixed in link5 for a given gripper angle, so the midpoint is too; it is computed once from
    the kinematics module at an arbitrary arm pose.
    """
    q = joints.HOME_POSITIONS.copy()
    q[joints.GRIPPER_INDEX] = gripper_angle_for_gap(min(box_width, MAX_GAP))
    tcp = tcp_transform(q)
    return tcp[:3, :3].T @ (kinematics.grasp_point(q) - tcp[:3, 3])


@dataclass(frozen=True)
class ArmDrawing:
    """3-D points (base_link, metres) that the renderer draws as the arm."""

    links: list[np.ndarray]  # polyline: base, shoulder, elbow, wrist, roll joint
    fixed_jaw: tuple[np.ndarray, np.ndarray]  # (root, tip)
    moving_jaw: tuple[np.ndarray, np.ndarray]  # (pivot, tip)
    tcp: np.ndarray


def arm_drawing(q: Sequence[float]) -> ArmDrawing:
    """The arm's polyline and jaws for joint positions q (URDF order, radians)."""
    q = np.asarray(q, dtype=float)
    frames = dict(kinematics.link_transforms(q))
    tcp_pose = frames["hand_tcp"]
    tcp = tcp_pose[:3, 3].copy()
    pivot = frames["gripper_link"][:3, 3].copy()
    links = [frames[name][:3, 3].copy() for name in ("base_link", "link2", "link3", "link4", "link5")]
    fixed_root = tcp - kinematics.JAW_LENGTH * tcp_pose[:3, 0]
    return ArmDrawing(links=links, fixed_jaw=(fixed_root, tcp), moving_jaw=(pivot, kinematics.jaw_tip_position(q)),
                      tcp=tcp)


# --- pick IK ------------------------------------------------------------------------------------------------
def roll_aligning_jaws(base: float, pitch: float, box_yaw: float) -> float:
    """Wrist roll (rad, |roll| <= pi/4) that turns the jaws' closing axis parallel to a face normal of a box with
    this yaw, for a tool pitched ``pitch`` below horizontal with the base at ``base`` (a square box has face
    normals every pi/2, so the smallest roll is never more than pi/4)."""
    def jaw_heading(roll: float) -> float:
        y_axis = tcp_transform([base, 0.0, HALF_PI + pitch, 0.0, roll, 0.0])[:3, 1]
        return math.atan2(y_axis[1], y_axis[0])

    h0 = jaw_heading(0.0)
    sign = 1.0 if _wrap(jaw_heading(0.1) - h0) > 0 else -1.0
    delta = (box_yaw - h0 + math.pi / 4) % (math.pi / 2) - math.pi / 4
    return sign * delta


def solve_grasp_ik(clamp_point: Sequence[float], box_width: float, box_yaw: float, pitches: Sequence[float],
                   gripper: float, seed: Sequence[float] | None = None) -> np.ndarray | None:
    """Joint positions that put the jaws' clamp point (for a box ``box_width`` wide) at ``clamp_point``, jaws
    aligned to the box's faces, trying the tool pitches in order (steepest first); None when none is reachable.
    """
    target = np.asarray(clamp_point, dtype=float)
    offset = clamp_point_in_tcp(box_width)
    for pitch in pitches:
        tcp_target = target.copy()
        q = None
        for _ in range(4):  # the offset turns with the base angle: a few fixed-point passes converge
            base = math.atan2(tcp_target[1], tcp_target[0])
            roll = roll_aligning_jaws(base, pitch, box_yaw)
            try:
                q = kinematics.inverse_kinematics(tcp_target, pitch=pitch, roll=roll, gripper=gripper, q_seed=seed)
            except ValueError:
                q = None
                break
            tcp_target = target - tcp_transform(q)[:3, :3] @ offset
        if q is not None:
            return q
    return None


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi
