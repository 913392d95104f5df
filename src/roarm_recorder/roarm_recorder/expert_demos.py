"""Scripted-expert demonstrations in the simulated world, one rosbag2 per successful episode.

    paths = record_expert_episodes("data/bags", seeds=range(20))       # -> [Path of each kept episode bag]
    roarm-vla-record-expert --out data/bags --episodes 20 --seed 0     # the same from a shell

Runs the ``record`` graph of graph.py in sim with controller ``expert`` under the plain-Python runner (firmware
simulator, arm_driver, sim_world, scripted_expert, episode_recorder: each its own process). Per seed:
1. ``sim/reset_episode`` with the seed: sim_world draws the box place and the arm's start pose from it
   (roarm_sim.scene.draw_episode) and moves the arm there through the driver; the reply comes once the arm is
   there and the episode runs.
2. ``record_episode`` (the recorder's action) right after: the scripted expert starts streaming on the same
   RUNNING outcome, so the bag opens with the arm at (or within a setpoint of) the drawn start pose.
3. The recorder ends the episode on sim_world's outcome (stop_on_outcome) and keeps it only on SUCCESS
   (keep_failed false): a TIMEOUT leaves no folder behind.
The recording starts after the reset on purpose: the reset's move is not part of the demonstration (its commands
go through move_joints, not the recorded joint_trajectory stream).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

DEFAULT_TASK = "Pick up the white box"
GOAL_MARGIN_S = 10.0  # record_episode max_duration = sim_world's time_limit + this (the outcome normally ends it)


def record_graph(out_dir: Path, storage: str = "mcap", overrides: Mapping[str, Any] | None = None,
                 perturbation: float = 0.0, miss_fraction: float = 0.0):
    """The record graph (sim, scripted expert) writing into ``out_dir``; only successes are kept.

    perturbation > 0: DART demonstrations (roarm_sim.perturbation): the expert executes setpoints offset by a
    smooth random walk of this std (rad), the recorder also records the expert's clean setpoints
    (scripted_expert.intended_topic) and labels the episode with them (action_source command:<intended_topic>).
    miss_fraction > 0: that share of the episodes (per seed) misses its first grasp on purpose and shows the
    recovery, labelled the same way.
    """
    from roarm_vla_bringup.graph import load_graph

    values: dict[str, Any] = {"output_dir": str(out_dir), "storage": storage,
                              "episode_recorder.stop_on_outcome": True, "episode_recorder.keep_failed": False,
                              # each demonstration starts from the seed's reset, not from sim_world's own start
                              "sim_world.auto_start": False}
    values.update(overrides or {})
    graph = load_graph("record", sim=True, controller="expert", overrides=values)
    if perturbation <= 0 and miss_fraction <= 0:
        return graph
    recorder = graph.node("episode_recorder").parameters()
    intended = str(graph.node("scripted_expert").parameters()["intended_topic"])
    topics, types = list(recorder["topics"]), list(recorder["topic_types"])
    if intended not in topics:
        topics.append(intended)
        types.append("trajectory_msgs/msg/JointTrajectory")
    values.update({"scripted_expert.perturbation_std": float(perturbation),
                   "scripted_expert.perturbation_miss_fraction": float(miss_fraction), "episode_recorder.topics": topics,
                   "episode_recorder.topic_types": types, "episode_recorder.command_topic": intended})
    return load_graph("record", sim=True, controller="expert", overrides=values)


def record_expert_episodes(out_dir, seeds: Iterable[int], task: str = DEFAULT_TASK, storage: str = "mcap",
                           log: Callable[[str], None] = print, *,
                           overrides: Mapping[str, Any] | None = None, perturbation: float = 0.0,
                           miss_fraction: float = 0.0) -> list[Path]:
    """Record one scripted-expert episode per seed; returns the bag directories kept (SUCCESS), in seed order.

    overrides: extra graph overrides (``"<node>.<param>": value``, e.g. a smaller camera image in tests).
    perturbation: DART noise std, rad; miss_fraction: share of missed first grasps (record_graph).
    """
    from roarm_common.action_client import ActionClient  # rclpy 7 can lose an answer (see the module)

    from roarm_interfaces.action import RecordEpisode
    from roarm_sim.episode_client import EpisodeClient
    from roarm_vla_bringup.runner import GraphRunner

    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in seeds]
    graph = record_graph(out, storage, overrides, perturbation, miss_fraction)
    time_limit = float(graph.node("sim_world").parameters().get("time_limit", 30.0))
    kept: list[Path] = []
    with GraphRunner(graph, log=lambda m: log(f"[runner] {m}"), echo=lambda _line: None) as runner:
        node = runner.create_node("expert_demos")
        episodes = EpisodeClient(node)
        action = ActionClient(node, RecordEpisode, "record_episode")
        if not action.wait_for_server(timeout_sec=60.0):
            raise RuntimeError("episode_recorder's record_episode action did not appear within 60 s")
        for number, seed in enumerate(seeds, 1):
            runner.check()
            try:
                reply = episodes.reset(seed, timeout=60.0)
            except RuntimeError as exc:
                log(f"seed {seed}: reset failed ({exc}); no episode recorded")
                continue
            result = _record_one(runner, action, RecordEpisode.Goal(task=task, max_duration=time_limit + GOAL_MARGIN_S))
            if result.kept and result.outcome == "success":
                kept.append(Path(result.bag_path))
            log(f"[{number}/{len(seeds)}] seed {seed} (sim episode {reply.episode_index}): {result.outcome}, "
                f"{'kept' if result.kept else 'discarded'}; {result.message}")
    log(f"{len(kept)} of {len(seeds)} episodes kept in {out}")
    return kept


def _record_one(runner, action, goal, answer_timeout: float = 30.0):
    """Send one record_episode goal and wait for its result (the runner raises NodeExited if a node dies)."""
    future = action.send_goal_async(goal)
    _wait(runner, future, answer_timeout, "record_episode goal response")
    handle = future.result()
    if not handle.accepted:
        raise RuntimeError("episode_recorder refused the record_episode goal (see its output)")
    result_future = handle.get_result_async()
    _wait(runner, result_future, goal.max_duration + answer_timeout, "the episode's end")
    return result_future.result().result


def _wait(runner, future, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not future.done():
        if time.monotonic() > end:
            raise TimeoutError(f"no {what} within {timeout:.0f} s")
        runner.spin_for(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="roarm-vla-record-expert",
        description="Record scripted-expert pick demonstrations in the simulated world: one rosbag2 per "
                    "successful episode (failed ones are discarded).")
    parser.add_argument("--out", required=True, help="folder receiving the episode bags (created if missing)")
    parser.add_argument("--episodes", type=int, default=10, help="number of episodes (seeds) to run")
    parser.add_argument("--seed", type=int, default=0, help="first seed; episode i uses seed + i")
    parser.add_argument("--task", default=DEFAULT_TASK, help="task text stored in every bag")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--perturbation", type=float, default=0.0, metavar="RAD",
                        help="DART: the expert executes setpoints offset by a smooth random walk of this std and "
                             "is labelled with its clean ones (e.g. 0.05; default 0 = none)")
    parser.add_argument("--miss-fraction", type=float, default=0.0, metavar="SHARE",
                        help="share of the episodes whose first grasp misses the box on purpose, recording the "
                             "expert's recovery (reopen, back up, pick again; labelled with its clean plan)")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM:=VALUE",
                        help="graph override, e.g. sim_world.time_limit:=40.0 (repeatable)")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.seed < 0:
        parser.error("--episodes must be >= 1 and --seed >= 0")
    from roarm_sim.perturbation import MAX_STD
    from roarm_vla_bringup.runner import parse_sets

    if not 0.0 <= args.perturbation <= MAX_STD:
        parser.error(f"--perturbation must be within [0, {MAX_STD}] rad")
    if not 0.0 <= args.miss_fraction <= 1.0:
        parser.error("--miss-fraction must be within [0, 1]")

    paths = record_expert_episodes(args.out, range(args.seed, args.seed + args.episodes), args.task, args.storage,
                                   overrides=parse_sets(args.set), perturbation=args.perturbation,
                                   miss_fraction=args.miss_fraction)
    for path in paths:
        print(path)
    return 0 if paths else 1


if __name__ == "__main__":
    sys.exit(main())
