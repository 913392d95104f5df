"""Forward and inverse kinematics of the RoArm-M3 (ROS-free, numpy).

One module for the whole project: the simulator, the URDF/markers, the firmware simulator and the scripted
expert all compute poses here, so they cannot disagree.

Frames and units
----------------
- Joint vectors ``q`` are URDF radians in ``roarm_description.joints.JOINT_NAMES`` order (gripper = pi - g_firmware,
  0 = closed). ``firmware_xyz`` is the one function that takes firmware radians.
- Every pose is a 4x4 homogeneous transform in ``base_link`` (metres), unless the name says otherwise.
  ``world`` is ``base_link`` lowered by ``BASE_LINK_HEIGHT`` (the URDF's fixed ``world_to_base_link``); world
  z = 0 is the surface the arm stands on.
- ``hand_tcp``: x axis = approach direction of the tool (forward at home), the moving jaw opens towards -y.

The chain (Waveshare roarm_ws ``roarm_m3.xacro``, see ../shared/roarm_m3_facts.md): every revolute joint turns
about its own local z after the fixed origin transform ``T(xyz) * R(rpy)``; rpy is URDF's fixed-axis
roll-pitch-yaw (R = Rz(yaw) Ry(pitch) Rx(roll)).

Relation to the firmware's x/y/z (T:1051), derived in ``firmware_xyz`` and tested in test_kinematics.py
----------------------------------------------------------------------------------------------------------------
Same joint signs and zeros (base + left, shoulder + forward, elbow pi/2 = forearm horizontal, wrist + down), same
planar structure, so the difference is the frames and a few millimetres of link numbers:
1. z origin: the firmware measures z from the shoulder pivot; base_link sits ``SHOULDER_HEIGHT`` (51.959 mm)
   lower (link1_to_link2's z). x/y share the base axis.
2. Tool point: the firmware's end point is 171.67 mm along the tool and 13.69 mm off its axis from the wrist pivot,
   and ignores the roll joint; the URDF's hand_tcp is 169.081 / 15.147 mm and lies on the roll axis. Both are fixed
   in link4 (the wrist-pitch frame, before roll): hand_tcp = link4 * (15.147, -169.081, 0) mm and
   ``firmware_point = link4 * FIRMWARE_POINT_IN_LINK4`` = link4 * (13.69, -171.67, 0) mm, so the two points
   differ by 2.97 mm, fixed in link4 (2.589 mm further along the tool, 1.457 mm less offset across it).
3. Forearm 144.49 (firmware) vs 144.586 mm (URDF), upper arm (236.82, 30.00) vs (236.815, 30.002) mm: below
   0.1 mm, the whole residual after 1 and 2.
The URDF chain equals its planar reduction (``planar_position``) to 1e-12 m, and that planar model with the
firmware's link numbers (``PlanarGeometry.firmware()``) equals the firmware formula to 1e-12 m (both tested):
the conventions are identical, only the numbers above differ. ``firmware_inverse_kinematics`` is the firmware's
own T:104/T:1041 IK branch, for the firmware simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np

from roarm_description.joints import (
    GRIPPER_INDEX,
    HOME_POSITIONS,
    JOINT_NAMES,
    LOWER_LIMITS,
    NUM_JOINTS,
    UPPER_LIMITS,
    limit_violations,
)
from roarm_description.urdf_model import default_model, rpy_matrix  # noqa: F401 (rpy_matrix: re-exported)

HALF_PI = math.pi / 2

# --- URDF numbers (metres, radians), read from urdf/roarm_m3.urdf --------------------------------------------------
_URDF = default_model()
BASE_LINK_HEIGHT = _URDF.joints["world_to_base_link"].xyz[2]  # base_link above the surface the arm stands on
SHOULDER_HEIGHT = _URDF.joints[JOINT_NAMES[1]].xyz[2]  # shoulder pivot above base_link (firmware z = 0 here)

# (joint name, parent frame, child frame, origin xyz, origin rpy) for the six revolute joints, chain order.
URDF_JOINT_ORIGINS: tuple[tuple[str, str, str, tuple[float, float, float], tuple[float, float, float]], ...] = tuple(
    (j.name, j.parent, j.child, j.xyz, j.rpy) for j in (_URDF.joints[name] for name in JOINT_NAMES)
)
# Fixed frame of the tool centre point (between the closed jaws' tips), child of link5.
_TCP = _URDF.joints["link5_to_hand_tcp"]
HAND_TCP_JOINT = (_TCP.name, _TCP.parent, _TCP.child, _TCP.xyz, _TCP.rpy)

LINK_FRAMES: tuple[str, ...] = ("base_link", "link1", "link2", "link3", "link4", "link5", "gripper_link", "hand_tcp")

# --- firmware numbers (RoArm-M3_example 0.84, RoArm-M3_config.h), millimetres -----------------------------------
FW_L1 = 126.06  # base to shoulder (not used by the firmware's FK: its z starts at the shoulder)
FW_L2A = 236.82  # upper arm, along
FW_L2B = 30.00  # upper arm, offset
FW_L3A = 144.49  # forearm
FW_L4A = 171.67  # wrist to end point, along the tool ("edge" end effector)
FW_L4B = 13.69  # wrist to end point, perpendicular (below the tool axis at home)


@dataclass(frozen=True)
class PlanarGeometry:
    """Link numbers of the arm's vertical plane (metres): what both the URDF and the firmware reduce to.

    In the plane (r = horizontal distance from the base axis, z up, angles from the vertical):
    upper arm = (l2b, l2a) rotated by s; forearm = l3 along angle s + e; tool = (tool_along, -tool_offset)
    rotated so that tool_along points along angle s + e + t.
    """

    shoulder_height: float
    l2a: float
    l2b: float
    l3: float
    tool_along: float
    tool_offset: float

    @staticmethod
    def urdf() -> "PlanarGeometry":
        return _URDF_GEOMETRY

    @staticmethod
    def firmware() -> "PlanarGeometry":
        """The firmware's numbers, with z measured from base_link (i.e. shifted by the URDF shoulder height)."""
        return PlanarGeometry(SHOULDER_HEIGHT, FW_L2A / 1000, FW_L2B / 1000, FW_L3A / 1000, FW_L4A / 1000,
                              FW_L4B / 1000)

    @property
    def upper_arm_length(self) -> float:
        return math.hypot(self.l2a, self.l2b)

    @property
    def upper_arm_angle(self) -> float:
        """Angle of the shoulder->elbow line from the upper arm's axis (firmware t2rad)."""
        return math.atan2(self.l2b, self.l2a)


