#!/usr/bin/env python3
"""The command path measured at the serial line, with a full-size SmolVLA planning in its own process.

Processes, as launch runs them (one per node, each from its console-script module and its bringup YAML):
  firmware simulator (pty, ``--command-log``: receipt time of every T:102) -> arm_driver (executes the policy's
  plans at its ``command_rate``) ; sim_world (rendered 640x480 camera at 30 Hz; no episode is started) ;
  vla_policy (full-size SmolVLA, random weights, built offline and cached in --workdir) ; and this probe, which
  reads /diagnostics (the driver's ``plan_exhausted_ticks``, the policy's inference latency) and counts plans.

Figures over the window (from the first plan on, --seconds long):
- serial_jitter_p99_ms: p99 of |period - 1/command_rate| between consecutive T:102 receipts at the simulator
  while a plan executes (the driver writes nothing while it holds the end of a plan: gaps over HOLD_GAP_S are
  those holds, counted in serial_hold_gaps and, tick by tick, in starved_ticks);
- starved_ticks: driver command ticks spent holding the end of the policy's plan (the plan ran out while the
  policy was enabled): the increase of the driver's ``plan_exhausted_ticks`` over the window;
- fraction_moving: fraction of the window's T:102 intervals in which some joint's command changed by more than
  1 mrad (the arm being driven along a plan rather than held);
- inference_latency_median_s (the policy's own measure), plans published, T:102 written vs expected.

Usage: cd /work/main && source scripts/env.sh && ROS_DOMAIN_ID=41 python bench/control_loop.py
       [--image-size 256|512] [--precision bf16] [--seconds 60] [--threads 0] [--camera 640x480]
Ends with ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "src" / "roarm_vla_bringup" / "config"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from roarm_driver.firmware_sim import read_command_log  # noqa: E402

MOVING_RAD = 1e-3  # a T:102 interval counts as moving when some joint's command changed by more than this
HOLD_GAP_S = 0.25  # the driver writes nothing while it holds the end of a plan: a longer gap is a hold, not jitter


class Probe(Node):
    """Reads diagnostics of the driver and the policy; counts plans on joint_trajectory."""

    def __init__(self, context):
        super().__init__("control_loop_probe", context=context)
        self.lock = threading.Lock()
        self.values: dict[str, dict[str, str]] = {}
        self.plans = 0
        self.holds = 0
        self.create_subscription(DiagnosticArray, "diagnostics", self._on_diag, 50)
        self.create_subscription(JointTrajectory, "joint_trajectory", self._on_command, 10)

    def _on_diag(self, msg):
        with self.lock:
            for status in msg.status:
                entry = self.values.setdefault(status.name.split(":")[0], {})
                entry.update({kv.key: kv.value for kv in status.values})

    def _on_command(self, msg):
        with self.lock:
            if len(msg.points) >= 2:
                self.plans += 1
            else:
                self.holds += 1

    def value(self, key: str, default=None):
        """The latest value of a diagnostics key, whichever node published it."""
        with self.lock:
            for entry in self.values.values():
                if key in entry:
                    return entry[key]
        return default


def start(name: str, argv: list[str], logs: pathlib.Path) -> subprocess.Popen:
    out = open(logs / f"{name}.log", "w")
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ),
                            start_new_session=True)


def stop(procs: list[tuple[str, subprocess.Popen]]) -> None:
    """Policy first, the simulator last (as the runner stops a graph): SIGINT, then SIGTERM, then SIGKILL."""
    for _name, proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_until(predicate, timeout: float, procs) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        dead = [(n, p.returncode) for n, p in procs if p.poll() is not None]
        if dead:
            raise SystemExit(f"process(es) exited early: {dead} (logs in the workdir)")
        time.sleep(0.2)
    return predicate()


def checkpoint_for(workdir: pathlib.Path, image_size: int) -> pathlib.Path:
    checkpoint = workdir / f"smolvla_full_{image_size}px_chunk50"
    if not (checkpoint / "model.safetensors").is_file():
        from roarm_training.small_smolvla import build_full_size_checkpoint

        print(f"building the full-size checkpoint ({image_size} px) in {checkpoint} ...", flush=True)
        build_full_size_checkpoint(checkpoint, vlm_folder=workdir / "vlm_full", image_size=image_size)
    return checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="bf16", help="policy precision mode (bench/policy_latency.py)")
    parser.add_argument("--image-size", type=int, default=256, choices=(256, 512),
                        help="the policy's internal image size (resize_imgs_with_padding)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measuring window, from the first plan on")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of the policy (0 = torch default)")
    parser.add_argument("--camera", default="640x480",
                        help="sim_world's rendered image WxH (rendering costs CPU the policy shares on 2 cores)")
    parser.add_argument("--checkpoint", default="", help="default: the cached full-size checkpoint")
    parser.add_argument("--workdir", default="/tmp/roarm_vla_bench")
    parser.add_argument("--flow-steps", type=int, default=0,
                        help="the policy's flow-matching steps per chunk (0 = the checkpoint's, 10)")
    parser.add_argument("--policy-nice", type=int, default=0,
                        help="start vla_policy under `nice -n N` (0 = as launched): the driver then wins the cores")
    args = parser.parse_args()
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.camera.lower().split("x"))
    checkpoint = pathlib.Path(args.checkpoint) if args.checkpoint else checkpoint_for(workdir, args.image_size)
    config = json.loads((checkpoint / "config.json").read_text())
    image_px = int((config.get("resize_imgs_with_padding") or [args.image_size])[0])  # what the policy sees
    logs = pathlib.Path(tempfile.mkdtemp(prefix="control_loop_", dir=workdir))
    command_log, port_file = logs / "t102.log", logs / "port"
    driver_yaml = CONFIG / "arm_driver.yaml"
    import yaml

    command_rate = float(yaml.safe_load(driver_yaml.read_text())["arm_driver"]["ros__parameters"]["command_rate"])
    py = sys.executable
    procs: list[tuple[str, subprocess.Popen]] = []
    context = rclpy.Context()
    rclpy.init(context=context)
    probe = Probe(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        sim = start("firmware_sim", [py, "-m", "roarm_driver.firmware_sim", "--port-file", str(port_file),
                                     "--command-log", str(command_log)], logs)
        procs.insert(0, ("firmware_sim", sim))
        wait_until(port_file.exists, 30, procs)
        port = port_file.read_text().strip()
        procs.insert(0, ("arm_driver", start("arm_driver", [
            py, "-m", "roarm_driver.arm_driver_node", "--ros-args", "--params-file", str(driver_yaml),
            "-p", f"port:={port}"], logs)))
        procs.insert(0, ("sim_world", start("sim_world", [
            py, "-m", "roarm_sim.sim_world_node", "--ros-args", "--params-file", str(CONFIG / "sim_world.yaml"),
            "-p", "auto_start:=false", "-p", f"image_width:={width}", "-p", f"image_height:={height}"], logs)))
        load_start = time.monotonic()
        nice = ["nice", "-n", str(args.policy_nice)] if args.policy_nice else []
        procs.insert(0, ("vla_policy", start("vla_policy", nice + [
            py, "-m", "vla_policy_node.vla_policy_node", "--ros-args", "--params-file",
            str(CONFIG / "vla_policy.yaml"), "-p", f"checkpoint:={checkpoint}", "-p", f"precision:={args.precision}",
            "-p", f"num_threads:={args.threads}", "-p", f"flow_steps:={args.flow_steps}"], logs)))
        print(f"processes started (logs in {logs}); waiting for the policy's first plan ...", flush=True)
        if not wait_until(lambda: probe.plans > 0, 600, procs):
            raise SystemExit(f"no plan within 600 s; policy log: {logs / 'vla_policy.log'}")
        first_plan_s = time.monotonic() - load_start
        wait_until(lambda: probe.value("plan_exhausted_ticks") is not None, 10, procs)
        exhausted_before = int(probe.value("plan_exhausted_ticks", 0))
        window_start = time.monotonic()
        plans_before = probe.plans
        while time.monotonic() - window_start < args.seconds:
            time.sleep(1.0)
            wait_until(lambda: True, 0, procs)  # fail fast when a process died
            print(f"  {time.monotonic() - window_start:5.0f} s  plans {probe.plans - plans_before}"
                  f"  starved ticks {int(probe.value('plan_exhausted_ticks', 0)) - exhausted_before}"
                  f"  inference {probe.value('inference_latency_median_s')} s", end="\r", flush=True)
        window_end = time.monotonic()
        time.sleep(1.5)  # the next diagnostics message covers the window's end
        starved = int(probe.value("plan_exhausted_ticks", 0)) - exhausted_before
        plans = probe.plans - plans_before
        inference_median = float(probe.value("inference_latency_median_s", "nan"))
        gate_mode = probe.value("gate_mode", "?")
        line_clamps = probe.value("line_clamps", probe.value("clamped_writes", "n/a"))
    finally:
        stop(procs)
        executor.shutdown(timeout_sec=5.0)
        spin.join(10.0)
        probe.destroy_node()
        rclpy.shutdown(context=context)
    print()
    receipt, _wall, positions = read_command_log(str(command_log))
    inside = (receipt >= window_start) & (receipt <= window_end)
    times, q = receipt[inside], positions[inside]
    if times.size < 3:
        raise SystemExit(f"only {times.size} T:102 in the window: see {logs}")
    periods = np.diff(times)
    nominal = 1.0 / command_rate
    executing = periods < HOLD_GAP_S
    moved = np.abs(np.diff(q, axis=0)).max(axis=1) > MOVING_RAD
    window = window_end - window_start
    summary = {
        "bench": "control_loop", "model": str(checkpoint.name), "precision": args.precision,
        "image_px": image_px, "camera": args.camera, "torch_threads": args.threads,
        "flow_steps": args.flow_steps, "policy_nice": args.policy_nice,
        "command_rate_hz": command_rate, "window_s": round(window, 1),
        "first_plan_after_start_s": round(first_plan_s, 1),
        "t102_written": int(times.size), "t102_expected": int(round(window * command_rate)),
        "serial_period_p50_ms": round(float(np.percentile(periods[executing], 50)) * 1e3, 2),
        "serial_period_p99_ms": round(float(np.percentile(periods[executing], 99)) * 1e3, 2),
        "serial_jitter_p99_ms": round(float(np.percentile(np.abs(periods[executing] - nominal), 99)) * 1e3, 2),
        "serial_longest_period_in_plan_ms": round(float(periods[executing].max()) * 1e3, 1),
        "serial_hold_gaps": int(np.sum(~executing)), "serial_longest_gap_ms": round(float(periods.max()) * 1e3, 1),
        "starved_ticks": starved, "fraction_moving": round(float(np.sum(periods[moved & executing]) / window), 3),
        "plans": plans, "policy_mode": gate_mode, "inference_latency_median_s": inference_median,
        "driver_line_clamps": line_clamps, "loadavg_1min": round(os.getloadavg()[0], 2), "logs": str(logs),
    }
    for key, value in summary.items():
        print(f"{key:28} {value}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
