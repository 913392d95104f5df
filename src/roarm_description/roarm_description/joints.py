"""The RoArm-M3's joints: URDF names, order, limits and the firmware <-> URDF conversion.

ROS-free. Every package of roarm-vla takes joint names, order and units from here, so that the driver, the
simulator, the policy node and the datasets cannot drift apart. Names, order, limits and velocities are read from
the URDF (urdf/roarm_m3.urdf); only the firmware's side (T:102/T:1051 keys, home) is written here.

Conventions (see ../shared/roarm_m3_facts.md):
- "URDF" positions (what ROS topics carry): radians, REP-103; the gripper is ``pi - g_firmware`` so that
  0 = closed and about 1.5 = fully open, as in Waveshare's URDF and SDK.
- "firmware" positions (what T:102 takes and T:1051 reports): radians; the gripper's raw value, pi = closed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class JointSpec:
    """One joint of the arm."""

    urdf_name: str  # joint name in the URDF and on every ROS topic
    firmware_key: str  # key in T:102 commands and T:1051 feedback
    load_key: str  # key of the servo load in T:1051 (0.1 % of stall torque)
    lower: float  # URDF lower limit, rad
    upper: float  # URDF upper limit, rad
    home: float  # URDF position at firmware home (T:100), rad
    velocity: float  # URDF <limit velocity>, rad/s


# What the URDF cannot say: each joint's firmware keys and its URDF position at firmware home (T:100).
# URDF gripper = pi - firmware g; firmware home is g = pi (closed) -> 0. Elbow home pi/2 = forearm horizontal.
_FIRMWARE_SIDE: dict[str, tuple[str, str, float]] = {
    "base_link_to_link1": ("b", "tB", 0.0),
    "link1_to_link2": ("s", "tS", 0.0),
    "link2_to_link3": ("e", "tE", math.pi / 2),
    "link3_to_link4": ("t", "tT", 0.0),
    "link4_to_link5": ("r", "tR", 0.0),
    "link5_to_gripper_link": ("g", "tG", 0.0),
}
GRIPPER_LINK = "gripper_link"


def joints_from_urdf(model) -> tuple[JointSpec, ...]:
    """Names, order (the chain base_link -> gripper_link), limits and velocities of a UrdfModel."""
    chain = [j for j in model.chain(GRIPPER_LINK) if j.type != "fixed"]
    names = [j.name for j in chain]
    if sorted(names) != sorted(_FIRMWARE_SIDE):
        raise ValueError(f"the URDF's movable joints {names} are not the RoArm-M3's {list(_FIRMWARE_SIDE)}")
    specs = []
    for j in chain:
        if j.lower is None or j.upper is None or j.velocity is None:
            raise ValueError(f"URDF joint {j.name} lacks <limit lower upper velocity>")
        firmware_key, load_key, home = _FIRMWARE_SIDE[j.name]
        specs.append(JointSpec(j.name, firmware_key, load_key, j.lower, j.upper, home, j.velocity))
    return tuple(specs)


# Order = URDF chain order = order of every joint vector in the project (datasets included).
def _project_joints() -> tuple[JointSpec, ...]:
    from roarm_description.urdf_model import default_model

    return joints_from_urdf(default_model())


JOINTS: tuple[JointSpec, ...] = _project_joints()

JOINT_NAMES: tuple[str, ...] = tuple(j.urdf_name for j in JOINTS)
FIRMWARE_KEYS: tuple[str, ...] = tuple(j.firmware_key for j in JOINTS)
LOAD_KEYS: tuple[str, ...] = tuple(j.load_key for j in JOINTS)
LOWER_LIMITS = np.array([j.lower for j in JOINTS])
UPPER_LIMITS = np.array([j.upper for j in JOINTS])
HOME_POSITIONS = np.array([j.home for j in JOINTS])
VELOCITY_LIMITS = np.array([j.velocity for j in JOINTS])
GRIPPER_INDEX = JOINT_NAMES.index("link5_to_gripper_link")
NUM_JOINTS = len(JOINTS)

# Firmware clamp of the gripper, rad (servo steps 700..3396 of 4096 per turn).
FIRMWARE_GRIPPER_MIN = 700 * 2 * math.pi / 4096
FIRMWARE_GRIPPER_MAX = 3396 * 2 * math.pi / 4096


def firmware_to_urdf(firmware: Sequence[float]) -> np.ndarray:
    """Firmware radians [b, s, e, t, r, g] -> URDF radians (gripper becomes pi - g)."""
    q = np.asarray(firmware, dtype=float).copy()
    q[..., GRIPPER_INDEX] = math.pi - q[..., GRIPPER_INDEX]
    return q


def urdf_to_firmware(urdf: Sequence[float]) -> np.ndarray:
    """URDF radians -> firmware radians [b, s, e, t, r, g] (the conversion is its own inverse)."""
    return firmware_to_urdf(urdf)


def urdf_to_sdk_degrees(urdf: Sequence[float]) -> np.ndarray:
    """URDF radians -> the SDK degree convention [b, s, e, t, r, pi - g] in degrees (seed report's datasets)."""
    return np.degrees(np.asarray(urdf, dtype=float))


def sdk_degrees_to_urdf(degrees: Sequence[float]) -> np.ndarray:
    """The SDK degree convention (degrees, gripper already pi - g) -> URDF radians."""
    return np.radians(np.asarray(degrees, dtype=float))


def order_by_names(names: Iterable[str], values: Iterable[float]) -> np.ndarray:
    """Reorder (name, value) pairs into JOINT_NAMES order; raises ValueError naming unknown or missing joints."""
    mapping = dict(zip(names, values))
    unknown = sorted(set(mapping) - set(JOINT_NAMES))
    if unknown:
        raise ValueError(f"unknown joint name(s) {unknown}; the arm's joints are {list(JOINT_NAMES)}")
    missing = [n for n in JOINT_NAMES if n not in mapping]
    if missing:
        raise ValueError(f"missing joint name(s) {missing}")
    return np.array([float(mapping[n]) for n in JOINT_NAMES])


def clamp_to_limits(urdf: Sequence[float]) -> np.ndarray:
    """Clamp URDF positions into the URDF limits."""
    return np.clip(np.asarray(urdf, dtype=float), LOWER_LIMITS, UPPER_LIMITS)


def limit_violations(urdf: Sequence[float]) -> list[str]:
    """Human-readable list of the joints outside their URDF limits (empty when all are inside)."""
    q = np.asarray(urdf, dtype=float)
    out = []
    for spec, value in zip(JOINTS, q):
        if not spec.lower <= value <= spec.upper:
            out.append(f"{spec.urdf_name}={value:.3f} outside [{spec.lower:.3f}, {spec.upper:.3f}]")
    return out
