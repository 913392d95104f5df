#!/usr/bin/env python3
"""vla_policy command-stream figures with a real SmolVLA running: period jitter and empty-queue ticks.

The real VlaPolicyNode (lifecycle: configure loads the model, activate starts commanding) runs in this process
with a rig node that plays camera (640x480 rgb8 at 30 Hz, sensor-data QoS) and arm driver (joint_states at 50 Hz),
and records every joint_trajectory command the node streams. Default model: the full-size SmolVLA (random
weights, built offline and cached by bench/policy_latency.py) in the given CPU precision mode.

Figures over the measuring window (>= 60 s by default): command period p50/p99 and jitter p99 (|period - 1/rate|)
as seen by the subscriber, longest gap, commands sent vs expected, empty-queue ticks (the control loop had nothing
to send because inference was slower than the chunk), inference latency median, stale actions dropped.

Usage: cd /work/main && source scripts/env.sh && ROS_DOMAIN_ID=12 python bench/control_loop.py
       [--precision bf16] [--seconds 60] [--tiny]   (--tiny: the tiny test policy, a quick smoke run)
Ends with ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
for package in ("src/vla_policy_node", "src/roarm_driver"):
    sys.path.insert(0, str(ROOT / package))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from roarm_description.joints import HOME_POSITIONS, JOINT_NAMES  # noqa: E402
from roarm_training.small_smolvla import build_full_size_checkpoint, build_tiny_checkpoint  # noqa: E402
from vla_policy_node.vla_policy_node import VlaPolicyNode  # noqa: E402


class Rig(Node):
    """Camera + driver stand-in: publishes images and joint states, records the command stream."""

    def __init__(self, context, width=640, height=480):
        super().__init__("control_loop_bench_rig", context=context)
        self.image_pub = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self.state_pub = self.create_publisher(JointState, "joint_states", 10)
        self.command_times: list[float] = []
        self.create_subscription(JointTrajectory, "joint_trajectory",
                                 lambda _m: self.command_times.append(time.monotonic()), 10)
        rng = np.random.default_rng(0)
        self._frames = [rng.integers(0, 256, height * width * 3, dtype=np.uint8).tobytes() for _ in range(4)]
        self._size = (height, width)
        self._count = 0
        self.create_timer(1.0 / 30.0, self._camera)
        self.create_timer(1.0 / 50.0, self._state)

    def _camera(self):
        msg = Image()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.height, msg.width = self._size
        msg.encoding, msg.step = "rgb8", self._size[1] * 3
        msg.data = self._frames[self._count % len(self._frames)]
        self._count += 1
        self.image_pub.publish(msg)

    def _state(self):
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.name = list(JOINT_NAMES)
        msg.position = [float(x) for x in HOME_POSITIONS]
        self.state_pub.publish(msg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="bf16", help="the best CPU mode from bench/policy_latency.py")
    parser.add_argument("--seconds", type=float, default=60.0, help="measuring window (after the first command)")
    parser.add_argument("--control-rate", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--checkpoint", default="", help="default: the cached full-size checkpoint")
    parser.add_argument("--workdir", default="/tmp/roarm_vla_bench")
    parser.add_argument("--tiny", action="store_true", help="tiny test policy instead of the full-size one")
    args = parser.parse_args()
    workdir = pathlib.Path(args.workdir)
    if args.checkpoint:
        checkpoint = pathlib.Path(args.checkpoint)
    elif args.tiny:
        checkpoint = build_tiny_checkpoint(pathlib.Path(tempfile.mkdtemp()) / "tiny")
    else:
        checkpoint = workdir / "smolvla_full_512px_chunk50"
        if not (checkpoint / "model.safetensors").is_file():
            build_full_size_checkpoint(checkpoint, vlm_folder=workdir / "vlm_full")

    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    node = VlaPolicyNode(context=context, parameter_overrides=[
        Parameter("checkpoint", value=str(checkpoint)), Parameter("precision", value=args.precision),
        Parameter("control_rate", value=args.control_rate), Parameter("num_threads", value=args.threads),
    ])
    rig = Rig(context)
    executor.add_node(node)
    executor.add_node(rig)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        start = time.perf_counter()
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise SystemExit(f"configure failed: {node.diagnostics_values().get('config_error')}")
        load_s = time.perf_counter() - start
        print(f"configured in {load_s:.1f} s ({args.precision}); activating", flush=True)
        activated = time.monotonic()
        node.trigger_activate()
        while not rig.command_times and time.monotonic() - activated < 120:
            time.sleep(0.05)
        if not rig.command_times:
            raise SystemExit(f"no command within 120 s: {node.diagnostics_values()}")
        first_command_s = rig.command_times[0] - activated
        before = node.diagnostics_values()
        window_start, first_index = time.monotonic(), len(rig.command_times)
        while time.monotonic() - window_start < args.seconds:
            time.sleep(1.0)
            print(f"  {time.monotonic() - window_start:5.0f} s  commands {len(rig.command_times) - first_index}"
                  f"  queue {node.diagnostics_values().get('queue_depth')}", end="\r", flush=True)
        window = time.monotonic() - window_start
        after = node.diagnostics_values()
        times = np.array(rig.command_times[first_index:])
    finally:
        executor.shutdown(timeout_sec=5.0)
        spin.join(10.0)
        node.destroy_node()
        rig.destroy_node()
        rclpy.shutdown(context=context)
    print()
    periods = np.diff(times)
    nominal = 1.0 / args.control_rate

    def delta(key):
        return int(after[key]) - int(before[key])

    summary = {
        "bench": "control_loop", "model": "tiny" if args.tiny else "full-size SmolVLA (random weights)",
        "precision": args.precision, "control_rate_hz": args.control_rate, "window_s": round(window, 1),
        "load_s": round(load_s, 1), "first_command_after_activate_s": round(first_command_s, 2),
        "commands": int(times.size), "commands_expected": int(round(window * args.control_rate)),
        "period_p50_ms": round(float(np.percentile(periods, 50)) * 1e3, 2),
        "period_p99_ms": round(float(np.percentile(periods, 99)) * 1e3, 2),
        "jitter_p99_ms": round(float(np.percentile(np.abs(periods - nominal), 99)) * 1e3, 2),
        "longest_gap_ms": round(float(periods.max()) * 1e3, 1),
        "node_tick_period_p99_ms": float(after.get("control_period_p99_ms", "nan")),
        "empty_queue_ticks": delta("empty_queue_ticks"), "hold_ticks": delta("hold_ticks"),
        "inferences": delta("inferences"), "inference_latency_median_s": float(after["inference_latency_median_s"]),
        "dropped_stale_actions": delta("dropped_stale_actions"),
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }
    for key, value in summary.items():
        print(f"{key:32} {value}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