def _urdf_planar_geometry() -> PlanarGeometry:
    (_, _, _, elbow_xyz, _) = URDF_JOINT_ORIGINS[2]
    (_, _, _, wrist_xyz, _) = URDF_JOINT_ORIGINS[3]
    (_, _, _, roll_xyz, _) = URDF_JOINT_ORIGINS[4]
    return PlanarGeometry(
        shoulder_height=SHOULDER_HEIGHT,
        l2a=elbow_xyz[0],
        l2b=elbow_xyz[1],
        l3=-wrist_xyz[1],
        tool_along=-roll_xyz[1] + HAND_TCP_JOINT[3][2],
        tool_offset=roll_xyz[0],
    )


_URDF_GEOMETRY = _urdf_planar_geometry()

# The firmware's end point expressed in link4 (metres): see the module docstring, item 2.
FIRMWARE_POINT_IN_LINK4 = np.array([FW_L4B / 1000, -FW_L4A / 1000, 0.0])


# --- transforms ---------------------------------------------------------------------------------------------------
def origin_transform(xyz: Sequence[float], rpy: Sequence[float]) -> np.ndarray:
    """4x4 of a URDF <origin xyz rpy>."""
    out = np.eye(4)
    out[:3, :3] = rpy_matrix(*rpy)
    out[:3, 3] = xyz
    return out


_JOINT_ORIGIN_MATRICES = tuple(origin_transform(xyz, rpy) for (_, _, _, xyz, rpy) in URDF_JOINT_ORIGINS)
_HAND_TCP_MATRIX = origin_transform(HAND_TCP_JOINT[3], HAND_TCP_JOINT[4])


