"""OpenCV rendering of the scene through the fixed pinhole camera: table, white box, the arm, gripper opening.

ROS-free; returns an H x W x 3 uint8 RGB image (rgb8). Painter's algorithm (far to near) on flat-shaded
primitives: no z-buffer, which is enough for a table, a box and a stick-figure arm.

Recoverability (what a vision policy needs): the box is the only near-white object; its footprint's shadow is
drawn on the table so its height is readable; the arm's joints are colour-coded discs (shoulder red, elbow green,
wrist blue, hand yellow) and the TCP casts a small shadow, so the arm's pose can be read from one image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from . import arm_model
from .scene import BoxPose, CameraModel

_SHIFT = 4  # sub-pixel precision bits for OpenCV drawing
_SCALE = 1 << _SHIFT

BACKGROUND = (70, 74, 84)
TABLE = (150, 112, 72)
TABLE_GRID = (132, 97, 60)
SHADOW = (92, 68, 44)
BASE_COLOUR = (45, 45, 50)
LINK_COLOURS = [(40, 40, 46), (55, 55, 62), (40, 40, 46), (70, 70, 78), (70, 70, 78)]
JOINT_COLOURS = [(200, 40, 40), (40, 170, 60), (40, 80, 210), (225, 200, 30)]  # shoulder, elbow, wrist, hand
JAW_COLOURS = [(230, 120, 20), (200, 60, 160)]  # fixed jaw orange, moving jaw magenta
LIGHT_DIRECTION = np.array([0.3, -0.5, 1.0]) / np.linalg.norm([0.3, -0.5, 1.0])
LINK_RADIUS = 0.018  # m, drawn thickness of the arm's links
JOINT_RADIUS = 0.016
JAW_RADIUS = 0.006


@dataclass
class _Primitive:
    depth: float
    kind: str  # "poly", "line", "disc"
    points: np.ndarray  # pixel coordinates
    colour: tuple
    size: float = 0.0  # line thickness / disc radius in pixels


class Renderer:
    def __init__(self, camera: CameraModel, table_top_z: float, table_x=(-0.15, 0.45), table_y=(-0.35, 0.35)):
        self.camera = camera
        self.table_top_z = table_top_z
        self.table_x, self.table_y = table_x, table_y
        self._static = self._render_static()

    # --- public -------------------------------------------------------------------------------------------
    def render(self, q, box: BoxPose, grasped: bool = False) -> np.ndarray:
        """RGB image of the arm at joint positions q (URDF radians) and the box."""
        image = self._static.copy()
        drawing = arm_model.arm_drawing(q)
        self._draw_shadows(image, drawing, box)
        prims = self._box_primitives(box) + self._arm_primitives(drawing, box if grasped else None)
        for prim in sorted(prims, key=lambda p: -p.depth):
            self._draw(image, prim)
        return image

    def box_pixel(self, box: BoxPose) -> np.ndarray:
        """Pixel of the box's centre (what the colour-threshold test checks against)."""
        return self.camera.project(box.position[None])[0][0]

    # --- static background ---------------------------------------------------------------------------------
    def _render_static(self) -> np.ndarray:
        cam = self.camera
        image = np.empty((cam.height, cam.width, 3), np.uint8)
        image[:] = BACKGROUND
        z = self.table_top_z
        (x0, x1), (y0, y1) = self.table_x, self.table_y
        self._fill(image, self._clip_project(np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]])), TABLE)
        for x in np.arange(x0, x1 + 1e-9, 0.05):  # 5 cm grid: depth cue for the policy and for people
            self._line(image, np.array([[x, y0, z], [x, y1, z]]), TABLE_GRID, 1)
        for y in np.arange(y0, y1 + 1e-9, 0.05):
            self._line(image, np.array([[x0, y, z], [x1, y, z]]), TABLE_GRID, 1)
        # the arm's base: a dark cylinder standing on the table up to base_link
        ring = [(0.055 * math.cos(a), 0.055 * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 24, endpoint=False)]
        pts = np.array([[x, y, z] for x, y in ring] + [[x, y, 0.0] for x, y in ring])
        uv, depth = cam.project(pts)
        if np.all(depth > 0.05):
            hull = cv2.convexHull((uv * _SCALE).astype(np.int32))
            cv2.fillConvexPoly(image, hull, BASE_COLOUR, cv2.LINE_AA, _SHIFT)
        return image

    # --- shadows (straight down onto the table) ---------------------------------------------------------
    def _draw_shadows(self, image, drawing: arm_model.ArmDrawing, box: BoxPose) -> None:
        z = self.table_top_z + 1e-4
        footprint = box.corners()[:4].copy()
        footprint[:, 2] = z
        grow = 1.0 + 2.0 * max(0.0, box.z - box.height / 2 - self.table_top_z)  # a lifted box's shadow spreads
        centre = footprint.mean(axis=0)
        footprint = centre + (footprint - centre) * grow
        self._fill(image, self._clip_project(footprint), SHADOW)
        tcp = drawing.tcp.copy()
        tcp[2] = z
        ring = np.array([tcp + [0.012 * math.cos(a), 0.012 * math.sin(a), 0.0]
                         for a in np.linspace(0, 2 * math.pi, 12, endpoint=False)])
        self._fill(image, self._clip_project(ring), SHADOW)

    # --- primitives -------------------------------------------------------------------------------------
    def _box_primitives(self, box: BoxPose) -> list[_Primitive]:
        corners = box.corners()
        faces = [[4, 5, 6, 7], [0, 3, 2, 1], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]]
        centre = box.position
        prims = []
        cam_pos = np.asarray(self.camera.position, float)
        for face in faces:
            pts = corners[face]
            face_centre = pts.mean(axis=0)
            normal = face_centre - centre
            normal /= np.linalg.norm(normal)
            if normal @ (cam_pos - face_centre) <= 0:  # back face
                continue
            uv, depth = self.camera.project(pts)
            if np.any(depth <= 0.05):
                continue
            shade = 0.80 + 0.2 * max(0.0, float(normal @ LIGHT_DIRECTION))
            colour = tuple(int(min(255, c * shade)) for c in (255, 255, 250))
            prims.append(_Primitive(float(depth.mean()), "poly", uv, colour))
        return prims

    def _arm_primitives(self, drawing: arm_model.ArmDrawing, held_box: BoxPose | None) -> list[_Primitive]:
        cam = self.camera
        prims = []
        pts = np.array(drawing.links)
        uv, depth = cam.project(pts)
        for i in range(len(pts) - 1):
            if depth[i] <= 0.05 or depth[i + 1] <= 0.05:
                continue
            d = 0.5 * (depth[i] + depth[i + 1])
            prims.append(_Primitive(d, "line", uv[i:i + 2], LINK_COLOURS[min(i, len(LINK_COLOURS) - 1)],
                                    max(1.0, 2 * cam.fx * LINK_RADIUS / d)))
        segment_depth = 0.5 * (depth[:-1] + depth[1:])
        for k, colour in enumerate(JOINT_COLOURS):  # shoulder, elbow, wrist, hand = links[1..4]
            j = k + 1
            if depth[j] > 0.05:  # in front of both links it joins, so the colour code stays visible
                d = min(depth[j], segment_depth[j - 1], segment_depth[min(j, len(segment_depth) - 1)]) - 0.002
                prims.append(_Primitive(d, "disc", uv[j:j + 1], colour, max(2.0, cam.fx * JOINT_RADIUS / depth[j])))
        jaws = [drawing.fixed_jaw, drawing.moving_jaw]
        if held_box is not None:  # the moving jaw stops on the box's face instead of passing through it
            pivot, tip = drawing.moving_jaw
            direction = tip - drawing.tcp
            if np.linalg.norm(direction) < held_box.size_xy:
                direction = direction / (np.linalg.norm(direction) + 1e-9)
                jaws[1] = (pivot, drawing.tcp + held_box.size_xy * direction)
        for seg, colour in zip(jaws, JAW_COLOURS):
            seg = np.array(seg)
            suv, sdepth = cam.project(seg)
            if np.all(sdepth > 0.05):
                d = float(sdepth.mean())
                prims.append(_Primitive(d - 0.01, "line", suv, colour, max(1.0, 2 * cam.fx * JAW_RADIUS / d)))
        return prims

    # --- drawing helpers ---------------------------------------------------------------------------------
    def _clip_project(self, pts: np.ndarray) -> np.ndarray | None:
        uv, depth = self.camera.project(pts)
        return uv if np.all(depth > 0.05) else None

    @staticmethod
    def _fill(image, uv, colour) -> None:
        if uv is not None:
            cv2.fillPoly(image, [(uv * _SCALE).astype(np.int32)], colour, cv2.LINE_AA, _SHIFT)

    def _line(self, image, pts, colour, thickness) -> None:
        uv = self._clip_project(pts)
        if uv is not None:
            a, b = (uv * _SCALE).astype(np.int32)
            cv2.line(image, tuple(int(v) for v in a), tuple(int(v) for v in b), colour, thickness, cv2.LINE_AA,
                     _SHIFT)

    @staticmethod
    def _draw(image, prim: _Primitive) -> None:
        pts = (prim.points * _SCALE).astype(np.int32)
        if prim.kind == "poly":
            cv2.fillPoly(image, [pts], prim.colour, cv2.LINE_AA, _SHIFT)
        elif prim.kind == "line":
            cv2.line(image, tuple(int(v) for v in pts[0]), tuple(int(v) for v in pts[1]), prim.colour,
                     int(round(prim.size)), cv2.LINE_AA, _SHIFT)
        else:
            cv2.circle(image, tuple(int(v) for v in pts[0]), int(round(prim.size * _SCALE)), prim.colour, -1,
                       cv2.LINE_AA, _SHIFT)
