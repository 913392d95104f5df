"""Reporting helpers for episode runs (ROS-free): 95 % Wilson interval, camera frame recorder, contact sheet, mp4.

Used by the demo (`python -m roarm_vla_bringup.demo`, `make demo`), the kinematic rollout and the tests. The
recorder takes sensor_msgs/Image rgb8 messages (duck-typed: height, width, data), so it needs no rclpy import.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import cv2
import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate (well-behaved at 0/n and n/n, unlike the normal one)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


class FrameRecorder:
    """Keeps every k-th camera frame of the episode being recorded (RGB arrays with their time)."""

    def __init__(self, every: int):
        self.every = max(1, every)
        self.frames: list[tuple[float, np.ndarray]] = []
        self.recording = False
        self._seen = 0
        self._t0 = 0.0
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self.frames, self._seen, self.recording, self._t0 = [], 0, True, time.monotonic()

    def stop(self) -> None:
        self.recording = False

    def __call__(self, msg) -> None:
        if not self.recording:
            return
        with self._lock:
            self._seen += 1
            if (self._seen - 1) % self.every:
                return
            image = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3).copy()
            self.frames.append((time.monotonic() - self._t0, image))


def contact_sheet(frames: list[tuple[float, np.ndarray]], columns: int = 4, rows: int = 2,
                  tile_width: int = 320) -> np.ndarray:
    """Evenly spaced frames in a grid, each labelled with its time (RGB)."""
    if not frames:
        raise ValueError("no camera frames were recorded")
    picks = np.linspace(0, len(frames) - 1, min(len(frames), columns * rows)).round().astype(int)
    tiles = []
    for i in picks:
        t, image = frames[i]
        h = int(image.shape[0] * tile_width / image.shape[1])
        tile = cv2.resize(image, (tile_width, h), interpolation=cv2.INTER_AREA)
        cv2.putText(tile, f"t = {t:4.1f} s", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
        tiles.append(tile)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    return np.vstack([np.hstack(tiles[r * columns:(r + 1) * columns]) for r in range(len(tiles) // columns)])


def write_video(frames: list[tuple[float, np.ndarray]], path: Path, fps: float) -> bool:
    if not frames:
        return False
    h, w = frames[0][1].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        return False
    for _, image in frames:
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path.exists() and path.stat().st_size > 0