def _rot_z_batch(angles: np.ndarray) -> np.ndarray:
    """[N] angles -> [N,4,4] rotations about z."""
    n = angles.shape[0]
    out = np.zeros((n, 4, 4))
    c, s = np.cos(angles), np.sin(angles)
    out[:, 0, 0] = c
    out[:, 0, 1] = -s
    out[:, 1, 0] = s
    out[:, 1, 1] = c
    out[:, 2, 2] = 1.0
    out[:, 3, 3] = 1.0
    return out


def _as_batch(q: Sequence[float] | np.ndarray) -> tuple[np.ndarray, bool]:
    """Returns ([N,6] float array, was_single). Raises ValueError on a wrong shape or non-finite values."""
    arr = np.asarray(q, dtype=float)
    single = arr.ndim == 1
    arr2 = arr[None, :] if single else arr
    if arr2.ndim != 2 or arr2.shape[1] != NUM_JOINTS:
        raise ValueError(f"joint positions must have shape [{NUM_JOINTS}] or [N, {NUM_JOINTS}], got {arr.shape}")
    if not np.all(np.isfinite(arr2)):
        raise ValueError(f"joint positions must be finite, got {arr}")
    return arr2, single


def _frames_batch(q_batch: np.ndarray) -> dict[str, np.ndarray]:
    """[N,6] -> {frame name: [N,4,4] in base_link} for every link frame."""
    n = q_batch.shape[0]
    frames = {"base_link": np.broadcast_to(np.eye(4), (n, 4, 4)).copy()}
    for index, (_, parent, child, _, _) in enumerate(URDF_JOINT_ORIGINS):
        pose = frames[parent] @ _JOINT_ORIGIN_MATRICES[index] @ _rot_z_batch(q_batch[:, index])
        frames[child] = pose
    frames["hand_tcp"] = frames["link5"] @ _HAND_TCP_MATRIX
    return frames


def link_transforms(q: Sequence[float]) -> list[tuple[str, np.ndarray]]:
    """[(frame name, 4x4 in base_link)] for every URDF link frame, in LINK_FRAMES order."""
    q_batch, _ = _as_batch(q)
    if q_batch.shape[0] != 1:
        raise ValueError("link_transforms takes one joint vector; use link_transforms_batch for [N, 6]")
    frames = _frames_batch(q_batch)
    return [(name, frames[name][0]) for name in LINK_FRAMES]


def link_transforms_batch(q_batch: np.ndarray) -> dict[str, np.ndarray]:
    """{frame name: [N,4,4] in base_link} for a [N,6] batch of joint vectors."""
    arr, _ = _as_batch(q_batch)
    return _frames_batch(arr)


def forward_kinematics(q: Sequence[float]) -> np.ndarray:
    """4x4 pose of hand_tcp in base_link."""
    arr, single = _as_batch(q)
    if not single:
        raise ValueError("forward_kinematics takes one joint vector; use forward_kinematics_batch for [N, 6]")
    return _frames_batch(arr)["hand_tcp"][0]


def forward_kinematics_batch(q_batch: np.ndarray) -> np.ndarray:
    """[N,6] -> [N,4,4] poses of hand_tcp in base_link."""
    arr, _ = _as_batch(q_batch)
    return _frames_batch(arr)["hand_tcp"]


def tcp_position(q: Sequence[float]) -> np.ndarray:
    """xyz of hand_tcp in base_link, metres."""
    return forward_kinematics(q)[:3, 3].copy()


def tcp_positions(q_batch: np.ndarray) -> np.ndarray:
    """[N,6] -> [N,3] hand_tcp positions in base_link (one vectorised pass, for action chunks)."""
    return forward_kinematics_batch(q_batch)[:, :3, 3].copy()


def tool_pitch(q: Sequence[float]) -> float:
    """Tool pitch below the horizontal, rad (0 = pointing forward, pi/2 = pointing down); = firmware ``tit``."""
    q = np.asarray(q, dtype=float)
    return float(q[1] + q[2] + q[3] - HALF_PI)


