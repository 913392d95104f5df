#!/usr/bin/env python3
"""roarm-vla-data convert figures: frames per second and multiple of real time, per stage.

K synthetic episode bags (the converter tests' writer, by the episode bag contract: 640x480 rgb8 camera at 30 fps,
joint states at 50 Hz, commands at 10 Hz, MCAP) or the bags under --bags are converted twice through
roarm_training.convert (LeRobot's API) three ways: video (libsvtav1, LeRobot's streaming encoder: the default),
batch (PNG files, then the episode encoded at save_episode: LeRobot's default path) and images (PNG in parquet).
x_real_time = episode seconds converted per wall second; stage seconds from ConvertResult.stage_seconds
(read_align, decode_build, add_frame, save_episode = LeRobot's encoding, finalize; other = finding and
fingerprinting the bags, LeRobotDataset.create, the printed report; encoder_wait = the converter waiting for room
in LeRobot's video encoder queue). The machine's other load changes the absolute figures; the ratio video/images,
the stage shares and the CPU milliseconds per frame (all threads of the process: reading, building frames, encoding,
statistics) are the comparable ones: 2 cores / (30 fps x 5) = 13.3 CPU ms per frame is the most that 5x real time
allows on 2 cores.

Run: cd /work/main && source scripts/env.sh && python bench/convert.py [--episodes 2] [--seconds 5] [--bags DIR]
     [--vcodec libsvtav1|h264|hevc]
Last line: one JSON object with the headline figures.
"""

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training" / "tests"))  # bag_fixtures: the converter tests' episode writer

import numpy as np  # noqa: E402

from bag_fixtures import custom_data, regular_episode  # noqa: E402
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402,F401  (imported once, before any timing)
from roarm_training.convert import ConvertOptions, convert  # noqa: E402


def camera_like(i: int, height: int, width: int) -> np.ndarray:
    """A scene a video encoder and PNG find realistic: lit background, a box moving across it, sensor noise."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([60 + 80 * xx / width, 70 + 60 * yy / height, np.full(xx.shape, 90.0)], axis=2)
    x0 = int((0.2 + 0.6 * (i % 90) / 90) * width)
    image[height // 2:height // 2 + height // 6, x0:x0 + width // 8] = (230, 230, 225)
    noise = np.random.default_rng(i).normal(0.0, 3.0, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def run(bags: list[pathlib.Path], out: pathlib.Path, use_videos: bool, streaming: bool, vcodec: str) -> dict:
    cpu0, start = os.times(), time.perf_counter()
    result = convert(bags, ConvertOptions(out=out, use_videos=use_videos, streaming_encoding=streaming,
                                          vcodec=vcodec, progress=False), log=lambda *_: None)
    wall = time.perf_counter() - start
    cpu1 = os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system) + (cpu1.children_user - cpu0.children_user) + (
        cpu1.children_system - cpu0.children_system)
    episodes = [e for e in result.episodes if e.skipped_reason is None]
    seconds = sum(e.frames for e in episodes) / json.loads((out / "meta" / "info.json").read_text())["fps"]
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"frames": result.frames_added, "episodes": len(episodes), "episode_s": round(seconds, 3),
            "wall_s": round(wall, 3), "frames_per_s": round(result.frames_added / wall, 2),
            "x_real_time": round(seconds / wall, 3), "cpu_cores": round(cpu / wall, 2),
            "cpu_ms_per_frame": round(1e3 * cpu / max(result.frames_added, 1), 2),
            "dataset_mib": round(size / 2**20, 1),
            "stages_s": {**result.stage_seconds, "other": round(wall - sum(result.stage_seconds.values()), 4)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=2, help="synthetic episodes (K)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per synthetic episode")
    parser.add_argument("--bags", type=pathlib.Path, default=None, help="convert these recorded bags instead")
    parser.add_argument("--vcodec", default="libsvtav1", help="LeRobot's video codec: libsvtav1 (default), h264, hevc")
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench_convert_"))
    try:
        if args.bags:
            bags = [args.bags]
            source = str(args.bags)
        else:
            start = time.perf_counter()
            bags = [regular_episode(work / "bags" / f"ep_{k}", seconds=args.seconds, fps=30, height=480, width=640,
                                    custom=custom_data(fps=30), pixels_of=camera_like)
                    for k in range(args.episodes)]
            source = f"{args.episodes} synthetic episodes x {args.seconds:g} s, 640x480 rgb8 at 30 fps"
            print(f"wrote {source} in {time.perf_counter() - start:.1f} s")
        figures = {}
        for name, use_videos, streaming in (("video", True, True), ("batch", True, False),
                                            ("images", False, False)):
            figures[name] = r = run(bags, work / f"ds_{name}", use_videos, streaming, args.vcodec)
            stages = ", ".join(f"{k} {v:.2f} s" for k, v in r["stages_s"].items())
            print(f"{name:6s}: {r['frames']} frames ({r['episodes']} episodes, {r['episode_s']:.1f} s of data) in "
                  f"{r['wall_s']:.1f} s = {r['frames_per_s']:.1f} frames/s = {r['x_real_time']:.2f}x real time, "
                  f"{r['cpu_cores']:.2f} cores busy, {r['cpu_ms_per_frame']:.1f} CPU ms/frame, {r['dataset_mib']} MiB")
            print(f"        stages: {stages}")
        video, images = figures["video"], figures["images"]
        print(f"wall time over video's: batch {figures['batch']['wall_s'] / video['wall_s']:.2f}, images "
              f"{images['wall_s'] / video['wall_s']:.2f}; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; source: {source}; codec {args.vcodec}")
        print(json.dumps({"frames_per_s": video["frames_per_s"], "x_real_time": video["x_real_time"],
                          "cpu_ms_per_frame": video["cpu_ms_per_frame"], "loadavg_1min": round(os.getloadavg()[0], 2),
                          "episodes": video["episodes"], "wall_s": video["wall_s"],
                          "images_frames_per_s": images["frames_per_s"], "images_x_real_time": images["x_real_time"],
                          "batch_frames_per_s": figures["batch"]["frames_per_s"],
                          "batch_x_real_time": figures["batch"]["x_real_time"],
                          "stages_video_s": video["stages_s"], "stages_images_s": images["stages_s"]}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
