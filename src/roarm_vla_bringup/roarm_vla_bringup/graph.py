"""roarm-vla's node graphs as data: ONE table read by pick.launch.py, record.launch.py and the plain-Python runner.

Graphs: ``pick`` (a controller picks the box: the policy, or the scripted expert in sim) and ``record``
(demonstrations to rosbag2: episode_recorder plus who drives the arm: ``expert`` (sim), ``leader`` (teleop_relay,
a leader arm's driver and, in sim, a simulated leader), ``hand`` (hand-guiding, no controller) or ``policy``).

ROS-free (no rclpy, no launch). Both entry points ask `load_graph()` which nodes to start, which parameter YAML
files each one reads (in order, later files win), which launch-argument values override which node parameters,
and which topics must flow. Neither entry point has its own list, so they cannot drift apart
(test_graph.py and test_launch.py check that the launch file's actions equal this table).

Parameter layering for node N (the same in launch and in the runner):
  1. config/<N>.yaml            owned by the node's author; the single source of truth for defaults
  2. config/sim.yaml            only with sim: the keys that differ in simulation (sections per node)
  3. launch-argument overrides  serial_port:=..., task:=..., or any `node.param:=value` (runner's --set)
  4. run-time values            the firmware simulator's pty path for arm_driver.port (sim)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from roarm_vla_bringup.paths import share_path  # noqa: F401 (re-exported for the launch files)

GRAPH_NAMES = ("pick", "record")

# Parameters that receive the firmware simulator's port at run time (sim): the runner's pty link, or the link
# pick.launch.py tells the simulator process to create.
SIM_PORT_TARGETS: tuple[tuple[str, str], ...] = (("arm_driver", "port"),)
CONTROLLERS = ("policy", "expert")
# record: who drives the arm while episodes are recorded, and the teleop mode the recorder stores for it.
RECORD_CONTROLLERS = ("policy", "expert", "leader", "hand")
TELEOP_MODE_OF_CONTROLLER = {"policy": "policy", "expert": "scripted_expert", "leader": "leader_follower",
                             "hand": "hand_guiding"}
# (source node, param) -> (target node, param), sim only: the simulated leader's pty link is the leader driver's port.
SIM_LINKS: tuple[tuple[tuple[str, str], tuple[str, str]], ...] = ((("sim_leader", "link"),
                                                                   ("leader_arm_driver", "port")),)


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph and how each entry point starts it."""

    name: str  # node name (the YAML section name)
    package: str  # ROS package (launch_ros Node package=)
    executable: str  # console script in lib/<package>/ (launch_ros Node executable=)
    node_class: str | None  # "module:Class" the runner instantiates; None = not Python (launch only)
    config: str | None = None  # YAML file under config/ holding this node's `<name>: ros__parameters:` section
    lifecycle: bool = False  # driven configure -> activate by launch events / the runner
    when: Callable[["GraphOptions"], bool] = lambda options: True
    remappings: tuple[tuple[str, str], ...] = ()
    arguments: tuple[str, ...] = ()  # extra command-line arguments of the node's executable
    needs_urdf: bool = False  # gets the URDF text as its robot_description parameter
    # Parameters of the node's process beyond its YAML: read by its own main() (e.g. autostart false, because
    # launch and the runner drive the lifecycle through the node's services).
    launch_params: tuple[tuple[str, Any], ...] = ()
    respawn: bool = False  # start the process again when it exits (launch_ros Node respawn=); else the graph stops
    respawn_delay: float = 2.0  # s before a respawn (launch_ros respawn_delay=)
    graphs: tuple[str, ...] = ("pick",)  # the graphs this node belongs to
    # Parameters that follow from the graph's options (e.g. the recorder's teleop_mode from the controller),
    # layered after the YAML files and before launch-argument overrides.
    option_params: Callable[["GraphOptions"], dict[str, Any]] | None = None


@dataclass(frozen=True)
class GraphOptions:
    sim: bool = False
    controller: str = "policy"  # who streams joint_trajectory: "policy" (vla_policy) or "expert" (scripted_expert);
    # record also "leader" (teleop_relay) or "hand" (nobody: hand-guiding)


