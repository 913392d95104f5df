#!/usr/bin/env python3
"""arm_driver benchmark against the firmware simulator (same process, real pty, real rclpy).

Figures:
- joint_states rate at the given baud, as a fraction of the line-rate limit ((baud / 10) / mean T:1051 line bytes,
  measured on the simulator's side), for the streaming mode and for the request (T:105 polling) mode;
- command-to-wire latency: from the driver's receipt of a joint_trajectory setpoint (subscription callback) to
  the serial write returning (median, p99), plus publish -> wire and publish -> firmware-read for context.

Usage: cd /work/main && source scripts/env.sh && ROS_DOMAIN_ID=11 python bench/driver_rate.py [--seconds 10]
Ends with one JSON line of the headline figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src" / "roarm_driver"))

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from roarm_description import joints  # noqa: E402
from roarm_driver.arm_driver_node import ArmDriverNode  # noqa: E402
from roarm_driver.firmware_sim import FirmwareSimulator  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def run(mode: str, seconds: float, baud: int, stream_commands: bool) -> dict:
    context = Context()
    rclpy.init(context=context)
    # A pose off home so the numbers in T:1051 have their full length (~190 bytes, as on the real arm).
    start_pose = joints.HOME_POSITIONS + np.array([0.2345, -0.1234, 0.3456, 0.2109, -0.3210, 0.4321])
    sim = FirmwareSimulator(baud=baud, initial_positions=start_pose, boot_text=False)
    sim.start()
    wire_reads: list[float] = []
    sim.add_command_listener(lambda t, m: wire_reads.append(t) if m.get("T") == 102 else None)
    driver = ArmDriverNode(context=context, parameter_overrides=[
        Parameter("port", value=sim.port), Parameter("baud", value=baud), Parameter("feedback_mode", value=mode),
        Parameter("watchdog_timeout", value=0.0)])
    probe = Node("bench_probe", context=context)
    received: list[float] = []
    probe.create_subscription(JointState, "joint_states", lambda m: received.append(time.monotonic()), 100)
    publisher = probe.create_publisher(JointTrajectory, "joint_trajectory", 10)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(driver)
    executor.add_node(probe)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    receipt_to_wire: list[float] = []
    publish_to_write: list[float] = []
    published: dict[int, float] = {}

    def hook(msg, receipt, written):
        receipt_to_wire.append(written - receipt)
        key = msg.header.stamp.nanosec
        if key in published:
            publish_to_write.append(written - published[key])

    driver.command_written_hook = hook
    driver.trigger_configure()
    driver.trigger_activate()
    deadline = time.monotonic() + 5.0
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)
    received.clear()
    bytes0, lines0 = sim.stats["bytes_out"], sim.stats["feedback_lines"]
    publish_times: list[float] = []
    t0 = time.monotonic()
    k = 0
    while time.monotonic() - t0 < seconds:
        if stream_commands:
            q = start_pose + 0.2 * math.sin(2 * math.pi * 0.2 * (time.monotonic() - t0)) * np.array([1, 0, 0, 0, 0, 0])
            msg = JointTrajectory()
            msg.joint_names = list(joints.JOINT_NAMES)
            msg.header.stamp.nanosec = k  # a key, not a time: matches the hook's record to this publish
            msg.points = [JointTrajectoryPoint(positions=q.tolist())]
            published[k] = time.monotonic()
            publish_times.append(published[k])
            publisher.publish(msg)
            k += 1
        time.sleep(0.02)
    elapsed = time.monotonic() - t0
    sent_lines = sim.stats["feedback_lines"] - lines0
    mean_line = (sim.stats["bytes_out"] - bytes0) / max(1, sent_lines)
    states = [t for t in received if t0 <= t <= t0 + elapsed]
    rate = len(states) / elapsed
    limit = baud / 10.0 / mean_line
    publish_to_read = [r - p for p, r in zip(publish_times, wire_reads)] if len(wire_reads) == len(publish_times) else []
    snap = driver.snapshot()
    driver.trigger_shutdown()
    executor.shutdown(timeout_sec=2.0)
    probe.destroy_node()
    driver.destroy_node()
    rclpy.shutdown(context=context)
    spin.join(timeout=2.0)
    sim.stop()
    return {
        "mode": mode, "seconds": round(elapsed, 2), "joint_states_hz": rate, "line_rate_limit_hz": limit,
        "fraction_of_limit": rate / limit, "mean_line_bytes": mean_line,
        "lines_skipped": snap.get("lines_non_json", 0) + snap.get("lines_partial", 0),
        "commands_published": len(publish_times), "commands_written": len(receipt_to_wire),
        "receipt_to_wire_ms_median": 1000 * percentile(receipt_to_wire, 50),
        "receipt_to_wire_ms_p99": 1000 * percentile(receipt_to_wire, 99),
        "publish_to_write_ms_median": 1000 * percentile(publish_to_write, 50),
        "publish_to_write_ms_p99": 1000 * percentile(publish_to_write, 99),
        "publish_to_firmware_read_ms_median": 1000 * percentile(publish_to_read, 50),
        "publish_to_firmware_read_ms_p99": 1000 * percentile(publish_to_read, 99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per mode")
    parser.add_argument("--baud", type=int, default=115200)
    args = parser.parse_args()
    stream = run("stream", args.seconds, args.baud, stream_commands=True)
    request = run("request", min(args.seconds, 5.0), args.baud, stream_commands=False)
    for r in (stream, request):
        print(f"[{r['mode']:7s}] joint_states {r['joint_states_hz']:.1f} Hz = {r['fraction_of_limit']:.3f} of the "
              f"line-rate limit {r['line_rate_limit_hz']:.1f} Hz ({r['mean_line_bytes']:.0f}-byte lines at "
              f"{args.baud} baud)")
    print(f"[stream ] command receipt -> serial write: median {stream['receipt_to_wire_ms_median']:.2f} ms, "
          f"p99 {stream['receipt_to_wire_ms_p99']:.2f} ms ({stream['commands_written']}/"
          f"{stream['commands_published']} setpoints)")
    print(f"[stream ] publish -> serial write: median {stream['publish_to_write_ms_median']:.2f} ms, "
          f"p99 {stream['publish_to_write_ms_p99']:.2f} ms; publish -> firmware read: median "
          f"{stream['publish_to_firmware_read_ms_median']:.2f} ms, p99 {stream['publish_to_firmware_read_ms_p99']:.2f} ms")
    headline = {
        "baud": args.baud,
        "stream_joint_states_hz": round(stream["joint_states_hz"], 2),
        "line_rate_limit_hz": round(stream["line_rate_limit_hz"], 2),
        "stream_fraction_of_limit": round(stream["fraction_of_limit"], 4),
        "request_joint_states_hz": round(request["joint_states_hz"], 2),
        "request_fraction_of_limit": round(request["fraction_of_limit"], 4),
        "command_to_wire_ms_median": round(stream["receipt_to_wire_ms_median"], 3),
        "command_to_wire_ms_p99": round(stream["receipt_to_wire_ms_p99"], 3),
        "publish_to_wire_ms_median": round(stream["publish_to_write_ms_median"], 3),
        "publish_to_wire_ms_p99": round(stream["publish_to_write_ms_p99"], 3),
    }
    print(json.dumps(headline))


if __name__ == "__main__":
    main()
