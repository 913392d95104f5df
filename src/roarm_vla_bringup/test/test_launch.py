"""pick.launch.py / view.launch.py through the ROS `launch` packages: the same graph as the runner.

Runs where launch and launch_ros are installed (a ROS 2 Jazzy install); skips elsewhere (they are not on PyPI).
- test_pick_launch_matches_graph: evaluates the launch file's actions (no processes): node set, package/executable,
  the parameter files handed to each node merged in order = graph.py's layering, remappings, lifecycle events.
- test_pick_launch_sim_runs: starts `pick.launch.py sim:=true` with controller expert, and policy (tiny offline
  SmolVLA) as a child process (needs the workspace built and robot_state_publisher/tf2_ros installed) and checks
  nodes, lifecycle states (active), parameters and topic flow (vla/markers too with the policy).
"""

import importlib.util
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

launch = pytest.importorskip("launch", reason="ROS 2 'launch' is not installed (not on PyPI; needs a ROS install)")
launch_ros = pytest.importorskip("launch_ros", reason="ROS 2 'launch_ros' is not installed (not on PyPI)")

from launch import LaunchContext  # noqa: E402
from launch.actions import EmitEvent, ExecuteProcess, RegisterEventHandler  # noqa: E402
from launch_ros.actions import LifecycleNode, Node  # noqa: E402

from roarm_vla_bringup import graph as g  # noqa: E402

pytestmark = pytest.mark.launch


def _load_launch_file(name):
    path = g.share_path("launch", name)
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _evaluate(name, **args):
    """The actions a launch file yields for these arguments (what `ros2 launch` would start), plus the context."""
    description = _load_launch_file(name)
    context = LaunchContext()
    context.launch_configurations.update({k: str(v) for k, v in args.items()})
    actions = []
    for entity in description.entities:
        if isinstance(entity, ExecuteProcess):  # a process: collect it, do not start it
            actions.append(entity)
        else:  # DeclareLaunchArgument sets defaults; OpaqueFunction returns the graph's actions
            actions += entity.visit(context) or []
    return actions, context


def _node_parameters(node, context):
    """Merge the parameter files launch_ros hands this node, in order, for its name (what rcl does)."""
    node._perform_substitutions(context)
    values = {}
    for argument, is_file in node._Node__expanded_parameter_arguments:
        assert is_file
        data = yaml.safe_load(open(argument).read()) or {}
        for key in (node.node_name.lstrip("/"), node.node_name, "/**"):
            if key in data:
                values.update(g._flatten(data[key]["ros__parameters"] or {}))
    return values


@pytest.mark.parametrize("args", [
    {"sim": "true"},
    {"sim": "true", "controller": "expert"},
    {"sim": "false", "task": "Pick up the red box", "ema_alpha": "0.5", "serial_port": "/dev/ttyUSB1",
     "camera_device": "/dev/video2", "checkpoint": "/models/smolvla_roarm", "precision": "bf16"},
])
def test_pick_launch_matches_graph(args):
    actions, context = _evaluate("pick.launch.py", **args)
    nodes = [a for a in actions if isinstance(a, Node)]
    sim = args["sim"] == "true"
    processes = [a for a in actions if isinstance(a, ExecuteProcess) and not isinstance(a, Node)]
    overrides = {a.name: args.get(a.name, "") for a in g.LAUNCH_ARGS}
    runtime = {}
    if sim:
        assert len(processes) == 1
        cmd = " ".join(" ".join(s.perform(context) for s in part) for part in processes[0].cmd)
        assert "roarm_driver.firmware_sim" in cmd and "--link" in cmd
        link = cmd.split("--link")[1].split()[0]
        runtime = {n: {p: link} for n, p in g.SIM_PORT_TARGETS}
    else:
        assert not processes
    graph = g.load_graph("pick", sim=sim, controller=args.get("controller", "policy"), overrides=overrides,
                         runtime_params=runtime)

    by_name = {}
    for node in nodes:
        node._perform_substitutions(context)
        by_name[node.node_name.lstrip("/")] = node
    assert sorted(by_name) == sorted(graph.node_names)
    for instance in graph.nodes:
        node = by_name[instance.name]
        assert (node.node_package, node.node_executable) == (instance.spec.package, instance.spec.executable)
        assert isinstance(node, LifecycleNode) == instance.spec.lifecycle, instance.name
        expected = instance.launch_parameters()
        if instance.spec.needs_urdf:
            expected["robot_description"] = g.urdf_text()
        got = _node_parameters(node, context)
        assert set(got) == set(expected), instance.name
        for key, value in expected.items():
            if isinstance(value, float):
                assert math.isclose(float(got[key]), value), (instance.name, key)
            else:
                assert got[key] == value, (instance.name, key, got[key], value)
        remaps = [(src, dst) for src, dst in (node.expanded_remapping_rules or [])]
        assert remaps == list(instance.spec.remappings)
    # configure emitted at start, activate registered on 'inactive', per lifecycle node
    lifecycle = [n for n in graph.nodes if n.spec.lifecycle]
    assert len([a for a in actions if isinstance(a, EmitEvent)]) == len(lifecycle)
    assert len([a for a in actions if isinstance(a, RegisterEventHandler)]) == len(lifecycle)
    if not sim:
        assert by_name["vla_policy"] and graph.node("vla_policy").overrides["ema_alpha"] == 0.5
        assert _node_parameters(by_name["vla_policy"], context)["task"] == "Pick up the red box"
        assert _node_parameters(by_name["arm_driver"], context)["port"] == "/dev/ttyUSB1"
    # the launch file drives the lifecycle: the nodes' own main() must not configure/activate them
    assert _node_parameters(by_name["arm_driver"], context)["autostart"] is False