def base_link_to_world(xyz_base_link: Sequence[float] | np.ndarray) -> np.ndarray:
    """Point(s) in base_link -> world (adds BASE_LINK_HEIGHT to z)."""
    out = np.array(xyz_base_link, dtype=float)
    out[..., 2] += BASE_LINK_HEIGHT
    return out


def world_to_base_link(xyz_world: Sequence[float] | np.ndarray) -> np.ndarray:
    """Point(s) in world -> base_link."""
    out = np.array(xyz_world, dtype=float)
    out[..., 2] -= BASE_LINK_HEIGHT
    return out


# --- gripper jaws -------------------------------------------------------------------------------------------------
# The moving jaw turns about gripper_link's z; its tip is the point that meets hand_tcp when the gripper is closed.
_JAW_TIP_IN_GRIPPER_LINK = np.linalg.inv(_JOINT_ORIGIN_MATRICES[5]) @ np.append(np.array(HAND_TCP_JOINT[3]), 1.0)
JAW_LENGTH = float(np.hypot(_JAW_TIP_IN_GRIPPER_LINK[0], _JAW_TIP_IN_GRIPPER_LINK[1]))  # pivot axis to tip, m


def jaw_tip_positions(q_batch: np.ndarray) -> np.ndarray:
    """[N,6] -> [N,3] tips of the moving jaw in base_link (== hand_tcp when the gripper is closed)."""
    frames = link_transforms_batch(q_batch)
    return (frames["gripper_link"] @ _JAW_TIP_IN_GRIPPER_LINK)[:, :3]


def jaw_tip_position(q: Sequence[float]) -> np.ndarray:
    """Tip of the moving jaw in base_link, metres. The fixed jaw's tip is hand_tcp."""
    arr, single = _as_batch(q)
    if not single:
        raise ValueError("jaw_tip_position takes one joint vector; use jaw_tip_positions for [N, 6]")
    return jaw_tip_positions(arr)[0]


def gripper_gap(gripper: float) -> float:
    """Opening between the jaw tips across the tool axis (along hand_tcp y), metres, for a URDF gripper angle."""
    return float(JAW_LENGTH * math.sin(min(max(gripper, 0.0), HALF_PI)))


def gripper_for_gap(gap: float) -> float:
    """URDF gripper angle that opens the jaws by ``gap`` metres; ValueError when wider than the gripper opens."""
    max_gap = gripper_gap(UPPER_LIMITS[GRIPPER_INDEX])
    if not 0.0 <= gap <= max_gap:
        raise ValueError(f"gripper gap {gap:.4f} m outside 0 .. {max_gap:.4f} m")
    return float(math.asin(gap / JAW_LENGTH))


def grasp_point(q: Sequence[float]) -> np.ndarray:
    """Midpoint between the two jaw tips in base_link: where a grasped object's centre sits."""
    return 0.5 * (tcp_position(q) + jaw_tip_position(q))


# --- the firmware's own formula -----------------------------------------------------------------------------------
def firmware_xyz(q_firmware: Sequence[float]) -> tuple[float, float, float, float]:
    """The firmware's T:1051 x, y, z (mm, z from the shoulder pivot) and tit (rad) for firmware joint radians.

    Same formula as RoArmM3_computePosbyJointRad in the firmware sketch (only b, s, e, t matter).
    """
    q = np.asarray(q_firmware, dtype=float)
    if q.shape[-1] < 4:
        raise ValueError(f"firmware_xyz needs at least [b, s, e, t], got shape {q.shape}")
    b, s, e, t = (float(v) for v in q[:4])
    l2 = math.hypot(FW_L2A, FW_L2B)
    t2 = math.atan2(FW_L2B, FW_L2A)
    le = math.hypot(FW_L4A, FW_L4B)
    te = math.atan2(FW_L4B, FW_L4A)
    r = l2 * math.sin(s + t2) + FW_L3A * math.sin(s + e) + le * math.sin(s + e + t + te)
    z = l2 * math.cos(s + t2) + FW_L3A * math.cos(s + e) + le * math.cos(s + e + t + te)
    return r * math.cos(b), r * math.sin(b), z, s + e + t - HALF_PI


