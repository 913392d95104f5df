"""Box physics, kept simple and explicit (no contacts, no pushing):

- GRASP: the box becomes grasped at the moment the jaws close to narrower than the box while the box centre is
  within a tolerance of the jaws' clamp point (the midpoint of the jaw tips at the gap that equals the box's
  width), provided the jaws were open wider than the box there first (closing on the box, not bumping a closed
  gripper into it).
- While grasped the box keeps its pose relative to the TCP (it follows the gripper).
- RELEASE: when the jaws open wider than the box plus a margin, the box drops straight down onto the table top
  (keeps x, y and its yaw; no bounce, no tipping).

ROS-free: ``step(q)`` with the arm's measured joints is all the world calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from roarm_description import joints

from . import arm_model
from .scene import BoxPose


@dataclass(frozen=True)
class GraspTolerance:
    axial: float = 0.015  # |clamp point - box centre| along the tool axis, m
    lateral: float = 0.012  # ... across the tool axis, m
    release_margin: float = 0.004  # jaws wider than box + this -> the box is released, m


class BoxPhysics:
    """Tracks the box through grasp, carry and release, from the arm's joint positions only."""

    def __init__(self, box: BoxPose, table_top_z: float, tolerance: GraspTolerance = GraspTolerance()):
        self.tolerance = tolerance
        self.table_top_z = table_top_z
        self._box_in_tcp: np.ndarray | None = None  # 4x4 box pose in the TCP frame while grasped
        self.reset(box)

    def reset(self, box: BoxPose) -> None:
        self.box = box
        self._clamp_in_tcp = arm_model.clamp_point_in_tcp(box.size_xy)
        self.grasped = False
        self._open_around_box = False
        self._box_in_tcp = None

    @property
    def box_bottom_height(self) -> float:
        """Height of the box's bottom face above the table top, m."""
        return self.box.z - self.box.height / 2 - self.table_top_z

    def clamp_offset(self, tcp_pose: np.ndarray) -> tuple[float, float]:
        """(axial, lateral) distance of the box centre from the jaws' clamp point for this box, m."""
        clamp = tcp_pose[:3, 3] + tcp_pose[:3, :3] @ self._clamp_in_tcp
        d = self.box.position - clamp
        axis = tcp_pose[:3, 0]
        axial = float(d @ axis)
        lateral = float(np.linalg.norm(d - axial * axis))
        return abs(axial), lateral

    def step(self, q) -> None:
        """Advance the box for the arm's current joint positions q (URDF order, radians)."""
        q = np.asarray(q, dtype=float)
        tcp_pose = arm_model.tcp_transform(q)
        width = arm_model.jaw_gap(q[joints.GRIPPER_INDEX])
        if self.grasped:
            if width > self.box.size_xy + self.tolerance.release_margin:
                self._release()
            else:
                self._follow(tcp_pose)
            return
        axial, lateral = self.clamp_offset(tcp_pose)
        around = axial <= self.tolerance.axial and lateral <= self.tolerance.lateral
        if not around:
            self._open_around_box = False
            return
        if width >= self.box.size_xy:
            self._open_around_box = True
        elif self._open_around_box:
            self._grasp(tcp_pose)

    def _grasp(self, tcp_pose: np.ndarray) -> None:
        self.grasped = True
        self._box_in_tcp = np.linalg.inv(tcp_pose) @ _box_matrix(self.box)

    def _follow(self, tcp_pose: np.ndarray) -> None:
        m = tcp_pose @ self._box_in_tcp
        self.box = self.box.with_position(m[:3, 3], yaw=math.atan2(m[1, 0], m[0, 0]))

    def _release(self) -> None:
        self.grasped = False
        self._open_around_box = False
        self._box_in_tcp = None
        resting_z = self.table_top_z + self.box.height / 2
        self.box = self.box.with_position((self.box.x, self.box.y, resting_z))


def _box_matrix(box: BoxPose) -> np.ndarray:
    m = np.eye(4)
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = box.position
    return m
