"""Synthetic video files whose frames carry their own index (for tests and for running without a camera).

Each frame shows its index as 10 black/white blocks (binary, most significant bit first) on the top row, a red
block bottom-left and a blue block bottom-right (so a swapped BGR/RGB order is visible), and a moving bar. The
blocks are large, so the index survives MJPG compression and resizing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

INDEX_BITS = 10  # up to 1023 frames


def _layout(width: int, height: int) -> tuple[int, int]:
    block = max(4, min(width // INDEX_BITS, height // 4))
    return block, (width - block * INDEX_BITS) // 2


def make_index_frame_bgr(index: int, width: int = 160, height: int = 120) -> np.ndarray:
    """One BGR frame (OpenCV's order) that encodes ``index``."""
    if not 0 <= index < 2 ** INDEX_BITS:
        raise ValueError(f"frame index must be in 0..{2 ** INDEX_BITS - 1}, got {index}")
    frame = np.full((height, width, 3), 96, np.uint8)
    block, left = _layout(width, height)
    for bit in range(INDEX_BITS):
        on = (index >> (INDEX_BITS - 1 - bit)) & 1
        frame[0:block, left + bit * block:left + (bit + 1) * block] = 255 if on else 0
    frame[height - block:, 0:block] = (0, 0, 255)  # red in BGR
    frame[height - block:, width - block:] = (255, 0, 0)  # blue in BGR
    bar_x = (index * 3) % max(1, width - 4)
    frame[block + 2:height - block - 2, bar_x:bar_x + 4] = (0, 255, 0)
    return frame


def decode_frame_index(rgb: np.ndarray) -> int:
    """Index encoded by ``make_index_frame_bgr`` from an RGB image of any size."""
    height, width = rgb.shape[:2]
    block, left = _layout(width, height)
    gray = rgb.mean(axis=2)
    value = 0
    for bit in range(INDEX_BITS):
        centre_x = left + bit * block + block // 2
        patch = gray[block // 4:block - block // 4, centre_x - block // 4:centre_x + block // 4 + 1]
        value = (value << 1) | int(patch.mean() > 127)
    return value


def corner_colours(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean RGB of the bottom-left (red when the channel order is right) and bottom-right (blue) blocks."""
    height, width = rgb.shape[:2]
    block, _ = _layout(width, height)
    inner = block // 4
    bottom = slice(height - block + inner, height - inner)
    return (rgb[bottom, inner:block - inner].reshape(-1, 3).mean(axis=0),
            rgb[bottom, width - block + inner:width - inner].reshape(-1, 3).mean(axis=0))


def write_index_video(path: str | Path, frames: int, width: int = 160, height: int = 120, fps: float = 30.0,
                      fourcc: str = "MJPG") -> Path:
    """Writes ``frames`` index-encoded frames to ``path`` (MJPG .avi by default) and returns the path."""
    path = Path(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} video to {path}")
    try:
        for index in range(frames):
            writer.write(make_index_frame_bgr(index, width, height))
    finally:
        writer.release()
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write an index-encoded test video for the camera publisher.")
    parser.add_argument("path")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args(argv)
    print(write_index_video(args.path, args.frames, args.width, args.height, args.fps))


if __name__ == "__main__":
    main()
