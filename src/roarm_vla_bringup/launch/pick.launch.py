"""ros2 launch roarm_vla_bringup pick.launch.py [sim:=true] [rviz:=true] [task:='Pick up the white box'] ...

The pick stack: arm_driver (lifecycle: configured then activated by launch events), camera_publisher (or sim_world
with sim:=true, plus the firmware simulator instead of the serial port), vla_policy (lifecycle), two
robot_state_publishers (the arm, and the 'predicted/' ghost arm), action_visualizer, optional RViz.

Thin on purpose: the node set, the parameter files and the launch-argument -> parameter mapping live in
roarm_vla_bringup/graph.py, the table the plain-Python runner (`roarm-vla run pick`) reads too. Defaults of every
parameter are in config/<node>.yaml; sim differences in config/sim.yaml. An empty launch argument keeps the YAML.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction

from roarm_vla_bringup import graph
from roarm_vla_bringup.launch_graph import launch_setup


def generate_launch_description() -> LaunchDescription:
    arguments = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description + " (empty: YAML)")
                 for a in graph.LAUNCH_ARGS]
    arguments += [DeclareLaunchArgument(name, default_value=default, description=description)
                  for name, default, description in graph.FLAG_ARGS]
    return LaunchDescription(arguments + [OpaqueFunction(function=launch_setup, kwargs={"graph_name": "pick"})])
