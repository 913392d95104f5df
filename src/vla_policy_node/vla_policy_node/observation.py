"""The ONE place that turns ROS messages into a policy observation and policy actions back into joint positions.

ROS-free and duck-typed: it reads the fields of sensor_msgs/Image, sensor_msgs/CompressedImage and
sensor_msgs/JointState whether they come from rclpy (the live vla_policy node) or from a rosbag2 file read by the
`rosbags` library (the bag -> LeRobotDataset converter). Both call the same functions, so what a policy is
trained on is what it sees at run time (a test compares the two on a recorded bag).

Conventions:
- state and action vectors follow ``spec.state_joint_names`` (default: the URDF's joint order) in
  ``spec.joint_units``: "radians" (URDF, REP-103) or "degrees" (the Waveshare SDK's degree convention, gripper
  already pi - g: ``roarm_description.joints.urdf_to_sdk_degrees``).
- images are HxWx3 uint8 RGB: the camera's image, cropped to ``spec.image_crop`` (x, y, width, height in the
  camera's pixels: the workspace, so that the policy's few pixels go to what matters) and then resized to
  ``spec.image_size`` (height, width), each when it is set (:func:`policy_image`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from roarm_description.joints import JOINT_NAMES, sdk_degrees_to_urdf, urdf_to_sdk_degrees

STATE_KEY = "observation.state"
ACTION_KEY = "action"
DEFAULT_IMAGE_KEY = "observation.images.top"
JOINT_UNITS = ("radians", "degrees")
RAW_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


@dataclass(frozen=True)
class ObservationSpec:
    """What a policy reads and writes: keys, joint order, joint units, image size."""

    state_joint_names: tuple[str, ...] = JOINT_NAMES
    joint_units: str = "radians"
    image_key: str = DEFAULT_IMAGE_KEY
    image_size: tuple[int, int] | None = None  # (height, width); None keeps the camera's size
    image_crop: tuple[int, int, int, int] | None = None  # (x, y, width, height) of the camera image; None: all

    def __post_init__(self) -> None:
        if self.joint_units not in JOINT_UNITS:
            raise ValueError(f"joint_units must be one of {JOINT_UNITS}, got {self.joint_units!r}")
        if len(set(self.state_joint_names)) != len(self.state_joint_names):
            raise ValueError(f"state_joint_names repeat a name: {list(self.state_joint_names)}")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) <= 0):
            raise ValueError(f"image_size must be (height, width) > 0, got {self.image_size}")
        if self.image_crop is not None and (len(self.image_crop) != 4 or min(self.image_crop[:2]) < 0
                                            or min(self.image_crop[2:]) <= 0):
            raise ValueError(f"image_crop must be (x, y, width, height) with x, y >= 0 and a size > 0, got "
                             f"{self.image_crop}")

    @property
    def state_dim(self) -> int:
        return len(self.state_joint_names)


# ------------------------------------------------------------------------------------------------- images
def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) or CompressedImage (jpeg/png) -> HxWx3 uint8 RGB.

    Raises ValueError for another encoding or a buffer that does not match height x step.
    """
    data = msg.data
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):  # CompressedImage
        import cv2

        buffer = np.frombuffer(bytes(data), dtype=np.uint8)
        decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
        if decoded is None:
            raise ValueError(f"compressed image ({msg.format!r}) does not decode")
        return np.ascontiguousarray(decoded[..., ::-1])
    encoding = str(msg.encoding).lower()
    if encoding not in RAW_ENCODINGS:
        raise ValueError(f"image encoding {msg.encoding!r} not supported (one of {list(RAW_ENCODINGS)})")
    channels = 1 if encoding == "mono8" else (4 if encoding in ("rgba8", "bgra8") else 3)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    raw = np.frombuffer(bytes(data) if not isinstance(data, np.ndarray) else data.tobytes(), dtype=np.uint8)
    if step < width * channels or raw.size < height * step:
        raise ValueError(f"image buffer of {raw.size} bytes does not hold {height} rows of step {step} "
                         f"({width} px x {channels} channels)")
    image = raw[: height * step].reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    if encoding == "mono8":
        return np.repeat(image, 3, axis=2)
    if encoding.startswith("bgr"):
        image = image[..., 2::-1]
    return np.ascontiguousarray(image[..., :3])


