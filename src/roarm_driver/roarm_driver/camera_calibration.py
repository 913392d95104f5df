"""Camera intrinsics for CameraInfo (ROS-free): from parameters or a ROS calibration YAML, scaled to the image size.

The calibration YAML is the format that ROS's camera_calibration / camera_info_manager write::

    image_width: 640
    image_height: 480
    camera_name: usb_cam
    camera_matrix: {rows: 3, cols: 3, data: [fx, 0, cx, 0, fy, cy, 0, 0, 1]}
    distortion_model: plumb_bob
    distortion_coefficients: {rows: 1, cols: 5, data: [k1, k2, t1, t2, k3]}
    rectification_matrix: {rows: 3, cols: 3, data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}
    projection_matrix: {rows: 3, cols: 4, data: [fx', 0, cx', 0, 0, fy', cy', 0, 0, 0, 1, 0]}
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import yaml

IDENTITY_3 = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Intrinsics:
    """What CameraInfo carries, for one image size. All-zero k means "not calibrated" (REP-104)."""

    width: int
    height: int
    k: tuple[float, ...]  # 3x3 row-major
    d: tuple[float, ...]
    r: tuple[float, ...]  # 3x3 row-major
    p: tuple[float, ...]  # 3x4 row-major
    distortion_model: str = "plumb_bob"

    @property
    def calibrated(self) -> bool:
        return any(v != 0.0 for v in self.k)

    def scaled_to(self, width: int, height: int) -> "Intrinsics":
        """The same camera at another resolution (focal lengths and principal point scale with the image)."""
        if (width, height) == (self.width, self.height) or self.width <= 0 or self.height <= 0:
            return replace(self, width=width, height=height)
        sx, sy = width / self.width, height / self.height
        k = list(self.k)
        k[0], k[1], k[2] = k[0] * sx, k[1] * sx, k[2] * sx
        k[4], k[5] = k[4] * sy, k[5] * sy
        p = list(self.p)
        p[0], p[1], p[2], p[3] = p[0] * sx, p[1] * sx, p[2] * sx, p[3] * sx
        p[5], p[6], p[7] = p[5] * sy, p[6] * sy, p[7] * sy
        return replace(self, width=width, height=height, k=tuple(k), p=tuple(p))


def intrinsics_from_parameters(width: int, height: int, fx: float, fy: float, cx: float, cy: float,
                               distortion: Sequence[float] = (), distortion_model: str = "plumb_bob") -> Intrinsics:
    """Pinhole intrinsics from parameters. fx <= 0 or fy <= 0 means "not calibrated": K and P are all zeros.
    cx/cy <= 0 default to the image centre."""
    if fx <= 0 or fy <= 0:
        return Intrinsics(width, height, (0.0,) * 9, tuple(float(v) for v in distortion), IDENTITY_3, (0.0,) * 12,
                          distortion_model)
    cx = cx if cx > 0 else (width - 1) / 2.0
    cy = cy if cy > 0 else (height - 1) / 2.0
    k = (fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0)
    p = (fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0)
    return Intrinsics(width, height, tuple(float(v) for v in k), tuple(float(v) for v in distortion), IDENTITY_3,
                      tuple(float(v) for v in p), distortion_model)


def _matrix(doc: dict, key: str, size: int, path: str) -> tuple[float, ...]:
    entry = doc.get(key)
    data = entry.get("data") if isinstance(entry, dict) else entry
    if not isinstance(data, (list, tuple)) or len(data) != size:
        raise ValueError(f"{path}: '{key}' must hold {size} numbers (as {{rows, cols, data}}), got {entry!r}")
    return tuple(float(v) for v in data)


def load_calibration_yaml(path: str) -> Intrinsics:
    """Reads a ROS camera calibration YAML; raises ValueError naming the file and the bad key."""
    try:
        with open(path, encoding="utf-8") as handle:
            doc = yaml.safe_load(handle)
    except OSError as exc:
        raise ValueError(f"cannot read camera calibration {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"camera calibration {path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"camera calibration {path} must be a mapping")
    try:
        width, height = int(doc["image_width"]), int(doc["image_height"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: image_width and image_height are required integers") from exc
    k = _matrix(doc, "camera_matrix", 9, path)
    entry = doc.get("distortion_coefficients", {"data": []})
    d = tuple(float(v) for v in (entry.get("data", []) if isinstance(entry, dict) else entry or []))
    r = _matrix(doc, "rectification_matrix", 9, path) if "rectification_matrix" in doc else IDENTITY_3
    if "projection_matrix" in doc:
        p = _matrix(doc, "projection_matrix", 12, path)
    else:
        p = (k[0], k[1], k[2], 0.0, k[3], k[4], k[5], 0.0, k[6], k[7], k[8], 0.0)
    return Intrinsics(width, height, k, d, r, p, str(doc.get("distortion_model", "plumb_bob")))
