"""ros2 launch roarm_vla_bringup record.launch.py [controller:=leader|hand|expert|policy] [sim:=true] ...

Demonstrations to rosbag2: arm_driver (lifecycle), camera_publisher (or sim_world and the firmware simulator with
sim:=true), episode_recorder (lifecycle: record_episode action, stop_episode service), robot_state_publisher, and
who drives the arm: teleop_relay + the leader arm's driver (controller:=leader; with sim:=true also sim_leader, a
second simulated arm moved by a scripted hand), nobody (controller:=hand: hand-guiding, the recorder switches the
torque off per episode), scripted_expert (controller:=expert, sim only) or vla_policy (controller:=policy).
Then record with `roarm-vla-record` (keys s/k/d/q) or by calling the record_episode action.

Thin on purpose, like pick.launch.py: the node set, the parameter files and the launch-argument -> parameter
mapping live in roarm_vla_bringup/graph.py (graph "record"), the table the plain-Python runner reads too
(`roarm-vla run record --sim --controller expert`). Defaults of every parameter are in config/<node>.yaml
(episode_recorder.yaml, teleop_relay.yaml). An empty launch argument keeps the YAML.
"""

import os
import sys
import tempfile

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, LogInfo, OpaqueFunction

from roarm_vla_bringup import graph
from roarm_vla_bringup.launch_graph import dds_profile_actions, node_actions, rviz_action

GRAPH = "record"


def record_setup(context: LaunchContext):
    """launch_graph.launch_setup for the record graph, whose launch arguments include RECORD_LAUNCH_ARGS."""
    cfg = context.launch_configurations
    sim = graph.parse_bool(cfg.get("sim", "false"))
    actions = dds_profile_actions()
    runtime: dict[str, dict] = {}
    if sim:
        # The follower's firmware simulator is a process, not a node (the leader's is the sim_leader node).
        link = os.path.join(tempfile.gettempdir(), f"roarm_vla_sim_{os.getpid()}")
        actions.append(ExecuteProcess(cmd=[sys.executable, "-m", "roarm_driver.firmware_sim", "--link", link],
                                      name="firmware_sim", output="screen"))
        runtime = {node: {param: link} for node, param in graph.SIM_PORT_TARGETS}
    overrides = {a.name: cfg.get(a.name, "") for a in graph.launch_args(GRAPH)}
    built = graph.load_graph(GRAPH, sim=sim, controller=cfg.get("controller", "leader"), overrides=overrides,
                             runtime_params=runtime)
    actions += [LogInfo(msg=f"roarm_vla_bringup: {note}") for note in built.notes]
    actions += node_actions(built)
    if graph.parse_bool(cfg.get("rviz", "false")):
        actions.append(rviz_action())
    return actions


def generate_launch_description() -> LaunchDescription:
    arguments = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description + " (empty: YAML)")
                 for a in graph.launch_args(GRAPH)]
    arguments += [DeclareLaunchArgument(name, default_value=default, description=description)
                  for name, default, description in graph.RECORD_FLAG_ARGS]
    return LaunchDescription(arguments + [OpaqueFunction(function=record_setup)])