def resize_image(image_rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize to (height, width) with area interpolation (the camera is usually larger); None = unchanged."""
    if size is None or tuple(image_rgb.shape[:2]) == tuple(size):
        return image_rgb
    import cv2

    return cv2.resize(image_rgb, (int(size[1]), int(size[0])), interpolation=cv2.INTER_AREA)


def crop_image(image_rgb: np.ndarray, crop: tuple[int, int, int, int] | None) -> np.ndarray:
    """The (x, y, width, height) window of the image (a view); None = unchanged. ValueError when it does not fit."""
    if crop is None:
        return image_rgb
    x, y, w, h = (int(v) for v in crop)
    height, width = image_rgb.shape[:2]
    if x + w > width or y + h > height:
        raise ValueError(f"image_crop (x {x}, y {y}, width {w}, height {h}) does not fit the {width}x{height} "
                         "camera image")
    return image_rgb[y:y + h, x:x + w]


def policy_image(camera_rgb: np.ndarray, spec: ObservationSpec) -> np.ndarray:
    """The camera image as the policy sees it: cropped to ``spec.image_crop``, then resized to ``spec.image_size``."""
    return resize_image(crop_image(camera_rgb, spec.image_crop), spec.image_size)


# ------------------------------------------------------------------------------------------------- joints
def joint_vector(names: Sequence[str], positions: Sequence[float], spec: ObservationSpec) -> np.ndarray:
    """(names, URDF radians) of a JointState -> the spec's state vector (order, units), float32.

    Raises ValueError naming the joints the message lacks, or when a value is not finite.
    """
    if len(names) != len(positions):
        raise ValueError(f"joint state has {len(names)} names but {len(positions)} positions")
    by_name = dict(zip(names, positions))
    missing = [n for n in spec.state_joint_names if n not in by_name]
    if missing:
        raise ValueError(f"joint state lacks joint(s) {missing} (it has {list(names)})")
    vector = np.array([float(by_name[n]) for n in spec.state_joint_names], dtype=float)
    if not np.all(np.isfinite(vector)):
        raise ValueError("joint state holds NaN or inf")
    if spec.joint_units == "degrees":
        # From float32 radians, as the live node holds the measured state: converter and node then round alike
        # (from float64 radians the degrees could differ by one float32 step; test_observation_parity.py).
        vector = urdf_to_sdk_degrees(vector.astype(np.float32).astype(float))
    return vector.astype(np.float32)


def state_from_joint_state(msg: Any, spec: ObservationSpec) -> np.ndarray:
    """sensor_msgs/JointState -> state vector (spec order and units)."""
    return joint_vector(list(msg.name), list(msg.position), spec)


def action_from_trajectory(msg: Any, spec: ObservationSpec) -> np.ndarray:
    """trajectory_msgs/JointTrajectory's FIRST point (a streamed setpoint: the command) -> action vector."""
    if not msg.points:
        raise ValueError("joint trajectory has no points")
    return joint_vector(list(msg.joint_names), list(msg.points[0].positions), spec)


def build_observation(image_rgb: np.ndarray, state: np.ndarray, spec: ObservationSpec,
                      from_camera: bool = True) -> dict[str, np.ndarray]:
    """{image_key: HxWx3 uint8, STATE_KEY: float32 vector}: a LeRobot dataset frame or policy input.

    from_camera: the image is the camera's (cropped and resized by :func:`policy_image`); False: it is already a
    policy image (a dataset frame, as the offline evaluation feeds), used as it is.
    """
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    state = np.asarray(state, dtype=np.float32)
    if state.shape != (spec.state_dim,):
        raise ValueError(f"state must hold {spec.state_dim} values, got shape {state.shape}")
    if from_camera:
        image = policy_image(image, spec)
    elif spec.image_size is not None and tuple(image.shape[:2]) != tuple(spec.image_size):
        raise ValueError(f"a policy image must be {spec.image_size[0]}x{spec.image_size[1]} (height x width), got "
                         f"{image.shape[0]}x{image.shape[1]}")
    image = np.ascontiguousarray(image)
    if not image.flags.writeable:  # a view of a message's buffer: torch.from_numpy wants a writable array
        image = image.copy()
    return {spec.image_key: image, STATE_KEY: state}


def observation_from_messages(image_msg: Any, joint_state_msg: Any, spec: ObservationSpec) -> dict[str, np.ndarray]:
    """The observation for one frame, from the image and joint-state messages chosen for it."""
    return build_observation(image_to_rgb(image_msg), state_from_joint_state(joint_state_msg, spec), spec)


def actions_to_urdf(actions: np.ndarray, spec: ObservationSpec) -> np.ndarray:
    """[T, state_dim] policy actions (spec order and units) -> [T, 6] URDF radians in JOINT_NAMES order.

    Joints the policy does not command keep NaN (the caller fills them from the measured state).
    """
    actions = np.asarray(actions, dtype=float)
    if actions.ndim != 2 or actions.shape[1] != spec.state_dim:
        raise ValueError(f"actions must be [T, {spec.state_dim}], got shape {actions.shape}")
    if spec.joint_units == "degrees":
        actions = sdk_degrees_to_urdf(actions)
    out = np.full((actions.shape[0], len(JOINT_NAMES)), np.nan)
    for column, name in enumerate(spec.state_joint_names):
        if name in JOINT_NAMES:
            out[:, JOINT_NAMES.index(name)] = actions[:, column]
    return out


def spec_from_meta(meta: Mapping[str, Any], **overrides: Any) -> ObservationSpec:
    """The spec a dataset's or checkpoint's roarm-vla metadata describes (keys as written by the converter)."""
    fields = {
        "state_joint_names": tuple(meta.get("joint_names", JOINT_NAMES)),
        "joint_units": meta.get("joint_units", "radians"),
        "image_key": meta.get("image_key", DEFAULT_IMAGE_KEY),
        "image_size": tuple(meta["image_size"]) if meta.get("image_size") else None,
        "image_crop": crop_from_meta(meta),
    }
    fields.update(overrides)
    return ObservationSpec(**fields)


def crop_from_meta(meta: Mapping[str, Any]) -> tuple[int, int, int, int] | None:
    """The (x, y, width, height) crop a dataset's or checkpoint's metadata records (``image_crop``); None when absent."""
    crop = meta.get("image_crop")
    return tuple(int(v) for v in crop) if crop else None
