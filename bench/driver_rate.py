#!/usr/bin/env python3
"""arm_driver benchmark, deployed shape: the firmware simulator, the driver and the probe each in their own process.

The simulator (roarm_driver.sim_process, a pty like the real arm's USB-UART) logs the time at which it reads each
T:102 (--command-log); arm_driver runs as its console script does; this process only holds a probe node.

Figures:
- joint_states rate at the probe, as a fraction of the line-rate limit ((baud / 10) / mean T:1051 line bytes,
  measured on the simulator's side), streaming mode (`--runs` times) and request (T:105 polling) mode;
- command latency from the probe's publish to the simulator reading the T:102 (median, p99), same steady clock;
- optionally (`--policy-load`) the same while a full-size SmolVLA runs inference in another process on the same
  cores (bench/policy_latency.py in a loop).

Usage: cd /work/main && source scripts/env.sh && ROS_DOMAIN_ID=11 python bench/driver_rate.py [--seconds 10]
       [--runs 5] [--policy-load]
Ends with one JSON line of the headline figures (stream_fraction_of_limit = the lowest of the stream runs).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from roarm_description import joints
from roarm_driver.firmware_sim import read_command_log
from roarm_driver.sim_process import SimulatorProcess
from roarm_vla_bringup.runner import child_environment  # the runner's: same DDS profile as deployed

ROOT = Path(__file__).resolve().parents[1]


def percentile(values, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def start_driver(port: str, baud: int, mode: str, log: Path) -> subprocess.Popen:
    argv = [sys.executable, "-c", "import sys; from roarm_driver.arm_driver_node import main; sys.exit(main())",
            "--ros-args", "-r", "__node:=arm_driver", "-p", f"port:={port}", "-p", f"baud:={baud}",
            "-p", f"feedback_mode:={mode}", "-p", "watchdog_timeout:=0.0", "-p", "autostart:=true",
            "-p", "diagnostics_period:=0.5"]
    return subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=child_environment())


class Probe(Node):
    def __init__(self, context: Context):
        super().__init__("bench_probe", context=context)
        self.received: list[float] = []
        self.diagnostics: dict[str, str] = {}
        self.create_subscription(JointState, "joint_states", lambda m: self.received.append(time.monotonic()), 100)
        self.create_subscription(DiagnosticArray, "diagnostics", self._on_diagnostics, 10)
        self.publisher = self.create_publisher(JointTrajectory, "joint_trajectory", 10)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("arm_driver"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}


def run(mode: str, seconds: float, baud: int, stream_commands: bool, workdir: Path) -> dict:
    # A pose off home so the numbers in T:1051 have their full length (~190 bytes, as on the real arm).
    start_pose = joints.HOME_POSITIONS + np.array([0.2345, -0.1234, 0.3456, 0.2109, -0.3210, 0.4321])
    command_log = workdir / f"commands_{mode}.log"
    sim = SimulatorProcess(baud=baud, initial_positions=start_pose, boot_text=False, command_log=str(command_log))
    sim.start()
    driver = start_driver(sim.port, baud, mode, workdir / f"driver_{mode}.log")
    context = Context()
    rclpy.init(context=context)
    probe = Probe(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        deadline = time.monotonic() + 60.0
        while len(probe.received) < 10:
            if driver.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no joint_states from arm_driver: {(workdir / f'driver_{mode}.log').read_text()}")
            time.sleep(0.05)
        time.sleep(0.5)
        stats0 = sim.stats
        published: list[tuple[float, float]] = []  # (publish time, base joint value)
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            if stream_commands:
                base = start_pose[0] + 0.2 * math.sin(2 * math.pi * 0.2 * (time.monotonic() - t0))
                q = start_pose.copy()
                q[0] = round(base, 4)  # T:102 carries 4 decimals  # each setpoint identifiable in the simulator's log by its base value
                msg = JointTrajectory()
                msg.joint_names = list(joints.JOINT_NAMES)
                msg.points = [JointTrajectoryPoint(positions=q.tolist())]
                published.append((time.monotonic(), q[0]))
                probe.publisher.publish(msg)
            time.sleep(0.02)
        elapsed = time.monotonic() - t0
        stats1 = sim.stats
        states = [t for t in list(probe.received) if t0 <= t <= t0 + elapsed]
        time.sleep(0.6)  # one more diagnostics message
        snap = dict(probe.diagnostics)
    finally:
        driver.send_signal(2)
        try:
            code = driver.wait(15.0)
        except subprocess.TimeoutExpired:
            driver.kill()
            code = driver.wait()
        executor.shutdown(timeout_sec=2.0)
        probe.destroy_node()
        rclpy.shutdown(context=context)
        spin.join(timeout=2.0)
        sim.stop()
    lines = stats1["feedback_lines"] - stats0["feedback_lines"]
    mean_line = (stats1["bytes_out"] - stats0["bytes_out"]) / max(1, lines)
    rate = len(states) / elapsed
    limit = baud / 10.0 / mean_line
    latencies = publish_to_read(published, command_log)
    return {
        "mode": mode, "seconds": round(elapsed, 2), "joint_states_hz": rate, "line_rate_limit_hz": limit,
        "fraction_of_limit": rate / limit, "mean_line_bytes": mean_line,
        "lines_skipped": int(snap.get("lines_non_json", 0)) + int(snap.get("lines_partial", 0)),
        "commands_published": len(published), "commands_read": len(latencies),
        "publish_to_read_ms_median": 1000 * percentile(latencies, 50),
        "publish_to_read_ms_p99": 1000 * percentile(latencies, 99),
        "driver_exit_code": code,
    }


def publish_to_read(published: list[tuple[float, float]], command_log: Path) -> list[float]:
    """Seconds from each publish to the simulator reading a T:102 with that base value (first match after it)."""
    if not published or not command_log.exists():
        return []
    read_times, _, positions = read_command_log(str(command_log))
    out = []
    for t_pub, base in published:
        first = int(np.searchsorted(read_times, t_pub))
        window = slice(first, int(np.searchsorted(read_times, t_pub + 0.5)))
        hits = np.nonzero(np.abs(positions[window, 0] - base) <= 6e-5)[0]
        if len(hits):  # a setpoint overtaken by the next before a write never reaches the line as such
            out.append(read_times[first + hits[0]] - t_pub)
    return out


def start_policy_load(workdir: Path, warmup_s: float) -> subprocess.Popen:
    """Full-size SmolVLA inference in a loop in another process (bench/policy_latency.py, bf16, 512 px)."""
    log = open(workdir / "policy_load.log", "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "policy_latency.py"), "--modes", "bf16",
                             "--device", "cpu", "--repeats", "100000", "--warmup", "0", "--no-load-stats"],
                            stdout=log, stderr=subprocess.STDOUT, env=child_environment())
    print(f"policy load started (pid {proc.pid}); waiting {warmup_s:.0f} s for the model to be built and running",
          flush=True)
    time.sleep(warmup_s)
    if proc.poll() is not None:
        raise RuntimeError(f"the policy load process exited: {(workdir / 'policy_load.log').read_text()[-2000:]}")
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per run")
    parser.add_argument("--runs", type=int, default=5, help="stream-mode runs (the headline is the lowest)")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--policy-load", action="store_true",
                        help="run full-size SmolVLA inference (bf16, 512 px) in another process meanwhile")
    parser.add_argument("--load-warmup", type=float, default=120.0, help="s to let the policy load start")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="roarm_driver_rate_"))
    load = start_policy_load(workdir, args.load_warmup) if args.policy_load else None
    try:
        streams = []
        for i in range(args.runs):
            r = run("stream", args.seconds, args.baud, stream_commands=True, workdir=workdir)
            streams.append(r)
            print(f"[stream {i + 1}/{args.runs}] joint_states {r['joint_states_hz']:.1f} Hz = "
                  f"{r['fraction_of_limit']:.3f} of the line-rate limit {r['line_rate_limit_hz']:.1f} Hz "
                  f"({r['mean_line_bytes']:.0f}-byte lines at {args.baud} baud); publish -> firmware read median "
                  f"{r['publish_to_read_ms_median']:.2f} ms, p99 {r['publish_to_read_ms_p99']:.2f} ms "
                  f"({r['commands_read']}/{r['commands_published']}); driver exit {r['driver_exit_code']}",
                  flush=True)
        request = run("request", min(args.seconds, 5.0), args.baud, stream_commands=False, workdir=workdir)
        print(f"[request] joint_states {request['joint_states_hz']:.1f} Hz = {request['fraction_of_limit']:.3f} of "
              f"the line-rate limit", flush=True)
    finally:
        if load is not None:
            load.terminate()
            load.wait(30)
    fractions = [r["fraction_of_limit"] for r in streams]
    latencies_median = [r["publish_to_read_ms_median"] for r in streams]
    headline = {
        "baud": args.baud,
        "policy_load": bool(args.policy_load),
        "stream_fraction_of_limit": round(min(fractions), 4),
        "stream_fraction_runs": [round(f, 4) for f in fractions],
        "line_rate_limit_hz": round(streams[-1]["line_rate_limit_hz"], 2),
        "request_fraction_of_limit": round(request["fraction_of_limit"], 4),
        "publish_to_firmware_read_ms_median": round(float(np.median(latencies_median)), 3),
        "publish_to_firmware_read_ms_p99": round(max(r["publish_to_read_ms_p99"] for r in streams), 3),
    }
    print(json.dumps(headline))


if __name__ == "__main__":
    main()
