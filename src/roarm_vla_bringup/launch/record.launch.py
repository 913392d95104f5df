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

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction

from roarm_vla_bringup import graph
from roarm_vla_bringup.launch_graph import launch_setup

GRAPH = "record"


def generate_launch_description() -> LaunchDescription:
    arguments = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description + " (empty: YAML)")
                 for a in graph.launch_args(GRAPH)]
    arguments += [DeclareLaunchArgument(name, default_value=default, description=description)
                  for name, default, description in graph.RECORD_FLAG_ARGS]
    return LaunchDescription(arguments + [OpaqueFunction(function=launch_setup, kwargs={"graph_name": GRAPH})])
