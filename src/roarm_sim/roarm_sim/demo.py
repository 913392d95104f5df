"""`make demo`: the simulated pick graph end to end, N episodes, success rate with a 95 % Wilson interval.

    python -m roarm_sim.demo --episodes 5 --seed 0 --out outputs/demo            # scripted expert drives
    python -m roarm_sim.demo --episodes 3 --policy tiny --time-limit 10        # a tiny random SmolVLA drives

One process: the firmware simulator (pty), arm_driver (serial, lifecycle), sim_world (rendered camera, box,
outcome) and the controller (scripted_expert, or vla_policy with an offline tiny SmolVLA checkpoint built on the
spot: random weights, so expect ~0 % success; it shows the plumbing, not skill). Every node reads its YAML in
src/roarm_vla_bringup/config/. Prints per-topic rates and the driver's feedback rate, writes a contact sheet PNG
and an mp4 of the first episode's camera frames, and ends with one JSON line of the headline figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from roarm_interfaces.msg import EpisodeOutcome

from .outcome import STATUS_NAMES


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


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m roarm_sim.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=5, help="number of episodes (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode; episode i uses seed + i")
    parser.add_argument("--policy", choices=("none", "tiny"), default="none",
                        help="none: the scripted expert drives; tiny: vla_policy with an offline tiny SmolVLA")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder (contact sheet, mp4)")
    parser.add_argument("--time-limit", type=float, default=None, help="episode time limit, s (default: YAML)")
    parser.add_argument("--camera-rate", type=float, default=None, help="camera rate, Hz (default: YAML)")
    parser.add_argument("--record-fps", type=float, default=5.0, help="frames per second kept for the sheet/video")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from .sim_session import SimSession  # rclpy imports after argument parsing: --help stays fast

    args.out.mkdir(parents=True, exist_ok=True)
    world_params: dict = {}
    if args.time_limit is not None:
        world_params["time_limit"] = float(args.time_limit)
    if args.camera_rate is not None:
        world_params["camera_rate"] = float(args.camera_rate)
    camera_rate = args.camera_rate or 30.0
    recorder = FrameRecorder(every=int(round(camera_rate / max(args.record_fps, 0.1))))
    policy_params = {}
    if args.policy == "tiny":
        from vla_policy_node.tiny_smolvla import build_tiny_checkpoint

        checkpoint = args.out / "tiny_smolvla"
        if not (checkpoint / "config.json").exists():
            print(f"building an offline tiny SmolVLA checkpoint (random weights) in {checkpoint} ...")
            build_tiny_checkpoint(checkpoint)
        policy_params = {"checkpoint": str(checkpoint.resolve())}
    controller = "policy" if args.policy == "tiny" else "expert"

    results: list[EpisodeOutcome] = []
    started = time.monotonic()
    with SimSession(controller=controller, world_params=world_params, policy_params=policy_params,
                    frame_callback=recorder) as session:
        enable = None
        if controller == "policy":
            from std_srvs.srv import SetBool

            enable = session.nodes["sim_session_monitor"].create_client(SetBool, "vla/enable")
        time_limit = float(session.nodes["sim_world"].params["time_limit"])
        session.restart_counts()
        driver_rates = []
        for i in range(args.episodes):
            seed = args.seed + i
            if enable is not None:
                _set_enabled(enable, False)  # the policy must not fight the reset move
            if i == 0:
                recorder.start()
            reply = session.reset(seed)
            if enable is not None:
                _set_enabled(enable, True)
            outcome = session.wait_for_outcome(reply.episode_index, timeout=time_limit + 30.0)
            if i == 0:
                time.sleep(0.5)  # a few frames of the held box
                recorder.stop()
            driver_rates.append(session.nodes["arm_driver"].feedback_rate(window=1.0))
            results.append(outcome)
            print(f"episode {reply.episode_index} seed {seed}: {STATUS_NAMES[outcome.status]} after "
                  f"{outcome.elapsed:.1f} s ({outcome.detail})", flush=True)
        rates = session.topic_rates()
        snapshot = session.nodes["arm_driver"].snapshot()
    wall = time.monotonic() - started

    successes = sum(o.status == EpisodeOutcome.SUCCESS for o in results)
    low, high = wilson_interval(successes, len(results))
    sheet_path, video_path = args.out / "contact_sheet.png", args.out / "episode_0.mp4"
    cv2.imwrite(str(sheet_path), cv2.cvtColor(contact_sheet(recorder.frames), cv2.COLOR_RGB2BGR))
    video_ok = write_video(recorder.frames, video_path, args.record_fps)

    print()
    print(f"controller: {'scripted_expert' if controller == 'expert' else 'vla_policy (tiny offline SmolVLA)'}")
    print(f"success rate: {successes}/{len(results)} = {successes / len(results):.0%} "
          f"(95% Wilson CI {low:.0%} .. {high:.0%})")
    durations = [o.elapsed for o in results if o.status == EpisodeOutcome.SUCCESS]
    if durations:
        print(f"time to success: mean {np.mean(durations):.1f} s, max {np.max(durations):.1f} s")
    print("topic rates (Hz, over the episodes):")
    for topic, rate in rates.items():
        print(f"  {topic:22s} {rate:6.1f}")
    print(f"arm_driver feedback rate: {np.mean(driver_rates):.1f} Hz (T:1051 lines; line-rate limit "
          f"{snapshot['line_rate_limit_hz']:.1f} Hz at 115200 baud), command latency median "
          f"{snapshot['command_latency_median_ms']:.2f} ms, rejected commands "
          f"{sum(v for k, v in snapshot.items() if k.startswith('rejected_'))}")
    print(f"contact sheet: {sheet_path}" + (f"; video: {video_path}" if video_ok else " (mp4 writer unavailable)"))
    print(f"wall time: {wall:.1f} s")
    summary = {"episodes": len(results), "successes": successes, "success_rate": successes / len(results),
               "ci95": [round(low, 4), round(high, 4)], "controller": controller,
               "feedback_rate_hz": round(float(np.mean(driver_rates)), 1),
               "topic_rates_hz": {k: round(v, 1) for k, v in rates.items()}, "wall_s": round(wall, 1)}
    print(json.dumps(summary))
    return 0


def _set_enabled(client, value: bool, timeout: float = 5.0) -> None:
    from std_srvs.srv import SetBool

    if not client.wait_for_service(timeout_sec=timeout):
        raise RuntimeError("vla/enable not available")
    future = client.call_async(SetBool.Request(data=value))
    end = time.monotonic() + timeout
    while not future.done() and time.monotonic() < end:
        time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main())
