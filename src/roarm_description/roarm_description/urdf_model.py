"""The project's URDF as data: the lowest layer of roarm_description, read by joints.py and kinematics.py.

ROS-free (xml.etree + numpy). joints.py takes the joint names, order, limits and velocities from here and
kinematics.py the joint origins, so the URDF file is the one place these numbers are written. Also finds the URDF
in a source checkout or an installed share directory.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

URDF_FILE_NAME = "roarm_m3.urdf"


def default_urdf_path() -> Path:
    """The URDF shipped with roarm_description (source tree, else the installed share directory)."""
    source = Path(__file__).resolve().parent.parent / "urdf" / URDF_FILE_NAME
    if source.is_file():
        return source
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("roarm_description")) / "urdf" / URDF_FILE_NAME


@lru_cache(maxsize=1)
def default_model() -> "UrdfModel":
    """The project's URDF, parsed once."""
    return UrdfModel.from_file(default_urdf_path())


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF fixed-axis roll-pitch-yaw: R = Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation about a unit axis."""
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def homogeneous(rotation: np.ndarray, translation: Sequence[float]) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = rotation
    t[:3, 3] = translation
    return t


@dataclass(frozen=True)
class UrdfJoint:
    name: str
    type: str  # revolute, continuous, prismatic, fixed
    parent: str
    child: str
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float]
    axis: tuple[float, float, float]
    lower: float | None
    upper: float | None
    velocity: float | None = None  # <limit velocity>, rad/s (m/s for prismatic)
    effort: float | None = None

    @property
    def origin(self) -> np.ndarray:
        """4x4 transform parent -> joint frame at zero position."""
        return homogeneous(rpy_matrix(*self.rpy), self.xyz)

    def motion(self, position: float) -> np.ndarray:
        """4x4 transform of the joint's own motion at `position` (rad or m)."""
        axis = np.asarray(self.axis, dtype=float)
        if self.type in ("revolute", "continuous"):
            return homogeneous(axis_angle_matrix(axis, position), (0.0, 0.0, 0.0))
        if self.type == "prismatic":
            return homogeneous(np.eye(3), axis * position)
        return np.eye(4)


def _floats(text: str | None, default: Sequence[float]) -> tuple[float, ...]:
    if text is None:
        return tuple(float(v) for v in default)
    values = tuple(float(v) for v in text.split())
    if len(values) != 3:
        raise ValueError(f"expected 3 numbers, got {text!r}")
    return values


class UrdfModel:
    """Links, joints and FK of a URDF tree (one root, as robot_state_publisher requires)."""

    def __init__(self, xml_text: str):
        root = ET.fromstring(xml_text)
        if root.tag != "robot":
            raise ValueError(f"not a URDF: root element is <{root.tag}>")
        self.name = root.get("name", "")
        self.links: list[str] = [link.get("name") for link in root.findall("link")]
        self.joints: dict[str, UrdfJoint] = {}
        for j in root.findall("joint"):
            origin = j.find("origin")
            axis = j.find("axis")
            limit = j.find("limit")
            joint = UrdfJoint(
                name=j.get("name"),
                type=j.get("type"),
                parent=j.find("parent").get("link"),
                child=j.find("child").get("link"),
                xyz=_floats(origin.get("xyz") if origin is not None else None, (0, 0, 0)),
                rpy=_floats(origin.get("rpy") if origin is not None else None, (0, 0, 0)),
                axis=_floats(axis.get("xyz") if axis is not None else None, (1, 0, 0)),
                lower=float(limit.get("lower")) if limit is not None and limit.get("lower") else None,
                upper=float(limit.get("upper")) if limit is not None and limit.get("upper") else None,
                velocity=float(limit.get("velocity")) if limit is not None and limit.get("velocity") else None,
                effort=float(limit.get("effort")) if limit is not None and limit.get("effort") else None,
            )
            self.joints[joint.name] = joint
        self._joint_to_child = {j.child: j for j in self.joints.values()}
        roots = [link for link in self.links if link not in self._joint_to_child]
        if len(roots) != 1:
            raise ValueError(f"a URDF needs exactly one root link, found {roots}")
        self.root_link = roots[0]

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> "UrdfModel":
        return cls(Path(path or default_urdf_path()).read_text())

    @property
    def movable_joints(self) -> list[UrdfJoint]:
        return [j for j in self.joints.values() if j.type != "fixed"]

    def chain(self, tip: str, base: str | None = None) -> list[UrdfJoint]:
        """Joints from `base` (default: the root link) down to link `tip`, in order."""
        base = base or self.root_link
        chain: list[UrdfJoint] = []
        link = tip
        while link != base:
            if link not in self._joint_to_child:
                raise ValueError(f"link {tip!r} is not below {base!r}")
            joint = self._joint_to_child[link]
            chain.append(joint)
            link = joint.parent
        return chain[::-1]

    def transform(self, positions: Mapping[str, float], tip: str, base: str | None = None) -> np.ndarray:
        """4x4 pose of link `tip` in frame `base`; joints missing from `positions` are at 0."""
        t = np.eye(4)
        for joint in self.chain(tip, base):
            t = t @ joint.origin @ joint.motion(float(positions.get(joint.name, 0.0)))
        return t

    def positions(self, joint_names: Sequence[str], joint_rows: np.ndarray, tip: str = "hand_tcp",
                  base: str = "base_link") -> np.ndarray:
        """(N, 3) positions of `tip` in `base` for N rows of joint positions in `joint_names` order."""
        rows = np.atleast_2d(np.asarray(joint_rows, dtype=float))
        if rows.shape[1] != len(joint_names):
            raise ValueError(f"rows have {rows.shape[1]} columns, expected {len(joint_names)} ({list(joint_names)})")
        return np.array([self.transform(dict(zip(joint_names, row)), tip, base)[:3, 3] for row in rows])
