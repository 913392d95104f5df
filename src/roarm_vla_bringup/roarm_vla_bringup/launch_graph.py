"""launch / launch_ros actions for a graph.Graph: the thin layer pick.launch.py is made of.

Needs the ROS `launch` and `launch_ros` packages (a ROS 2 Jazzy install); the plain-Python runner never imports
this module. Every node, parameter file and override comes from graph.load_graph(), nothing from here.
"""

from __future__ import annotations

import os
import sys
import tempfile

from launch import LaunchContext
from launch.actions import EmitEvent, ExecuteProcess, LogInfo, RegisterEventHandler, SetEnvironmentVariable
from launch.events import matches_action
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from lifecycle_msgs.msg import Transition

from roarm_vla_bringup import graph as g


def launch_setup(context: LaunchContext, graph_name: str = "pick"):
    """OpaqueFunction body: read the launch arguments, build the graph, return its actions."""
    cfg = context.launch_configurations
    sim = g.parse_bool(cfg.get("sim", "false"))
    actions = dds_profile_actions()
    runtime: dict[str, dict] = {}
    if sim:
        # The firmware simulator is a process, not a node: it serves a pty behind a symlink the driver opens.
        link = os.path.join(tempfile.gettempdir(), f"roarm_vla_sim_{os.getpid()}")
        actions.append(ExecuteProcess(cmd=[sys.executable, "-m", "roarm_driver.firmware_sim", "--link", link],
                                      name="firmware_sim", output="screen"))
        runtime = {node: {param: link} for node, param in g.SIM_PORT_TARGETS}
    overrides = {a.name: cfg.get(a.name, "") for a in g.launch_args(graph_name)}
    graph = g.load_graph(graph_name, sim=sim, controller=cfg.get("controller", "policy"), overrides=overrides,
                         runtime_params=runtime)
    actions += [LogInfo(msg=f"roarm_vla_bringup: {note}") for note in graph.notes]
    actions += node_actions(graph)
    if g.parse_bool(cfg.get("rviz", "false")):
        actions.append(rviz_action())
    return actions


def dds_profile_actions() -> list:
    """Fast DDS profile with shared-memory segments large enough for a 640x480 image (config/fastdds.xml says why),
    for every process started after it, unless the user chose a profile (the runner does the same)."""
    if os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE") or os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        return [LogInfo(msg="roarm_vla_bringup: keeping the Fast DDS profile of FASTRTPS_DEFAULT_PROFILES_FILE")]
    return [SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", str(g.config_path("fastdds.xml")))]


def parameters_for(node: g.NodeInstance) -> list:
    """launch_ros `parameters=`: the YAML files in order, then a dict of typed overrides (strings kept strings)."""
    params: list = [str(path) for path in node.param_files]
    values = dict(node.spec.launch_params)
    values.update(node.overrides)
    if node.spec.needs_urdf:
        values["robot_description"] = g.urdf_text()
    if values:
        # launch_ros reads plain strings as YAML ('1.0' would become a double): pin them to str.
        params.append({k: ParameterValue(v, value_type=str) if isinstance(v, str) else v for k, v in values.items()})
    return params


def node_actions(graph: g.Graph) -> list:
    actions = []
    for node in graph.nodes:
        spec = node.spec
        common = dict(package=spec.package, executable=spec.executable, name=spec.name, namespace="",
                      parameters=parameters_for(node), remappings=list(spec.remappings),
                      arguments=list(spec.arguments), output="screen", respawn=spec.respawn,
                      respawn_delay=spec.respawn_delay)
        if not spec.lifecycle:
            actions.append(Node(**common))
            continue
        lifecycle_node = LifecycleNode(**common)
        # configure at start; activate once configure succeeded (configuring -> inactive). Only that transition:
        # a deactivate (active -> inactive, e.g. an operator pausing the arm) must not re-activate the node.
        actions += [
            lifecycle_node,
            RegisterEventHandler(OnStateTransition(
                target_lifecycle_node=lifecycle_node, start_state="configuring", goal_state="inactive",
                entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(lifecycle_node),
                                                      transition_id=Transition.TRANSITION_ACTIVATE))])),
            EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(lifecycle_node),
                                        transition_id=Transition.TRANSITION_CONFIGURE)),
        ]
    return actions


def rviz_action() -> Node:
    return Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                arguments=["-d", str(g.share_path("rviz", "roarm_vla.rviz"))])
