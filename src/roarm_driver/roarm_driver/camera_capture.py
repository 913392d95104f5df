"""OpenCV frame capture for the camera publisher (ROS-free).

A background thread owns the ``cv2.VideoCapture`` (a V4L2 device index/path or a video file), converts every
frame to RGB, stamps it at capture and keeps only the newest one. Consumers either poll ``take_new_frame()`` or
get each frame pushed through the ``on_frame`` callback (called from the capture thread; with a callback set, the
callback is the consumer and ``take_new_frame()`` returns nothing).

Guarantees (tested in test_camera_capture.py):
- A frame is handed out as new at most once, and never when it is older than ``stale_after_s``.
- A source that cannot be opened, stops delivering frames for ``read_timeout_s`` or fails to read is closed and
  reopened every ``reconnect_interval_s``; nothing raises out of the thread; ``status()`` says what happened.
- Video files are paced at ``fps`` (0 = the file's own rate) and loop when ``loop`` is set; devices deliver at
  their own rate (``fps`` is requested from the driver), with a one-frame buffer so reads never lag behind.
  Network streams (``rtsp://``, ``http://``) are live sources like devices: read as they come, reopened when lost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import cv2
import numpy as np

LOG = logging.getLogger(__name__)

_BACKENDS = {"auto": cv2.CAP_ANY, "v4l2": cv2.CAP_V4L2, "ffmpeg": cv2.CAP_FFMPEG}


@dataclass(frozen=True)
class CaptureConfig:
    """What to capture and how. See ``src/roarm_vla_bringup/config/camera_publisher.yaml`` for the defaults."""

    source: str  # device index ("0"), device path ("/dev/video0"), video file path or stream URL (rtsp://...)
    width: int = 0  # frames are resized to width x height when both > 0 (devices are asked for it first)
    height: int = 0
    fps: float = 30.0  # files: pacing rate (0 = the file's own rate); devices: requested rate
    loop: bool = True  # files: start again at the end instead of ending the stream
    stale_after_s: float = 0.2  # a frame older than this is never handed out as new
    reconnect_interval_s: float = 1.0  # wait between attempts to (re)open the source
    read_timeout_s: float = 2.0  # an open source without a frame for this long is closed and reopened
    backend: str = "auto"  # "auto", "v4l2" or "ffmpeg"
    fourcc: str = ""  # devices: pixel format to request, e.g. "MJPG" (empty = the driver's default)

    def __post_init__(self) -> None:
        if not str(self.source).strip():
            raise ValueError("camera source must be a device index, a device path or a video file path")
        if self.width < 0 or self.height < 0 or (self.width > 0) != (self.height > 0):
            raise ValueError(f"width/height must both be 0 (native size) or both > 0, got {self.width}x{self.height}")
        if not self.fps >= 0:
            raise ValueError(f"fps must be >= 0, got {self.fps}")
        for name in ("stale_after_s", "reconnect_interval_s", "read_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {sorted(_BACKENDS)}, got {self.backend!r}")
        if self.fourcc and len(self.fourcc) != 4:
            raise ValueError(f"fourcc must be 4 characters (e.g. MJPG) or empty, got {self.fourcc!r}")

    @property
    def device_index(self) -> Optional[int]:
        """The V4L2 index when ``source`` is a bare integer, else None."""
        text = str(self.source).strip()
        return int(text) if text.isdigit() else None

    @property
    def is_device_path(self) -> bool:
        """True for a V4L2 device node such as /dev/video0."""
        return self.device_index is None and str(self.source).strip().startswith("/dev/")

    @property
    def is_url(self) -> bool:
        """True for a network stream (rtsp://, http://, ...): a live source like a device."""
        return "://" in str(self.source)

    @property
    def is_file(self) -> bool:
        """True for a video file (a path that is neither an index, a /dev node nor a URL): paced and looped."""
        text = str(self.source).strip()
        return self.device_index is None and not text.startswith("/dev/") and not self.is_url


@dataclass(frozen=True)
class Frame:
    """One captured frame."""

    image: np.ndarray  # H x W x 3, uint8, RGB
    capture_time_ns: int  # wall clock (time.time_ns) when the frame was read from the source
    capture_monotonic_ns: int  # time.monotonic_ns at the same instant (ages are measured with this)
    sequence: int  # frames captured since the capture started, 0-based, never reset
    source_index: int  # position in the file (frame number, 0-based) or frames since the device was opened

    def age_s(self, now_monotonic_ns: Optional[int] = None) -> float:
        now = time.monotonic_ns() if now_monotonic_ns is None else now_monotonic_ns
        return (now - self.capture_monotonic_ns) / 1e9


@dataclass
class CaptureStatus:
    """A snapshot of the capture's health for diagnostics."""

    state: str = "starting"  # starting | streaming | reconnecting | ended | stopped
    connected: bool = False
    message: str = ""
    last_error: str = ""
    open_attempts: int = 0
    failed_opens: int = 0
    reconnects: int = 0  # times an open source was lost and closed
    frames_captured: int = 0
    frames_handed_out: int = 0
    frames_dropped_stale: int = 0
    loops: int = 0  # file restarts
    native_width: int = 0
    native_height: int = 0
    measured_fps: float = 0.0
    last_frame_age_s: Optional[float] = None
    extra: dict = field(default_factory=dict)


class CameraCapture:
    """Threaded OpenCV capture with staleness guard and reconnection. Use ``start()`` / ``stop()`` or ``with``."""

    def __init__(self, config: CaptureConfig, on_frame: Optional[Callable[[Frame], None]] = None):
        self.config = config
        self._on_frame = on_frame
        self._lock = threading.Lock()
        self._new_frame = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._latest: Optional[Frame] = None
        self._last_handed_sequence = -1
        self._status = CaptureStatus()
        self._sequence = 0
        self._rate_window: list[int] = []  # monotonic ns of recent captures

    # -- life cycle ------------------------------------------------------------------------------------------------
    def start(self) -> "CameraCapture":
        if self._thread is not None:
            raise RuntimeError("capture already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"camera_capture[{self.config.source}]", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stops the thread and releases the source (waits up to ``timeout_s`` for a blocking read to return)."""
        self._stop.set()
        with self._new_frame:
            self._new_frame.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                LOG.warning("camera capture thread did not stop within %.1f s (blocked in a read)", timeout_s)
            self._thread = None
        with self._lock:
            self._status.state = "stopped"
            self._status.connected = False

    def __enter__(self) -> "CameraCapture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- consumers -------------------------------------------------------------------------------------------------
    def take_new_frame(self, timeout_s: float = 0.0) -> Optional[Frame]:
        """The newest frame if it was not handed out before and is not stale; else None (waits up to timeout_s)."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._new_frame:
            while True:
                frame = self._claim_locked()
                if frame is not None:
                    return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return None
                self._new_frame.wait(remaining)

    def _claim_locked(self) -> Optional[Frame]:
        frame = self._latest
        if frame is None or frame.sequence <= self._last_handed_sequence:
            return None
        self._last_handed_sequence = frame.sequence
        if frame.age_s() > self.config.stale_after_s:
            self._status.frames_dropped_stale += 1
            return None
        self._status.frames_handed_out += 1
        return frame

    def status(self) -> CaptureStatus:
        with self._lock:
            snapshot = CaptureStatus(**{k: v for k, v in vars(self._status).items() if k != "extra"})
            snapshot.extra = dict(self._status.extra)
            if self._latest is not None:
                snapshot.last_frame_age_s = self._latest.age_s()
            now = time.monotonic_ns()
            recent = [t for t in self._rate_window if now - t < 2_000_000_000]
            if len(recent) >= 2 and now - recent[-1] < 1_000_000_000:
                snapshot.measured_fps = (len(recent) - 1) / ((recent[-1] - recent[0]) / 1e9)
            return snapshot

    # -- capture thread ------------------------------------------------------------------------------------------
    def _set_status(self, **fields) -> None:
        with self._lock:
            for key, value in fields.items():
                setattr(self._status, key, value)

    def _open(self) -> Optional[cv2.VideoCapture]:
        config = self.config
        with self._lock:
            self._status.open_attempts += 1
        target = config.device_index if config.device_index is not None else str(config.source).strip()
        if config.is_file and not os.path.isfile(str(target)):
            self._open_failed(f"video file {target} does not exist")
            return None
        if config.is_device_path and not os.path.exists(str(target)):
            self._open_failed(f"camera device {target} does not exist")
            return None
        try:
            if config.is_url:
                # Bound FFmpeg's waits (30 s by default) so that a dead server reads as a lost camera quickly.
                timeout_ms = int(config.read_timeout_s * 1000)
                capture = cv2.VideoCapture(target, _BACKENDS[config.backend], [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms])
            else:
                capture = cv2.VideoCapture(target, _BACKENDS[config.backend])
        except cv2.error as exc:  # OpenCV raises for some malformed sources
            self._open_failed(f"cannot open {target}: {exc}")
            return None
        if not capture.isOpened():
            capture.release()
            self._open_failed(f"cannot open {target} (OpenCV backend {config.backend})")
            return None
        if config.device_index is not None or config.is_device_path:
            # Ask the driver for the format; it may pick the nearest it supports (frames are resized anyway).
            if config.fourcc:
                capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*config.fourcc))
            if config.width > 0:
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, config.width)
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, config.height)
            if config.fps > 0:
                capture.set(cv2.CAP_PROP_FPS, config.fps)
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # never serve a frame that waited in the driver's queue
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._set_status(native_width=width, native_height=height, connected=True, state="streaming",
                         message=f"streaming from {target} ({width}x{height})")
        LOG.info("camera source %s opened (%dx%d)", target, width, height)
        return capture

    def _open_failed(self, reason: str) -> None:
        with self._lock:
            repeated = reason == self._status.last_error
            self._status.failed_opens += 1
            self._status.connected = False
            self._status.state = "reconnecting"
            self._status.last_error = reason
            self._status.message = f"{reason}; retrying every {self.config.reconnect_interval_s:.1f} s"
        # Once per distinct reason: a camera that stays away must not flood the log (status() has the count).
        (LOG.debug if repeated else LOG.warning)("camera: %s (retrying)", reason)

    def _lost(self, capture: cv2.VideoCapture, reason: str) -> None:
        capture.release()
        with self._lock:
            self._status.reconnects += 1
            self._status.connected = False
            self._status.state = "reconnecting"
            self._status.last_error = reason
            self._status.message = f"{reason}; reconnecting every {self.config.reconnect_interval_s:.1f} s"
        LOG.warning("camera: %s", reason)

    def _file_period_s(self, capture: cv2.VideoCapture) -> float:
        fps = self.config.fps if self.config.fps > 0 else capture.get(cv2.CAP_PROP_FPS)
        return 1.0 / fps if fps and fps > 0 else 1.0 / 30.0

    def _run(self) -> None:
        config = self.config
        while not self._stop.is_set():
            capture = self._open()
            if capture is None:
                self._stop.wait(config.reconnect_interval_s)
                continue
            try:
                ended = self._stream(capture)
            except Exception as exc:  # a crash in OpenCV or the callback must not kill the camera for good
                LOG.exception("camera capture failed")
                self._lost(capture, f"capture error: {exc!r}")
                self._stop.wait(config.reconnect_interval_s)
                continue
            if ended:
                capture.release()
                self._set_status(state="ended", connected=False,
                                 message=f"end of video file {config.source} (loop disabled)")
                return
            if self._stop.is_set():
                capture.release()
                return
            self._stop.wait(config.reconnect_interval_s)

    def _stream(self, capture: cv2.VideoCapture) -> bool:
        """Reads until stopped (returns False), the file ends without loop (True) or the source is lost (False)."""
        config = self.config
        is_file = config.is_file
        period = self._file_period_s(capture) if is_file else 0.0
        next_due = time.monotonic()
        last_frame_at = time.monotonic()
        source_index = 0
        while not self._stop.is_set():
            if is_file:
                # Pace the file like a camera: sleep until the frame is due; if far behind, skip ahead in time.
                delay = next_due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return False
                next_due = max(next_due + period, time.monotonic() - period)
                source_index = int(capture.get(cv2.CAP_PROP_POS_FRAMES))
            ok, bgr = capture.read()
            now_mono, now_wall = time.monotonic_ns(), time.time_ns()
            if not ok or bgr is None:
                if is_file:
                    if not config.loop:
                        return True
                    if self._rewind(capture):
                        continue
                    self._lost(capture, f"cannot rewind {config.source}")
                    return False
                if time.monotonic() - last_frame_at > config.read_timeout_s or not capture.isOpened():
                    self._lost(capture, f"no frame from {config.source} for {config.read_timeout_s:.1f} s")
                    return False
                self._stop.wait(0.01)
                continue
            last_frame_at = time.monotonic()
            frame = Frame(
                image=self._to_rgb(bgr),
                capture_time_ns=now_wall,
                capture_monotonic_ns=now_mono,
                sequence=self._sequence,
                source_index=source_index,
            )
            self._sequence += 1
            if not is_file:
                source_index += 1
            self._publish(frame)
        return False

    def _rewind(self, capture: cv2.VideoCapture) -> bool:
        rewound = capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        if rewound and int(capture.get(cv2.CAP_PROP_POS_FRAMES)) == 0:
            with self._lock:
                self._status.loops += 1
            return True
        return False

    def _to_rgb(self, bgr: np.ndarray) -> np.ndarray:
        if bgr.ndim == 2:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
        elif bgr.shape[2] == 4:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB)
        else:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        width, height = self.config.width, self.config.height
        if width > 0 and (rgb.shape[1] != width or rgb.shape[0] != height):
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(rgb)

    def _publish(self, frame: Frame) -> None:
        with self._new_frame:
            self._latest = frame
            self._status.frames_captured += 1
            self._rate_window.append(frame.capture_monotonic_ns)
            if len(self._rate_window) > 120:
                del self._rate_window[:-120]
            self._new_frame.notify_all()
        if self._on_frame is not None:
            claimed = None
            with self._lock:
                claimed = self._claim_locked()
            if claimed is not None:
                try:
                    self._on_frame(claimed)
                except Exception as exc:  # the consumer's failure is not the camera's: count it, keep capturing
                    with self._lock:
                        self._status.extra["callback_errors"] = self._status.extra.get("callback_errors", 0) + 1
                        self._status.extra["last_callback_error"] = repr(exc)
                    LOG.exception("camera frame callback failed")