def firmware_xyz_from_urdf(q_urdf: Sequence[float]) -> tuple[float, float, float, float]:
    """firmware_xyz for URDF joint radians (the joints that matter are the same in both conventions)."""
    return firmware_xyz(np.asarray(q_urdf, dtype=float))


# --- planar model (the chain reduced to its vertical plane) ----------------------------------------------------------
def planar_tcp(s: float, e: float, t: float, geometry: PlanarGeometry = _URDF_GEOMETRY) -> tuple[float, float]:
    """(r, z) of the tool point in base_link's vertical plane through the arm."""
    phi = s + e + t
    r = (geometry.l2b * math.cos(s) + geometry.l2a * math.sin(s) + geometry.l3 * math.sin(s + e)
         + geometry.tool_along * math.sin(phi) + geometry.tool_offset * math.cos(phi))
    z = (geometry.shoulder_height + geometry.l2a * math.cos(s) - geometry.l2b * math.sin(s)
         + geometry.l3 * math.cos(s + e) + geometry.tool_along * math.cos(phi) - geometry.tool_offset * math.sin(phi))
    return r, z


def planar_position(q: Sequence[float], geometry: PlanarGeometry = _URDF_GEOMETRY) -> np.ndarray:
    """xyz (base_link, metres) of the tool point from the planar model; equals tcp_position for the URDF geometry."""
    q = np.asarray(q, dtype=float)
    r, z = planar_tcp(float(q[1]), float(q[2]), float(q[3]), geometry)
    return np.array([r * math.cos(q[0]), r * math.sin(q[0]), z])


# --- inverse kinematics -------------------------------------------------------------------------------------------
def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _planar_solutions(r: float, z: float, phi: float, geometry: PlanarGeometry,
                      unit: str = "m") -> tuple[list[tuple[float, float, float]], str]:
    """(s, e, t) that put the tool point at (r, z) of the arm's plane with the tool along ``phi`` (from the
    vertical): [elbow up, elbow down], or ([], reason) when the wrist point is out of the arm's span."""
    l2 = geometry.upper_arm_length
    t2 = geometry.upper_arm_angle
    l3 = geometry.l3
    # Wrist pivot in the plane, relative to the shoulder pivot.
    wr = r - geometry.tool_along * math.sin(phi) - geometry.tool_offset * math.cos(phi)
    wz = z - geometry.shoulder_height - geometry.tool_along * math.cos(phi) + geometry.tool_offset * math.sin(phi)
    d2 = wr * wr + wz * wz
    cos_gamma = (d2 - l2 * l2 - l3 * l3) / (2 * l2 * l3)
    if cos_gamma > 1.0 + 1e-12 or cos_gamma < -1.0 - 1e-12:
        return [], (f"wrist point {math.sqrt(d2):.4f} {unit} from the shoulder, arm spans "
                    f"{abs(l2 - l3):.4f} .. {l2 + l3:.4f} {unit}")
    cos_gamma = min(1.0, max(-1.0, cos_gamma))
    out = []
    for gamma in (math.acos(cos_gamma), -math.acos(cos_gamma)):
        # gamma = forearm angle minus upper-arm line angle (both from the vertical); > 0 = elbow up.
        alpha = math.atan2(wr, wz) - math.atan2(l3 * math.sin(gamma), l2 + l3 * math.cos(gamma))
        s = alpha - t2
        e = gamma + t2
        out.append((s, e, phi - s - e))
    return out, ""


def _ik_candidates(xyz: np.ndarray, pitch: float, roll: float, gripper: float,
                   geometry: PlanarGeometry) -> list[tuple[Optional[np.ndarray], str]]:
    """Every analytic solution (base facing the target or turned away, elbow either way); limits not checked.

    A (None, reason) entry stands for a base direction whose wrist point is out of reach."""
    x, y, z = (float(v) for v in xyz)
    phi = pitch + HALF_PI  # tool direction, angle from the vertical
    horizontal = math.hypot(x, y)
    facing = math.atan2(y, x) if horizontal > 1e-12 else 0.0
    out: list[tuple[Optional[np.ndarray], str]] = []
    for base, r in ((facing, horizontal), (_wrap(facing + math.pi), -horizontal)):
        solutions, reason = _planar_solutions(r, z, phi, geometry)
        if not solutions:
            out.append((None, reason))
        for s, e, t in solutions:
            out.append((np.array([base, _wrap(s), _wrap(e), _wrap(t), roll, gripper]), ""))
    return out