def test_view_launch_nodes():
    actions, context = _evaluate("view.launch.py", gui="false", rviz="false")
    names = []
    for node in actions:
        if isinstance(node, Node) and (node.condition is None or node.condition.evaluate(context)):
            node._perform_substitutions(context)
            names.append(node.node_name.split("/")[-1])
    assert names == ["robot_state_publisher", "joint_state_publisher"]


def _installed(package, executable=None):
    try:
        from ament_index_python.packages import get_package_prefix
        prefix = get_package_prefix(package)
    except Exception:
        return False
    return executable is None or os.path.exists(os.path.join(prefix, "lib", package, executable))


@pytest.mark.slow
@pytest.mark.parametrize("controller", ["expert", "policy"])
def test_pick_launch_sim_runs(controller, tmp_path):
    launch_args = ["sim:=true", f"controller:={controller}"]
    overrides = {}
    if controller == "policy":
        tiny = pytest.importorskip("roarm_training.small_smolvla")
        overrides["checkpoint"] = str(tiny.build_tiny_checkpoint(tmp_path / "ckpt"))
        launch_args.append(f"checkpoint:={overrides['checkpoint']}")
    graph = g.load_graph("pick", sim=True, controller=controller, overrides=overrides)
    missing = [f"{n.spec.package}/{n.spec.executable}" for n in graph.nodes
               if not _installed(n.spec.package, n.spec.executable)]
    if missing:
        pytest.skip(f"not installed (build the workspace; robot_state_publisher/tf2_ros from ROS): {missing}")
    import rclpy
    import rclpy.executors
    from rcl_interfaces.srv import GetParameters
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState

    code = ("import sys, launch; from launch.actions import IncludeLaunchDescription;"
            "from launch.launch_description_sources import PythonLaunchDescriptionSource;"
            "ls = launch.LaunchService(argv=sys.argv[2:]);"
            "ls.include_launch_description(IncludeLaunchDescription(PythonLaunchDescriptionSource(sys.argv[1]),"
            " launch_arguments=[a.split(':=') for a in sys.argv[2:]]));"
            "sys.exit(ls.run())")
    child = subprocess.Popen([sys.executable, "-c", code, str(g.share_path("launch", "pick.launch.py")),
                              *launch_args], start_new_session=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    probe = rclpy.create_node("launch_probe", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    counts = {"joint_states": 0, "camera/image_raw": 0}
    probe.create_subscription(JointState, "joint_states", lambda _m: counts.__setitem__(
        "joint_states", counts["joint_states"] + 1), 10)
    probe.create_subscription(Image, "camera/image_raw", lambda _m: counts.__setitem__(
        "camera/image_raw", counts["camera/image_raw"] + 1), qos_profile_sensor_data)
    if controller == "policy":  # the predicted actions reach RViz's topics
        from visualization_msgs.msg import MarkerArray
        counts["vla/markers"] = 0
        probe.create_subscription(MarkerArray, "vla/markers", lambda _m: counts.__setitem__(
            "vla/markers", counts["vla/markers"] + 1), 10)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(counts.values()):
            executor.spin_once(timeout_sec=0.1)
        assert all(counts.values()), f"topics did not flow under pick.launch.py: {counts}"
        names: set = set()
        deadline = time.monotonic() + 30  # discovery of every node can lag behind the first messages
        while time.monotonic() < deadline and not set(graph.node_names) <= names:
            executor.spin_once(timeout_sec=0.2)
            names = {name for name, _ns in probe.get_node_names_and_namespaces()}
        assert set(graph.node_names) <= names, f"missing nodes: {set(graph.node_names) - names}"
        # the launch events drove every lifecycle node to 'active' (configure, then activate on 'inactive')
        from lifecycle_msgs.msg import State
        from lifecycle_msgs.srv import GetState
        for instance in graph.python_nodes:
            if instance.spec.lifecycle:
                client = probe.create_client(GetState, f"/{instance.name}/get_state")
                assert client.wait_for_service(timeout_sec=10)
                state_id = None
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and state_id != State.PRIMARY_STATE_ACTIVE:
                    future = client.call_async(GetState.Request())
                    executor.spin_until_future_complete(future, timeout_sec=10)
                    state_id = future.result().current_state.id
                    time.sleep(0.2)
                assert state_id == State.PRIMARY_STATE_ACTIVE, f"{instance.name} is in state {state_id}"
        for instance in graph.python_nodes:
            expected = instance.launch_parameters()
            client = probe.create_client(GetParameters, f"/{instance.name}/get_parameters")
            assert client.wait_for_service(timeout_sec=10)
            from rclpy.parameter import parameter_value_to_python
            for key, value in expected.items():
                # one request per key: a key the node does not declare comes back as no value at all
                future = client.call_async(GetParameters.Request(names=[key]))
                executor.spin_until_future_complete(future, timeout_sec=10)
                values = future.result().values
                assert len(values) == 1, f"{instance.name} does not declare '{key}' (given by the launch file)"
                got = parameter_value_to_python(values[0])
                if key == "port":
                    continue  # the simulator's link: a run-time value
                if isinstance(value, float):
                    assert got == pytest.approx(value), (instance.name, key)
                else:
                    assert (list(got) if isinstance(got, (list, tuple)) else got) == value, (instance.name, key)
    finally:
        executor.shutdown()
        probe.destroy_node()
        rclpy.try_shutdown(context=context)
        os.killpg(child.pid, signal.SIGINT)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
