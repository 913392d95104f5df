#!/usr/bin/env python3
"""Topic rates across processes with the whole simulated pick graph running (one process per node).

The graph is `roarm-vla run pick --sim --controller expert` (GraphRunner: firmware simulator, arm_driver,
sim_world, scripted_expert, each its own process); the runner's process is "another process": it subscribes to
camera/image_raw with sensor-data QoS and deserializes every image (as the policy node does). Published figures
come from the publishers' own counters in /diagnostics: sim_world's `frames_published`, arm_driver's feedback rate.

The node processes get config/fastdds.xml (8 MiB shared-memory segments) unless FASTRTPS_DEFAULT_PROFILES_FILE is
set: to see the default Fast DDS transports, point it at a profile without transports, e.g. an empty <profiles/>.

Figures: camera/image_raw received / published (`camera_fraction_received`), the rates behind it, joint_states
received rate (`joint_states_hz`) against the driver's serial line-rate limit. Runs `--runs` times (fresh graph each
time) and reports each run and the minimum fraction.

Usage: cd /work/main && source scripts/env.sh && ROS_DOMAIN_ID=12 python bench/graph_rates.py [--seconds 15]
       [--runs 3] [--set sim_world.image_width:=640 --set sim_world.image_height:=480]
Ends with one JSON line of the headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for package in ("roarm_common", "roarm_description", "roarm_driver", "roarm_sim", "roarm_vla_bringup"):
    sys.path.insert(0, str(ROOT / "src" / package))

from roarm_vla_bringup.graph import load_graph  # noqa: E402
from roarm_vla_bringup.runner import GraphRunner, dds_environment, parse_sets  # noqa: E402


def one_run(seconds: float, overrides: dict) -> dict:
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    graph = load_graph("pick", sim=True, controller="expert", overrides=overrides)
    received = []
    lock = threading.Lock()

    def on_image(msg: Image) -> None:
        _ = msg.data  # deserialized (the subscription converts the whole message), as a policy node receives it
        with lock:
            received.append(time.monotonic())

    with GraphRunner(graph, log=lambda _m: None, echo=lambda _m: None) as runner:
        probe = runner.create_node("graph_rates_probe")
        probe.create_subscription(Image, "camera/image_raw", on_image, qos_profile_sensor_data)
        runner.wait_for_topic("camera/image_raw", count=10, timeout=60.0)
        runner.spin_for(2.0)  # discovery settled, the expert picking
        sim_0 = runner.diagnostics("sim_world")
        runner.monitor.reset()
        with lock:
            received.clear()
        t0 = time.monotonic()
        runner.spin_for(seconds)
        elapsed = time.monotonic() - t0
        sim = runner.diagnostics("sim_world")
        rates = runner.topic_rates()
        driver = runner.diagnostics("arm_driver")
        with lock:
            got = len(received)
    # sim_world's own count of published frames between two of its 1 Hz diagnostics, over their stamps
    published_hz = ((int(sim["frames_published"]) - int(sim_0["frames_published"]))
                    / (float(sim["_stamp"]) - float(sim_0["_stamp"])))
    received_hz = got / elapsed
    return {
        "camera_published_hz": round(published_hz, 2),
        "camera_received_hz": round(received_hz, 2),
        "camera_fraction_received": round(received_hz / published_hz, 3),
        "camera_info_hz": round(rates["camera/camera_info"], 2),
        "joint_states_hz": round(rates["joint_states"], 2),
        "line_rate_limit_hz": round(float(driver.get("line_rate_limit_hz", 0.0)), 2),
        "render_ms": float(sim.get("render_ms", 0.0)),
        "image": f"{graph.node('sim_world').parameters().get('image_width')}x"
                 f"{graph.node('sim_world').parameters().get('image_height')}",
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="NAME:=VALUE",
                        help="graph override, as `roarm-vla run --set`")
    args = parser.parse_args(argv)
    overrides = parse_sets(args.set)
    runs = []
    for i in range(args.runs):
        result = one_run(args.seconds, overrides)
        runs.append(result)
        print(f"run {i + 1}: {json.dumps(result)}  load {os.getloadavg()[0]:.2f}", flush=True)
    fractions = [r["camera_fraction_received"] for r in runs]
    js = [r["joint_states_hz"] for r in runs]
    summary = {"camera_fraction_received": min(fractions), "camera_fraction_received_runs": fractions,
               "camera_published_hz": [r["camera_published_hz"] for r in runs],
               "camera_received_hz": [r["camera_received_hz"] for r in runs],
               "joint_states_hz": min(js), "joint_states_fraction_of_line_limit":
                   round(min(j / r["line_rate_limit_hz"] for j, r in zip(js, runs) if r["line_rate_limit_hz"]), 3)
                   if any(r["line_rate_limit_hz"] for r in runs) else None,
               "image": runs[0]["image"], "seconds": args.seconds,
               "fastdds_profile": dds_environment().get("FASTRTPS_DEFAULT_PROFILES_FILE",
                                                        os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE", "yours"))}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