def _check_ik_inputs(xyz, pitch: float, roll: float, gripper: float) -> np.ndarray:
    target = np.asarray(xyz, dtype=float).reshape(-1)
    if target.shape != (3,) or not np.all(np.isfinite(target)):
        raise ValueError(f"IK target must be 3 finite numbers (metres, base_link), got {xyz}")
    for label, value in (("pitch", pitch), ("roll", roll), ("gripper", gripper)):
        if not math.isfinite(value):
            raise ValueError(f"IK {label} must be finite, got {value}")
    return target


def inverse_kinematics_all(
    xyz: Sequence[float],
    pitch: float = HALF_PI,
    roll: float = 0.0,
    gripper: float = 0.0,
    geometry: PlanarGeometry = _URDF_GEOMETRY,
) -> list[np.ndarray]:
    """Every IK solution inside the joint limits (base facing the target or turned away, elbow up or down).

    Raises ValueError saying why when there is none (out of reach, or which joint limits every solution breaks).
    """
    target = _check_ik_inputs(xyz, pitch, roll, gripper)
    reasons: list[str] = []
    valid: list[np.ndarray] = []
    for q, reason in _ik_candidates(target, float(pitch), float(roll), float(gripper), geometry):
        if q is None:
            reasons.append(reason)
            continue
        problems = limit_violations(q)
        if problems:
            reasons.append("; ".join(problems))
            continue
        valid.append(q)
    if not valid:
        detail = " | ".join(dict.fromkeys(reasons))
        raise ValueError(
            f"no IK solution for xyz={np.round(target, 4).tolist()} m (base_link), pitch={pitch:.3f} rad: {detail}"
        )
    return valid


def inverse_kinematics(
    xyz: Sequence[float],
    pitch: float = HALF_PI,
    roll: float = 0.0,
    gripper: float = 0.0,
    q_seed: Optional[Sequence[float]] = None,
    geometry: PlanarGeometry = _URDF_GEOMETRY,
) -> np.ndarray:
    """URDF joint vector that puts hand_tcp at ``xyz`` (base_link, metres) with the given tool pitch.

    pitch: tool angle below the horizontal (rad): pi/2 = pointing straight down (top-down pick), 0 = forward;
    the same as the firmware's ``tit``. roll: wrist roll (rad), passed through. gripper: URDF gripper angle
    (0 closed .. 1.5 open), passed through. Of the (up to four) solutions inside the joint limits, returns the one
    closest to ``q_seed`` (default: home) in the first five joints.
    Raises ValueError saying why when the target is out of reach or every solution breaks a joint limit.
    """
    valid = inverse_kinematics_all(xyz, pitch=pitch, roll=roll, gripper=gripper, geometry=geometry)
    seed = HOME_POSITIONS if q_seed is None else np.asarray(q_seed, dtype=float)
    if seed.shape != (NUM_JOINTS,):
        raise ValueError(f"q_seed must have shape [{NUM_JOINTS}], got {seed.shape}")
    distances = [float(np.sum((q[:5] - seed[:5]) ** 2)) for q in valid]
    return valid[int(np.argmin(distances))]


