"""`make demo`: the simulated pick graph end to end, N episodes, success rate with a 95 % Wilson interval.

    python -m roarm_vla_bringup.demo --episodes 5 --seed 0 --out outputs/demo      # scripted expert drives
    python -m roarm_vla_bringup.demo --episodes 3 --policy tiny --time-limit 10   # a tiny random SmolVLA drives
    roarm-vla-demo ...                                                            # console script, same options

The node graph is graph.py's `pick` graph with sim (firmware simulator, arm_driver, sim_world, and scripted_expert
or vla_policy + action_visualizer), the same table and YAMLs as pick.launch.py and `roarm-vla run`, started by
GraphRunner one process per node (their output prefixed with the node name). The demo adds only run-time overrides (sim_world.auto_start false: the demo resets each
episode itself; --time-limit, --camera-rate, the tiny checkpoint) and drives episodes through the ROS interfaces:
sim/reset_episode, then sim/episode_outcome. With --policy tiny, vla_policy gets an offline tiny SmolVLA
checkpoint built on the spot (random weights: expect ~0 % success; it shows the plumbing, not skill).

Prints per-topic rates, the driver's feedback rate against the serial line-rate limit, command latency and
rejected commands (from the driver's /diagnostics); writes a contact sheet PNG and an mp4 of the first episode's camera frames; ends with one JSON
line of the headline figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path



def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m roarm_vla_bringup.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=5, help="number of episodes (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode; episode i uses seed + i")
    parser.add_argument("--policy", choices=("none", "tiny"), default="none",
                        help="none: the scripted expert drives; tiny: vla_policy with an offline tiny SmolVLA")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder (contact sheet, mp4)")
    parser.add_argument("--time-limit", type=float, default=None, help="episode time limit, s (default: YAML)")
    parser.add_argument("--camera-rate", type=float, default=None, help="camera rate, Hz (default: YAML)")
    parser.add_argument("--record-fps", type=float, default=5.0, help="frames per second kept for the sheet/video")
    parser.add_argument("--set", action="append", default=[], metavar="NAME:=VALUE",
                        help="launch argument or <node>.<param> override, as `roarm-vla run --set`; repeatable")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    if args.time_limit is not None and args.time_limit <= 0:
        parser.error("--time-limit must be > 0")
    return args


def demo_overrides(args: argparse.Namespace, checkpoint: Path | None) -> dict:
    """The demo's run-time overrides of the graph's YAML values (nothing else differs from `roarm-vla run`)."""
    from roarm_vla_bringup.runner import parse_sets

    overrides: dict = {"sim_world.auto_start": False}  # the demo starts every episode with sim/reset_episode
    if args.time_limit is not None:
        overrides["sim_world.time_limit"] = float(args.time_limit)
    if args.camera_rate is not None:
        overrides["sim_world.camera_rate"] = float(args.camera_rate)
    if checkpoint is not None:
        overrides["checkpoint"] = str(checkpoint.resolve())
    overrides.update(parse_sets(args.set))
    return overrides


def main(argv=None) -> int:
    args = parse_args(argv)
    from roarm_vla_bringup.runner import NodeExited

    try:
        return run_demo(args)
    except NodeExited as exc:  # the runner said which node died and with what code, and stopped the graph
        print(f"[demo] failed: {exc}", flush=True)
        return 1
    except KeyboardInterrupt:  # the graph was stopped in order by GraphRunner.__exit__
        print("[demo] interrupted", flush=True)
        return 130


def run_demo(args: argparse.Namespace) -> int:
    import numpy as np
    import cv2
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from roarm_interfaces.msg import EpisodeOutcome
    from roarm_sim.outcome import STATUS_NAMES
    from roarm_sim.report import FrameRecorder, contact_sheet, wilson_interval, write_video
    from roarm_vla_bringup.graph import load_graph
    from roarm_vla_bringup.runner import GraphRunner, describe
    from roarm_vla_bringup.sim_episodes import run_episodes

    args.out.mkdir(parents=True, exist_ok=True)
    controller = "policy" if args.policy == "tiny" else "expert"
    checkpoint = None
    if args.policy == "tiny":
        from roarm_training.small_smolvla import build_tiny_checkpoint

        checkpoint = args.out / "tiny_smolvla"
        if not (checkpoint / "config.json").exists():
            print(f"building an offline tiny SmolVLA checkpoint (random weights) in {checkpoint} ...")
            build_tiny_checkpoint(checkpoint)
    graph = load_graph("pick", sim=True, controller=controller, overrides=demo_overrides(args, checkpoint))
    print(describe(graph))
    camera_rate = float(graph.node("sim_world").parameters().get("camera_rate", 30.0))
    recorder = FrameRecorder(every=int(round(camera_rate / max(args.record_fps, 0.1))))

    time_limit = float(graph.node("sim_world").parameters().get("time_limit", 30.0))
    started = time.monotonic()
    with GraphRunner(graph, log=lambda m: print(f"[demo] {m}", flush=True),
                     echo=lambda line: print(line, flush=True)) as runner:
        helper = runner.create_node("roarm_vla_demo")
        helper.create_subscription(Image, "camera/image_raw", recorder, qos_profile_sensor_data)
        runner.wait_for_topic("joint_states", count=5, timeout=30.0)
        runner.monitor.reset()
        driver_rates = []

        def report(_i, seed, episode_index, outcome):
            driver_rates.append(float(runner.diagnostics("arm_driver").get("feedback_rate_hz", 0.0)))
            print(f"episode {episode_index} seed {seed}: {STATUS_NAMES[outcome.status]} after "
                  f"{outcome.elapsed:.1f} s ({outcome.detail})", flush=True)

        results = run_episodes(runner, helper, [args.seed + i for i in range(args.episodes)], time_limit=time_limit,
                               policy=controller == "policy", first_episode_capture=[recorder], on_outcome=report)
        rates = runner.topic_rates()
        not_counted = list(runner.monitor.skipped)
        runner.spin_for(1.1)  # one more diagnostics message of the driver, after the last episode
        snapshot = runner.diagnostics("arm_driver")
    wall = time.monotonic() - started

    successes = sum(o.status == EpisodeOutcome.SUCCESS for o in results)
    low, high = wilson_interval(successes, len(results))
    sheet_path, video_path = args.out / "contact_sheet.png", args.out / "episode_0.mp4"
    cv2.imwrite(str(sheet_path), cv2.cvtColor(contact_sheet(recorder.frames), cv2.COLOR_RGB2BGR))
    video_ok = write_video(recorder.frames, video_path, args.record_fps)
    rejections = {k[len("rejected_"):]: int(v) for k, v in snapshot.items() if k.startswith("rejected_") and int(v)}
    rejected = sum(rejections.values())

    print()
    print(f"controller: {'scripted_expert' if controller == 'expert' else 'vla_policy (tiny offline SmolVLA)'}")
    print(f"success rate: {successes}/{len(results)} = {successes / len(results):.0%} "
          f"(95% Wilson CI {low:.0%} .. {high:.0%})")
    durations = [o.elapsed for o in results if o.status == EpisodeOutcome.SUCCESS]
    if durations:
        print(f"time to success: mean {np.mean(durations):.1f} s, max {np.max(durations):.1f} s")
    print("topic rates (Hz, over the episodes):")
    for topic, rate in rates.items():
        print(f"  {topic:27s} {'n/a (type not installed)' if topic in not_counted else f'{rate:6.1f}'}")
    baud = graph.node("arm_driver").parameters().get("baud", 115200)
    print(f"arm_driver feedback rate: {np.mean(driver_rates):.1f} Hz (T:1051 lines; line-rate limit "
          f"{float(snapshot.get('line_rate_limit_hz', 0)):.1f} Hz at {baud} baud), command latency "
          f"median {float(snapshot.get('command_latency_median_ms', 0)):.2f} ms, rejected commands {rejected}"
          + (f" {rejections} (last: {snapshot.get('last_rejection', '')[:120]})" if rejected else ""))
    print(f"contact sheet: {sheet_path}" + (f"; video: {video_path}" if video_ok else " (mp4 writer unavailable)"))
    print(f"wall time: {wall:.1f} s")
    summary = {"episodes": len(results), "successes": successes, "success_rate": successes / len(results),
               "ci95": [round(low, 4), round(high, 4)], "controller": controller,
               "feedback_rate_hz": round(float(np.mean(driver_rates)), 1), "rejected_commands": rejected,
               "topic_rates_hz": {k: round(v, 1) for k, v in rates.items() if k not in not_counted},
               "wall_s": round(wall, 1)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
