"""The tabletop scene: table, the white box drawn per episode from a seed, the arm's random start pose, camera.

ROS-free. All positions are in base_link (REP-103, metres). The arm stands on the table: its base_link is
0.0701 m above the table top (the URDF's world_to_base_link), so the table top is at z = -0.0701.

Why random start poses: a policy trained on demonstrations that all start from the same pose learns to read the
target from the joint state and ignores the camera (../shared/learning_notes.md, "the state shortcut"). The world
therefore draws the arm's start pose per episode too, from the same seed as the box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from roarm_description import joints

from . import arm_model

TABLE_TOP_Z = -0.0701  # base_link z of the table top (URDF world_to_base_link: z 0.0701)


@dataclass(frozen=True)
class BoxPose:
    """The box: centre position (base_link, m), yaw about z (rad) and size (m)."""

    x: float
    y: float
    z: float
    yaw: float
    size_xy: float  # edge of the square footprint
    height: float

    @property
    def position(self) -> np.ndarray:
        return np.array([self.x, self.y, self.z])

    def with_position(self, xyz, yaw: float | None = None) -> "BoxPose":
        return BoxPose(float(xyz[0]), float(xyz[1]), float(xyz[2]), self.yaw if yaw is None else float(yaw),
                       self.size_xy, self.height)

    def corners(self) -> np.ndarray:
        """8 x 3 corner points: bottom face (0..3) then top face (4..7), counter-clockwise seen from above."""
        h, c, s = self.size_xy / 2, math.cos(self.yaw), math.sin(self.yaw)
        local = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
        xy = local @ np.array([[c, s], [-s, c]]) + [self.x, self.y]
        bottom = np.column_stack([xy, np.full(4, self.z - self.height / 2)])
        top = np.column_stack([xy, np.full(4, self.z + self.height / 2)])
        return np.vstack([bottom, top])


@dataclass(frozen=True)
class SceneConfig:
    """Where things may be drawn. Defaults keep the box where a top-down grasp reaches (radius 0.14..0.27 m)."""

    table_top_z: float = TABLE_TOP_Z
    table_x: tuple[float, float] = (-0.15, 0.45)  # table extent drawn by the renderer, m
    table_y: tuple[float, float] = (-0.35, 0.35)
    box_radius: tuple[float, float] = (0.15, 0.27)  # distance of the box centre from the base axis, m
    box_azimuth_deg: tuple[float, float] = (-55.0, 55.0)  # bearing of the box from the arm's front (+x), deg
    box_size: tuple[float, float] = (0.025, 0.04)  # edge of the square footprint, m
    box_height: tuple[float, float] = (0.025, 0.04)
    random_start_pose: bool = True  # False: every episode starts at home (only for debugging the expert)
    # Start pose draw: uniform inside these URDF ranges, rejected until the arm is clear of the table and box.
    start_low: tuple[float, ...] = (-1.3, -0.35, 0.5, -0.9, -1.2, 0.0)
    start_high: tuple[float, ...] = (1.3, 0.6, 2.2, 0.9, 1.2, 1.2)
    start_clearance: float = 0.06  # every drawn arm point at least this far above the table top, m
    start_box_clearance: float = 0.10  # hand at least this far from the box centre (horizontally), m
    start_max_height: float = 0.30  # every drawn arm point at most this high above base_link (stays in view), m


@dataclass(frozen=True)
class Episode:
    """What one episode starts from."""

    seed: int
    box: BoxPose
    start_pose: np.ndarray = field(repr=False)  # URDF radians, JOINT_NAMES order


def draw_box(rng: np.random.Generator, config: SceneConfig) -> BoxPose:
    radius = rng.uniform(*config.box_radius)
    azimuth = math.radians(rng.uniform(*config.box_azimuth_deg))
    size = rng.uniform(*config.box_size)
    height = rng.uniform(*config.box_height)
    yaw = rng.uniform(-math.pi / 4, math.pi / 4)
    return BoxPose(radius * math.cos(azimuth), radius * math.sin(azimuth), config.table_top_z + height / 2, yaw,
                   size, height)


def arm_clear_of_table(q: np.ndarray, table_top_z: float, clearance: float, max_height: float = math.inf) -> bool:
    """True when the links, wrist and jaws are all at least ``clearance`` above the table top (and no higher
    than ``max_height`` in base_link)."""
    drawing = arm_model.arm_drawing(q)
    heights = [p[2] for p in drawing.links[2:] + [*drawing.fixed_jaw, *drawing.moving_jaw]]
    return min(heights) >= table_top_z + clearance and max(heights) <= max_height


def draw_start_pose(rng: np.random.Generator, config: SceneConfig, box: BoxPose) -> np.ndarray:
    if not config.random_start_pose:
        return joints.HOME_POSITIONS.copy()
    low, high = np.array(config.start_low), np.array(config.start_high)
    for _ in range(1000):
        q = joints.clamp_to_limits(rng.uniform(low, high))
        if not arm_clear_of_table(q, config.table_top_z, config.start_clearance, config.start_max_height):
            continue
        tcp = arm_model.tcp_transform(q)[:3, 3]
        if math.hypot(tcp[0] - box.x, tcp[1] - box.y) < config.start_box_clearance:
            continue
        return q
    raise RuntimeError("could not draw a start pose clear of the table in 1000 tries: check start_low/start_high")


def draw_episode(seed: int, config: SceneConfig = SceneConfig()) -> Episode:
    """Box pose and arm start pose for one episode; the same seed always gives the same episode."""
    if seed < 0:
        raise ValueError(f"episode seed must be >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    box = draw_box(rng, config)
    return Episode(seed=seed, box=box, start_pose=draw_start_pose(rng, config, box))


# --- camera -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraModel:
    """Pinhole camera fixed in base_link. Optical frame: z forward, x right, y down (REP-103 optical)."""

    width: int = 640
    height: int = 480
    horizontal_fov_deg: float = 64.0
    position: tuple[float, float, float] = (0.58, -0.40, 0.46)  # camera centre in base_link, m
    look_at: tuple[float, float, float] = (0.13, 0.0, 0.07)  # point on the optical axis, m

    def __post_init__(self):
        if self.width < 16 or self.height < 16:
            raise ValueError(f"image size {self.width}x{self.height} too small (min 16x16)")
        if not 10.0 <= self.horizontal_fov_deg <= 150.0:
            raise ValueError(f"horizontal_fov_deg {self.horizontal_fov_deg} outside 10..150")
        if np.allclose(self.position, self.look_at):
            raise ValueError("camera position and look_at coincide")

    @property
    def fx(self) -> float:
        return self.width / 2 / math.tan(math.radians(self.horizontal_fov_deg) / 2)

    @property
    def intrinsics(self) -> np.ndarray:
        """3x3 K (square pixels, principal point at the image centre)."""
        return np.array([[self.fx, 0.0, self.width / 2], [0.0, self.fx, self.height / 2], [0.0, 0.0, 1.0]])

    @property
    def rotation_base_from_optical(self) -> np.ndarray:
        """3x3 rotation whose columns are the optical frame's x, y, z axes expressed in base_link."""
        forward = np.asarray(self.look_at, float) - np.asarray(self.position, float)
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        if np.linalg.norm(right) < 1e-6:
            raise ValueError("camera looks straight up or down: pick a look_at that is not vertically aligned")
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        return np.column_stack([right, down, forward])

    def to_camera(self, points_base: np.ndarray) -> np.ndarray:
        """N x 3 points in base_link -> N x 3 in the optical frame."""
        p = np.atleast_2d(points_base) - np.asarray(self.position, float)
        return p @ self.rotation_base_from_optical

    def project(self, points_base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """N x 3 points -> (N x 2 pixel coordinates, N depths in metres)."""
        cam = self.to_camera(points_base)
        depth = cam[:, 2]
        safe = np.where(depth > 1e-6, depth, 1e-6)
        k = self.intrinsics
        uv = np.column_stack([k[0, 0] * cam[:, 0] / safe + k[0, 2], k[1, 1] * cam[:, 1] / safe + k[1, 2]])
        return uv, depth

    def pixel_ray_to_plane_z(self, u: float, v: float, plane_z: float) -> np.ndarray:
        """Back-project pixel (u, v) onto the horizontal plane z = plane_z (base_link); used to recover positions."""
        k = self.intrinsics
        ray_cam = np.array([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], 1.0])
        ray = self.rotation_base_from_optical @ ray_cam
        origin = np.asarray(self.position, float)
        if abs(ray[2]) < 1e-9:
            raise ValueError("pixel ray parallel to the plane")
        return origin + ray * (plane_z - origin[2]) / ray[2]