@dataclass(frozen=True)
class LaunchArg:
    """A launch argument people change; an empty value keeps what the YAML files say."""

    name: str
    description: str
    targets: tuple[tuple[str, str], ...]  # (node name, parameter name)
    type: type = str
    default: str = ""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    type: str  # "pkg/msg/Type"
    sensor_qos: bool = False  # images: sensor-data QoS (best effort)
    when: Callable[[GraphOptions], bool] = lambda options: True
    graphs: tuple[str, ...] = ("pick", "record")


# Lifecycle nodes' console scripts configure + activate themselves unless told not to; under launch the launch
# file drives the lifecycle (events), so their main() must not.
_LAUNCH_DRIVES_LIFECYCLE = (("autostart", False),)

# ---------------------------------------------------------------------------------------------------------------
# THE table. Node names and topics follow ../shared/architecture.md.
# ---------------------------------------------------------------------------------------------------------------
def _sim(o: GraphOptions) -> bool:
    return o.sim


def _real(o: GraphOptions) -> bool:
    return not o.sim


def _policy(o: GraphOptions) -> bool:
    return o.controller == "policy"


def _expert(o: GraphOptions) -> bool:
    return o.controller == "expert"


def _leader(o: GraphOptions) -> bool:
    return o.controller == "leader"


def _sim_leader(o: GraphOptions) -> bool:
    return o.sim and o.controller == "leader"


def _recorder_options(o: GraphOptions) -> dict[str, Any]:
    """The recorder stores who drove the arm; in sim the world's outcome labels (and ends) each episode."""
    return {"teleop_mode": TELEOP_MODE_OF_CONTROLLER[o.controller],
            "outcome_topic": "sim/episode_outcome" if o.sim else "", "stop_on_outcome": bool(o.sim)}


def _sim_world_options(o: GraphOptions) -> dict[str, Any]:
    """With a person driving (leader arm or hand-guiding) the world only places the box: a reset moving the
    follower would fight the teleop stream (or a torque-off arm); the person brings the arm to its start."""
    return {"reset_move_arm": False} if o.controller in ("leader", "hand") else {}


_PICK_RECORD = ("pick", "record")
# The leader arm's driver: the same node as the follower's, its interfaces under leader/ (the relay's commands,
# sim_world's reset moves and e-stops reach only the follower).
_LEADER_REMAPS = tuple((name, f"leader/{name}") for name in (
    "joint_states", "joint_trajectory", "move_joints", "set_torque", "estop", "reset_estop"))