def firmware_inverse_kinematics(x_mm: float, y_mm: float, z_mm: float, tit: float, roll: float = 0.0,
                                gripper_firmware: float = math.pi) -> np.ndarray:
    """The firmware's own Cartesian IK (T:104 / T:1041, RoArmM3_baseCoordinateCtrl): firmware x/y/z (mm, z from
    the shoulder pivot) and tit -> firmware radians [b, s, e, t, r, g].

    Same solution branch as the firmware (base facing the target, elbow up; a wrist point on or behind the base
    axis is put on the axis with the base at 0, as the firmware does); like the firmware it neither wraps nor
    limits the joints (its per-joint commands clamp afterwards). Raises ValueError where the firmware reports nanIK
    (target out of reach), in which case the real arm ignores the goal.
    """
    values = (x_mm, y_mm, z_mm, tit, roll, gripper_firmware)
    if not all(math.isfinite(float(v)) for v in values):
        raise ValueError(f"firmware IK inputs must be finite, got {values}")
    geometry = PlanarGeometry(0.0, FW_L2A, FW_L2B, FW_L3A, FW_L4A, FW_L4B)  # millimetres, z from the shoulder
    phi = float(tit) + HALF_PI
    tool_reach = geometry.tool_along * math.sin(phi) + geometry.tool_offset * math.cos(phi)  # horizontal extent
    horizontal = math.hypot(x_mm, y_mm)
    if horizontal - tool_reach <= 1e-6:
        # Wrist point on or behind the base axis: the firmware puts it on the axis and the base at 0.
        base, r = 0.0, tool_reach
    else:
        base, r = math.atan2(y_mm, x_mm), horizontal
    solutions, reason = _planar_solutions(r, float(z_mm), phi, geometry, unit="mm")
    if not solutions:
        raise ValueError(f"firmware IK: no solution for x={x_mm:.1f} y={y_mm:.1f} z={z_mm:.1f} mm, tit={tit:.3f} "
                         f"rad: {reason}")
    s, e, t = solutions[0]  # elbow up, the firmware's branch
    return np.array([base, s, e, t, float(roll), float(gripper_firmware)])


def is_reachable(xyz: Sequence[float], pitch: float = HALF_PI) -> bool:
    """True when inverse_kinematics finds a solution inside the joint limits."""
    try:
        inverse_kinematics(xyz, pitch=pitch)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=256)
def _radial_reach_cached(z: float, pitch: float, step: float) -> tuple[float, float]:
    radii = np.arange(0.0, 0.7 + step, step)
    ok = [r for r in radii if is_reachable((float(r), 0.0, z), pitch)]
    if not ok:
        raise ValueError(f"no reachable radius at z={z:.4f} m (base_link) with pitch={pitch:.3f} rad")
    return float(min(ok)), float(max(ok))


def radial_reach(z: float, pitch: float = HALF_PI, step: float = 0.001) -> tuple[float, float]:
    """(r_min, r_max): horizontal distances from the base axis at which hand_tcp can reach height ``z``
    (base_link, metres) with the given tool pitch, on a ``step`` grid (the set is one interval for top-down picks;
    use is_reachable to check a single point). Raises ValueError when no radius works."""
    return _radial_reach_cached(round(float(z), 6), round(float(pitch), 6), float(step))


def wrap_to_limits(q: Sequence[float]) -> np.ndarray:
    """Joint vector with base and roll wrapped into (-pi, pi] (the other joints unchanged)."""
    out = np.asarray(q, dtype=float).copy()
    for index in (0, 4):
        out[..., index] = (out[..., index] + math.pi) % (2 * math.pi) - math.pi
    return out


__all__ = [
    "BASE_LINK_HEIGHT", "SHOULDER_HEIGHT", "URDF_JOINT_ORIGINS", "HAND_TCP_JOINT", "LINK_FRAMES",
    "FIRMWARE_POINT_IN_LINK4", "JAW_LENGTH", "PlanarGeometry", "origin_transform", "link_transforms",
    "link_transforms_batch", "forward_kinematics", "forward_kinematics_batch", "tcp_position", "tcp_positions",
    "tool_pitch", "base_link_to_world", "world_to_base_link", "jaw_tip_position", "jaw_tip_positions",
    "gripper_gap", "gripper_for_gap", "grasp_point", "firmware_xyz", "firmware_xyz_from_urdf", "planar_tcp",
    "planar_position", "inverse_kinematics", "inverse_kinematics_all", "firmware_inverse_kinematics", "is_reachable", "radial_reach", "wrap_to_limits",
]
