"""ROS 2 node ``camera_publisher``: an OpenCV camera (or a video file) on ``camera/image_raw`` + ``camera/camera_info``.

Thin layer over ``camera_capture.CameraCapture``: frames are published from the capture thread as soon as they
are read (rgb8, sensor-data QoS, stamped at capture), CameraInfo with the same header goes out with every image,
and ``diagnostics`` reports the camera's health at 1 Hz. A missing or lost camera is retried forever; frames
older than ``stale_after_s`` are dropped, never published.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from roarm_driver.camera_calibration import Intrinsics, intrinsics_from_parameters, load_calibration_yaml
from roarm_driver.camera_capture import CameraCapture, CaptureConfig, CaptureStatus, Frame
from roarm_common.node_main import run_node

# (name, default, description): the single list of parameters; camera_publisher.yaml sets them.
PARAMETERS: tuple[tuple[str, object, str], ...] = (
    ("source", "/dev/video0", "V4L2 device index ('0') or path ('/dev/video0'), a video file or a stream URL"),
    ("width", 640, "image width in pixels (frames are resized to width x height; 0 with height 0 = native)"),
    ("height", 480, "image height in pixels (0 with width 0 = native size)"),
    ("fps", 30.0, "device: requested frame rate; video file: playback rate (0 = the file's own rate)"),
    ("loop", True, "video files: start again at the end (false = stop publishing at the end)"),
    ("frame_id", "camera_optical_frame", "header.frame_id of Image and CameraInfo (the camera's optical frame)"),
    ("stale_after_s", 0.2, "frames older than this (s since capture) are dropped, never published"),
    ("reconnect_interval_s", 1.0, "seconds between attempts to (re)open a missing or lost camera"),
    ("read_timeout_s", 2.0, "an open camera that delivers no frame for this long is closed and reopened"),
    ("backend", "auto", "OpenCV backend: auto, v4l2 or ffmpeg"),
    ("fourcc", "", "devices: pixel format to request, e.g. MJPG (empty = driver default)"),
    ("calibration_file", "", "ROS camera calibration YAML; when set it overrides fx/fy/cx/cy/distortion"),
    ("fx", 0.0, "focal length x in pixels at width x height (0 = not calibrated: K and P all zeros)"),
    ("fy", 0.0, "focal length y in pixels (0 = not calibrated)"),
    ("cx", 0.0, "principal point x in pixels (0 = image centre)"),
    ("cy", 0.0, "principal point y in pixels (0 = image centre)"),
    ("distortion_model", "plumb_bob", "CameraInfo distortion model"),
    ("distortion_coefficients", [0.0, 0.0, 0.0, 0.0, 0.0], "CameraInfo D (k1, k2, t1, t2, k3 for plumb_bob)"),
    ("diagnostics_period_s", 1.0, "period of the diagnostics message"),
)


class CameraPublisherNode(Node):
    """Publishes an OpenCV capture as sensor_msgs/Image (rgb8) and CameraInfo; see the module docstring."""

    def __init__(self, node_name: str = "camera_publisher", **kwargs):
        super().__init__(node_name, **kwargs)
        for name, default, description in PARAMETERS:
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        get = lambda name: self.get_parameter(name).value  # noqa: E731
        self._frame_id = str(get("frame_id"))
        self._config = CaptureConfig(
            source=str(get("source")),
            width=int(get("width")),
            height=int(get("height")),
            fps=float(get("fps")),
            loop=bool(get("loop")),
            stale_after_s=float(get("stale_after_s")),
            reconnect_interval_s=float(get("reconnect_interval_s")),
            read_timeout_s=float(get("read_timeout_s")),
            backend=str(get("backend")),
            fourcc=str(get("fourcc")),
        )
        calibration_file = str(get("calibration_file"))
        # Loaded (and checked) now so that a bad file fails at start-up, not at the first frame.
        self._calibration: Optional[Intrinsics] = load_calibration_yaml(calibration_file) if calibration_file else None
        self._intrinsic_params = (float(get("fx")), float(get("fy")), float(get("cx")), float(get("cy")),
                                  [float(v) for v in get("distortion_coefficients")], str(get("distortion_model")))
        self._info_cache: dict[tuple[int, int], Intrinsics] = {}

        self._image_pub = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self._info_pub = self.create_publisher(CameraInfo, "camera/camera_info", qos_profile_sensor_data)
        self._diag_pub = self.create_publisher(DiagnosticArray, "diagnostics", 10)

        self._publish_lock = threading.Lock()
        self._closing = False
        self._published = 0
        self._dropped_late = 0
        self._last_level: Optional[bytes] = None
        self._capture = CameraCapture(self._config, on_frame=self._on_frame)
        self._capture.start()
        self._diag_timer = self.create_timer(float(get("diagnostics_period_s")), self._publish_diagnostics)
        self.get_logger().info(
            f"camera_publisher: source {self._config.source!r} -> camera/image_raw ({self._config.width}x"
            f"{self._config.height} @ {self._config.fps:g} fps, frame {self._frame_id!r})")

    # -- frames ------------------------------------------------------------------------------------------------------
    def _stamp(self, frame: Frame) -> TimeMsg:
        """Capture instant on the node's clock (sim time included): now minus the frame's age."""
        age_ns = time.monotonic_ns() - frame.capture_monotonic_ns
        now = self.get_clock().now()
        if now.nanoseconds <= age_ns:  # sim time before the first /clock message: no meaningful instant yet
            return now.to_msg()
        return (now - Duration(nanoseconds=age_ns)).to_msg()

    def _camera_info(self, width: int, height: int) -> Intrinsics:
        """Intrinsics for this image size: the calibration file scaled to it, or the fx/fy/cx/cy parameters."""
        key = (width, height)
        if key not in self._info_cache:
            calibration = self._calibration
            if calibration is None:
                self._info_cache[key] = intrinsics_from_parameters(width, height, *self._intrinsic_params)
            else:
                if (calibration.width, calibration.height) != key:
                    self.get_logger().warning(
                        f"calibration is for {calibration.width}x{calibration.height}, images are "
                        f"{width}x{height}: CameraInfo scaled to the image size")
                self._info_cache[key] = calibration.scaled_to(width, height)
        return self._info_cache[key]

    def _on_frame(self, frame: Frame) -> None:
        """Capture thread: publish the frame unless it went stale on the way (the capture already checked once)."""
        with self._publish_lock:
            if self._closing:
                return
            if frame.age_s() > self._config.stale_after_s:
                self._dropped_late += 1
                return
            height, width = frame.image.shape[:2]
            image = Image()
            image.header.stamp = self._stamp(frame)
            image.header.frame_id = self._frame_id
            image.height, image.width = height, width
            image.encoding = "rgb8"
            image.is_bigendian = 0
            image.step = width * 3
            image.data = frame.image.tobytes()
            info = CameraInfo()
            info.header = image.header
            intrinsics = self._camera_info(width, height)
            info.width, info.height = width, height
            info.distortion_model = intrinsics.distortion_model
            info.d = list(intrinsics.d)
            info.k = list(intrinsics.k)
            info.r = list(intrinsics.r)
            info.p = list(intrinsics.p)
            self._image_pub.publish(image)
            self._info_pub.publish(info)
            self._published += 1

    # -- diagnostics ---------------------------------------------------------------------------------------------------
    def _diagnostic_status(self, status: CaptureStatus) -> DiagnosticStatus:
        stale_total = status.frames_dropped_stale + self._dropped_late
        age = status.last_frame_age_s
        if status.state == "streaming" and age is not None and age <= max(1.0, 3 * self._config.stale_after_s):
            level, message = DiagnosticStatus.OK, f"streaming {status.measured_fps:.1f} fps"
            if stale_total and status.frames_handed_out == 0:
                level, message = DiagnosticStatus.WARN, "every frame was stale on arrival (dropped, not published)"
        elif status.state == "streaming" and age is not None and age > self._config.read_timeout_s:
            # The capture thread is stuck in a read (a hung device): nothing fresh can come until it returns.
            level, message = DiagnosticStatus.ERROR, f"camera stalled: no frame for {age:.1f} s"
        elif status.state == "streaming":
            level = DiagnosticStatus.WARN
            message = "connected, waiting for frames" if age is None else f"no fresh frame for {age:.1f} s"
        elif status.state == "ended":
            level, message = DiagnosticStatus.WARN, status.message
        elif status.state == "starting":
            level, message = DiagnosticStatus.WARN, "opening the camera"
        else:
            level, message = DiagnosticStatus.ERROR, f"camera lost: {status.message}"
        values = {
            "source": self._config.source,
            "state": status.state,
            "connected": str(status.connected).lower(),
            "frames_published": str(self._published),
            "frames_captured": str(status.frames_captured),
            "frames_dropped_stale": str(stale_total),
            "open_attempts": str(status.open_attempts),
            "failed_opens": str(status.failed_opens),
            "reconnects": str(status.reconnects),
            "file_loops": str(status.loops),
            "measured_fps": f"{status.measured_fps:.2f}",
            "last_frame_age_s": "none" if age is None else f"{age:.3f}",
            "native_size": f"{status.native_width}x{status.native_height}",
            "last_error": status.last_error,
            "frame_id": self._frame_id,
        }
        values.update({k: str(v) for k, v in status.extra.items()})
        return DiagnosticStatus(
            level=level, name=f"{self.get_name()}: camera", message=message, hardware_id=self._config.source,
            values=[KeyValue(key=k, value=v) for k, v in values.items()])

    def _publish_diagnostics(self) -> None:
        diag = self._diagnostic_status(self._capture.status())
        if diag.level != self._last_level:
            # rclpy ties a severity to each call site: one call per severity.
            if diag.level == DiagnosticStatus.OK:
                self.get_logger().info(f"camera: {diag.message}")
            else:
                self.get_logger().warning(f"camera: {diag.message}")
            self._last_level = diag.level
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [diag]
        self._diag_pub.publish(array)

    def capture_status(self) -> CaptureStatus:
        """The capture's health (what diagnostics report)."""
        return self._capture.status()

    def destroy_node(self) -> None:
        with self._publish_lock:
            self._closing = True
        self._capture.stop()
        super().destroy_node()


def main(args=None) -> int:
    return run_node(CameraPublisherNode, args)


if __name__ == "__main__":
    main()