NODES: tuple[NodeSpec, ...] = (
    NodeSpec("arm_driver", "roarm_driver", "arm_driver", "roarm_driver.arm_driver_node:ArmDriverNode",
             config="arm_driver.yaml", lifecycle=True, launch_params=_LAUNCH_DRIVES_LIFECYCLE, graphs=_PICK_RECORD),
    NodeSpec("camera_publisher", "roarm_driver", "camera_publisher",
             "roarm_driver.camera_publisher_node:CameraPublisherNode", config="camera_publisher.yaml", when=_real,
             graphs=_PICK_RECORD),
    NodeSpec("sim_world", "roarm_sim", "sim_world", "roarm_sim.sim_world_node:SimWorldNode",
             config="sim_world.yaml", when=_sim, option_params=_sim_world_options, graphs=_PICK_RECORD),
    NodeSpec("vla_policy", "vla_policy_node", "vla_policy", "vla_policy_node.vla_policy_node:VlaPolicyNode",
             config="vla_policy.yaml", lifecycle=True, when=_policy, launch_params=_LAUNCH_DRIVES_LIFECYCLE,
             graphs=_PICK_RECORD),
    NodeSpec("scripted_expert", "roarm_sim", "scripted_expert", "roarm_sim.scripted_expert_node:ScriptedExpertNode",
             config="scripted_expert.yaml", when=_expert, graphs=_PICK_RECORD),
    NodeSpec("action_visualizer", "roarm_vla_bringup", "action_visualizer",
             "roarm_vla_bringup.action_visualizer_node:ActionVisualizerNode", config="action_visualizer.yaml",
             when=_policy),
    # C++ nodes: started by the launch files only. The runner publishes the same TF with tf_publisher.py.
    NodeSpec("robot_state_publisher", "robot_state_publisher", "robot_state_publisher", None,
             config="robot_state_publisher.yaml", needs_urdf=True, graphs=_PICK_RECORD),
    # The ghost arm: the same URDF under the 'predicted/' frame prefix, fed by the policy's final chunk pose.
    NodeSpec("predicted_state_publisher", "robot_state_publisher", "robot_state_publisher", None,
             config="robot_state_publisher.yaml", needs_urdf=True, when=_policy,
             remappings=(("joint_states", "vla/predicted_joint_states"),
                         ("robot_description", "vla/predicted_robot_description"))),
    # Ties the ghost's tree to the real one (RViz needs one TF tree): world -> predicted/world, identity.
    NodeSpec("predicted_world_tf", "tf2_ros", "static_transform_publisher", None, when=_policy,
             arguments=("--frame-id", "world", "--child-frame-id", "predicted/world")),
    # --- record only. The simulated leader (a second firmware simulator moved by a scripted hand) before the
    # leader's driver, which opens its pty (and retries until it exists).
    NodeSpec("sim_leader", "roarm_recorder", "sim_leader", "roarm_recorder.sim_leader:SimLeaderNode",
             config="teleop_relay.yaml", when=_sim_leader, graphs=("record",)),
    NodeSpec("leader_arm_driver", "roarm_driver", "arm_driver", "roarm_driver.arm_driver_node:ArmDriverNode",
             config="teleop_relay.yaml", lifecycle=True, launch_params=_LAUNCH_DRIVES_LIFECYCLE, when=_leader,
             remappings=_LEADER_REMAPS, graphs=("record",)),
    NodeSpec("teleop_relay", "roarm_recorder", "teleop_relay", "roarm_recorder.teleop_relay_node:TeleopRelayNode",
             config="teleop_relay.yaml", when=_leader, graphs=("record",)),
    NodeSpec("episode_recorder", "roarm_recorder", "episode_recorder",
             "roarm_recorder.episode_recorder_node:EpisodeRecorderNode", config="episode_recorder.yaml",
             lifecycle=True, launch_params=_LAUNCH_DRIVES_LIFECYCLE, option_params=_recorder_options,
             graphs=("record",)),
)

LAUNCH_ARGS: tuple[LaunchArg, ...] = (
    LaunchArg("serial_port", "Serial device of the real arm (ignored with sim:=true: the simulator's pty is used)",
              (("arm_driver", "port"),)),
    LaunchArg("camera_device", "V4L2 device ('/dev/video0' or '0') or video file of the camera (ignored with sim)",
              (("camera_publisher", "source"),)),
    LaunchArg("checkpoint", "Policy checkpoint: a local folder (pretrained_model) or a Hugging Face repo id",
              (("vla_policy", "checkpoint"),)),
    LaunchArg("task", "Task text the policy is conditioned on, e.g. 'Pick up the white box'",
              (("vla_policy", "task"),)),
    LaunchArg("precision", "Policy precision: fp32, bf16, fp16 (GPU), int8 or int4 (GPU)",
              (("vla_policy", "precision"),)),
    LaunchArg("device", "Torch device of the policy: cpu, cuda or cuda:N", (("vla_policy", "device"),)),
    LaunchArg("ema_alpha", "Weight of the newest plan in the policy's EMA smoothing (0..1; 1 = no smoothing)",
              (("vla_policy", "ema_alpha"),), type=float),
)

# record only (record.launch.py declares them; the runner takes them as --set NAME:=VALUE).
RECORD_LAUNCH_ARGS: tuple[LaunchArg, ...] = (
    LaunchArg("leader_port", "Serial device of the leader arm (leader-follower; ignored with sim:=true)",
              (("leader_arm_driver", "port"),)),
    LaunchArg("output_dir", "Folder receiving one rosbag2 directory per episode (must exist)",
              (("episode_recorder", "output_dir"),)),
    LaunchArg("storage", "rosbag2 storage of each episode: mcap or sqlite3", (("episode_recorder", "storage"),)),
)


def launch_args(graph_name: str) -> tuple[LaunchArg, ...]:
    """The launch arguments of a graph (pick: LAUNCH_ARGS; record: those plus RECORD_LAUNCH_ARGS)."""
    return LAUNCH_ARGS + (RECORD_LAUNCH_ARGS if graph_name == "record" else ())


# Graph-level switches (not node parameters).
FLAG_ARGS: tuple[tuple[str, str, str], ...] = (
    ("sim", "false", "true: firmware simulator instead of the serial port, sim_world instead of the camera"),
    ("controller", "policy", "who drives the arm: policy (vla_policy) or expert (scripted_expert, sim only)"),
    ("rviz", "false", "true: start RViz with rviz/roarm_vla.rviz"),
)
RECORD_FLAG_ARGS: tuple[tuple[str, str, str], ...] = (
    ("sim", "false", "true: firmware simulator(s) instead of serial ports, sim_world instead of the camera"),
    ("controller", "leader", "who drives the arm while recording: leader (leader-follower teleop), hand "
                             "(hand-guiding, torque off), expert (scripted_expert, sim only) or policy"),
    ("rviz", "false", "true: start RViz with rviz/roarm_vla.rviz"),
)

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("joint_states", "sensor_msgs/msg/JointState"),
    TopicSpec("camera/image_raw", "sensor_msgs/msg/Image", sensor_qos=True),
    TopicSpec("camera/camera_info", "sensor_msgs/msg/CameraInfo", sensor_qos=True),
    TopicSpec("joint_trajectory", "trajectory_msgs/msg/JointTrajectory"),
    TopicSpec("vla/action_chunk", "roarm_interfaces/msg/ActionChunk", when=_policy),
    TopicSpec("vla/markers", "visualization_msgs/msg/MarkerArray", when=_policy, graphs=("pick",)),
    TopicSpec("vla/predicted_joint_states", "sensor_msgs/msg/JointState", when=_policy),
    TopicSpec("sim/box_pose", "geometry_msgs/msg/PoseStamped", when=_sim),
    TopicSpec("sim/episode_outcome", "roarm_interfaces/msg/EpisodeOutcome", when=_sim),
    TopicSpec("diagnostics", "diagnostic_msgs/msg/DiagnosticArray"),
    TopicSpec("tf", "tf2_msgs/msg/TFMessage"),
    TopicSpec("leader/joint_states", "sensor_msgs/msg/JointState", when=_leader, graphs=("record",)),
)


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class NodeInstance:
    """A node of a built graph: what it reads and what it is told."""

    spec: NodeSpec
    param_files: list[Path]
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def parameters(self) -> dict[str, Any]:
        """The parameter values this node receives: its YAML sections in order, then the overrides."""
        values: dict[str, Any] = {}
        for path in self.param_files:
            values.update(yaml_section(path, self.name))
        values.update(self.overrides)
        return values

    def launch_parameters(self) -> dict[str, Any]:
        """What the launch file hands the node: the YAML layers, then spec.launch_params, then the overrides."""
        values = {k: v for k, v in self.parameters().items() if k not in self.overrides}
        values.update(dict(self.spec.launch_params))
        values.update(self.overrides)
        return values


@dataclass
class Graph:
    name: str
    options: GraphOptions
    nodes: list[NodeInstance]
    topics: list[TopicSpec]
    notes: list[str] = field(default_factory=list)

    def node(self, name: str) -> NodeInstance:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"graph {self.name!r} has no node {name!r}; it has {self.node_names}")

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def python_nodes(self) -> list[NodeInstance]:
        return [n for n in self.nodes if n.spec.node_class]

    @property
    def topic_names(self) -> list[str]:
        return [t.name for t in self.topics]


def config_path(file_name: str) -> Path:
    return share_path("config", file_name)


def yaml_section(path: Path, node_name: str) -> dict[str, Any]:
    """`<node_name>: ros__parameters:` of a parameter file as a flat dict (nested keys joined with '.')."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    for key in (node_name, "/" + node_name, "/**"):
        section = data.get(key)
        if isinstance(section, dict) and "ros__parameters" in section:
            return _flatten(section["ros__parameters"] or {})
    return {}


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def coerce(value: Any, kind: type) -> Any:
    """A launch-argument string -> the parameter's type (so launch and runner hand nodes the same typed value)."""
    if not isinstance(value, str):
        return kind(value)
    if kind is bool:
        return parse_bool(value)
    try:
        return kind(value)
    except ValueError as exc:
        raise ValueError(f"cannot read {value!r} as {kind.__name__}") from exc


def parse_value(text: str) -> Any:
    """Value of a free `node.param:=value` override: YAML scalar rules, as `ros2 run ... -p` reads it."""
    value = yaml.safe_load(text) if text.strip() else ""
    return value


def load_graph(name: str = "pick", sim: bool = False, controller: str = "policy",
               overrides: Mapping[str, Any] | None = None,
               runtime_params: Mapping[str, Mapping[str, Any]] | None = None) -> Graph:
    """Build the graph: nodes, their parameter files and overrides, expected topics.

    overrides: launch-argument values by name (serial_port, task, ...; empty string = keep the YAML value) and/or
    free overrides `"<node>.<param>": value` (strings are read as YAML scalars). runtime_params: values known only
    when running (e.g. {"arm_driver": {"port": "/dev/pts/5"}}), applied last.
    """
    if name not in GRAPH_NAMES:
        raise ValueError(f"unknown graph {name!r}; known: {list(GRAPH_NAMES)}")
    controllers = RECORD_CONTROLLERS if name == "record" else CONTROLLERS
    if controller not in controllers:
        raise ValueError(f"controller must be one of {list(controllers)}, got {controller!r}")
    if controller == "expert" and not sim:
        raise ValueError("controller 'expert' (scripted_expert) needs the simulated world: set sim")
    options = GraphOptions(sim=bool(sim), controller=controller)
    notes: list[str] = []
    nodes: list[NodeInstance] = []
    for spec in NODES:
        if name not in spec.graphs or not spec.when(options):
            continue
        files: list[Path] = []
        if spec.config:
            try:
                files.append(config_path(spec.config))
            except FileNotFoundError:
                notes.append(f"config/{spec.config} is missing: {spec.name} runs with its declared defaults")
            if options.sim and yaml_section(config_path("sim.yaml"), spec.name):
                files.append(config_path("sim.yaml"))
        nodes.append(NodeInstance(spec, files))
        if spec.option_params is not None:
            nodes[-1].overrides.update(spec.option_params(options))
    by_name = {n.name: n for n in nodes}

    args_by_name = {a.name: a for a in launch_args(name)}
    for key, raw in (overrides or {}).items():
        if key in args_by_name:
            arg = args_by_name[key]
            if raw is None or (isinstance(raw, str) and raw == ""):
                continue
            for node_name, param in arg.targets:
                if node_name not in by_name:
                    notes.append(f"{key} ignored: node {node_name} is not in this graph")
                    continue
                by_name[node_name].overrides[param] = coerce(raw, arg.type)
        elif "." in key:
            node_name, param = key.split(".", 1)
            if node_name not in by_name:
                raise ValueError(f"override {key!r}: node {node_name!r} is not in this graph ({list(by_name)})")
            by_name[node_name].overrides[param] = parse_value(raw) if isinstance(raw, str) else raw
        else:
            known = [a.name for a in launch_args(name)]
            raise ValueError(f"unknown override {key!r}: use one of {known} or '<node>.<param>'")
    if options.sim:
        for (source, source_param), (target, target_param) in SIM_LINKS:
            if source in by_name and target in by_name:
                by_name[target].overrides[target_param] = by_name[source].parameters()[source_param]
    for node_name, params in (runtime_params or {}).items():
        if node_name in by_name:
            by_name[node_name].overrides.update(params)
    topics = [t for t in TOPICS if name in t.graphs and t.when(options)]
    return Graph(name=name, options=options, nodes=nodes, topics=topics, notes=notes)


def urdf_text() -> str:
    """The URDF handed to robot_state_publisher as robot_description."""
    from roarm_description.urdf_model import default_urdf_path

    return default_urdf_path().read_text()
