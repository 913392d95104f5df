"""The plain-Python runner, one process per node: the command lines it builds, the parameters each node process
holds (asked over the node's own parameter services), lifecycle through the standard services, a dead node
reported or respawned, clean stops, topics flowing end to end."""

import dataclasses
import math
import os
import signal
import time

import pytest

pytest.importorskip("rclpy")
from roarm_vla_bringup import graph as g  # noqa: E402
from roarm_vla_bringup.runner import GraphRunner, NodeExited, main, node_ros_args, parse_sets  # noqa: E402


def _assert_received(runner: GraphRunner, name: str):
    """Every value the graph hands node `name` (YAML layers, launch-only values, overrides) is what its process holds."""
    expected = runner.graph.node(name).launch_parameters()
    declared = set(runner.list_parameters(name))
    undeclared = sorted(k for k in expected if k not in declared)
    assert not undeclared, f"{name}: YAML/override keys the node does not declare (silently lost): {undeclared}"
    got = runner.get_parameters(name, sorted(expected))
    for key, value in expected.items():
        if isinstance(value, float) or isinstance(got[key], float):
            assert math.isclose(float(got[key]), float(value)), (name, key, got[key], value)
        elif isinstance(value, list):
            assert list(got[key]) == value, (name, key, got[key], value)
        else:
            assert got[key] == value, (name, key, got[key], value)


def _assert_clean_exit(runner: GraphRunner, names):
    for name in names:
        proc = runner.processes[name]
        assert proc.returncode == 0, (name, proc.returncode, proc.output()[-3000:])
        assert "Traceback" not in proc.output(), (name, proc.output()[-3000:])


def test_node_ros_args_carry_files_overrides_and_remaps():
    graph = g.load_graph("pick", sim=True, overrides={"vla_policy.ema_alpha": "0.5"})
    policy = graph.node("vla_policy")
    args = node_ros_args(policy)
    assert args[:3] == ["--ros-args", "-r", "__node:=vla_policy"]
    assert args[3:5] == ["--params-file", str(g.config_path("vla_policy.yaml"))]
    assert args[args.index("ema_alpha:=0.5") - 1] == "-p"
    ghost = graph.node("predicted_state_publisher")
    assert "joint_states:=vla/predicted_joint_states" in node_ros_args(ghost)
    assert parse_sets(['task:="Pick up"', "vla_policy.ema_alpha:=0.5"]) == {"task": '"Pick up"',
                                                                             "vla_policy.ema_alpha": "0.5"}


def test_node_process_holds_its_layered_parameters_and_stops_cleanly():
    graph = g.load_graph("pick", sim=True, overrides={"action_visualizer.line_width": "0.02",
                                                      "action_visualizer.start_color": "[0.0, 0.0, 1.0, 1.0]"})
    lines = []
    with GraphRunner(graph, log=lines.append, only={"action_visualizer"}) as runner:
        assert set(runner.processes) == {"action_visualizer"}
        _assert_received(runner, "action_visualizer")
        values = runner.get_parameters("action_visualizer", ["line_width", "ghost_rate"])
        assert values == {"line_width": 0.02, "ghost_rate": 10.0}  # override; YAML value where nothing overrides
        assert runner.simulator.running() and runner.firmware.connected
        pid = runner.processes["action_visualizer"].pid
    assert pid != os.getpid()
    assert not runner.simulator.running() and runner.simulator.returncode == 0
    _assert_clean_exit(runner, ["action_visualizer"])
    assert any("robot_state_publisher" in line and "C++" in line for line in lines)
    assert any(line.startswith("[action_visualizer] ") for line in lines)  # output prefixed with the node name


def test_a_node_that_dies_is_named_with_its_exit_code_and_the_graph_stops():
    graph = g.load_graph("pick", sim=True)
    lines = []
    with GraphRunner(graph, log=lines.append, only={"action_visualizer"}) as runner:
        runner.get_parameters("action_visualizer", ["line_width"])  # up and serving
        runner.processes["action_visualizer"].signal(signal.SIGKILL)
        with pytest.raises(NodeExited, match=r"action_visualizer exited with code -9"):
            runner.spin_for(20.0)
        deadline = time.monotonic() + 30.0
        while runner.simulator.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not runner.simulator.running()  # the rest of the graph was stopped
    assert any("action_visualizer exited with code -9; stopping the graph" in line for line in lines)


def test_a_respawning_node_is_started_again():
    graph = g.load_graph("pick", sim=True)
    node = graph.node("action_visualizer")
    node.spec = dataclasses.replace(node.spec, respawn=True, respawn_delay=0.2)
    lines = []
    with GraphRunner(graph, log=lines.append, only={"action_visualizer"}) as runner:
        proc = runner.processes["action_visualizer"]
        first_pid = proc.pid
        proc.signal(signal.SIGKILL)
        deadline = time.monotonic() + 30.0
        while (proc.starts < 2 or not proc.running()) and time.monotonic() < deadline:
            runner.spin_for(0.1)
        assert proc.starts == 2 and proc.pid != first_pid
        _assert_received(runner, "action_visualizer")  # the new process got the same parameters
        runner.check()  # no failure recorded
    assert any("action_visualizer exited with code -9; respawning" in line for line in lines)


def test_a_node_that_fails_to_configure_is_named_with_its_own_error_line(tmp_path):
    # the runner's children may be quiet (the pipeline's trials): the failure must say why by itself
    graph = g.load_graph("pick", sim=True, controller="policy",
                         overrides={"checkpoint": str(tmp_path / "no_such_checkpoint")})
    with pytest.raises(RuntimeError, match=r"vla_policy: configure failed: .*ERROR.*no_such_checkpoint"):
        with GraphRunner(graph, log=lambda _m: None, only={"vla_policy"}):
            pass


def test_a_respawned_node_gets_the_wanted_enable_state_again():
    """The episode loop's PolicySwitch, as a respawn hook: after the watched node comes back, the state last asked
    for is sent again over a real SetBool service (here served by the test, the watched node a cheap one)."""
    from std_srvs.srv import SetBool

    from roarm_vla_bringup.sim_episodes import PolicySwitch

    graph = g.load_graph("pick", sim=True)
    node = graph.node("action_visualizer")
    node.spec = dataclasses.replace(node.spec, respawn=True, respawn_delay=0.2)
    with GraphRunner(graph, log=lambda _m: None, only={"action_visualizer"}) as runner:
        server = runner.create_node("enable_server")
        received = []

        def serve(request, response):
            received.append(request.data)
            response.success = True
            return response

        server.create_service(SetBool, "vla/enable", serve)
        switch = PolicySwitch(runner.create_node("episode_loop"), node_name="action_visualizer")
        hooked = []
        runner.respawn_hooks += [hooked.append, switch.reapply]
        switch.set(False)
        assert received == [False]
        switch.reapply("some_other_node")  # not the watched node: nothing sent
        proc = runner.processes["action_visualizer"]
        proc.signal(signal.SIGKILL)
        deadline = time.monotonic() + 30.0
        while len(received) < 2 and time.monotonic() < deadline:
            runner.spin_for(0.1)
        assert hooked == ["action_visualizer"] and proc.starts == 2
        assert received == [False, False]  # the respawned process is told it is disabled


@pytest.mark.slow
def test_sigint_at_any_moment_ends_every_node_with_status_zero():
    # However the signal lands (right after activation, while images and plans flow), the nodes exit 0 without a
    # traceback, and the driver, stopped before the simulator, logs no false "serial link lost".
    graph = g.load_graph("pick", sim=True, controller="expert")
    names = [n.name for n in graph.python_nodes]
    for delay in (0.0, 0.7, 1.9, 3.1):
        with GraphRunner(graph, log=lambda _: None) as runner:
            runner.spin_for(delay)
        _assert_clean_exit(runner, names)
        assert "serial link lost" not in runner.output("arm_driver")


@pytest.mark.slow
def test_every_python_node_receives_its_parameters_and_lifecycle_nodes_are_active():
    graph = g.load_graph("pick", sim=True, controller="expert")
    names = [n.name for n in graph.python_nodes]
    with GraphRunner(graph, log=lambda _: None) as runner:
        for name in names:
            _assert_received(runner, name)
        lifecycle = [n for n in names if graph.node(n).spec.lifecycle]
        assert lifecycle and runner.activated == lifecycle
        assert all(runner.lifecycle_state(n) == "active" for n in lifecycle)
    _assert_clean_exit(runner, names)
    # the driver stops before the simulator: no false alarm about the serial line at shutdown
    assert "serial link lost" not in runner.output("arm_driver")


@pytest.mark.slow
def test_sim_expert_graph_topics_flow_end_to_end():
    graph = g.load_graph("pick", sim=True, controller="expert")
    topics = ("joint_states", "camera/image_raw", "camera/camera_info", "sim/box_pose", "joint_trajectory",
              "diagnostics")
    with GraphRunner(graph, log=lambda _: None) as runner:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and not all(runner.topic_counts()[t] for t in topics):
            runner.spin_for(0.5)
        counts = runner.topic_counts()
        driver = runner.diagnostics("arm_driver")
    for topic in topics:
        assert counts[topic] > 0, f"nothing on {topic}: {counts}"
    assert driver, "no diagnostics from arm_driver"


@pytest.mark.slow
def test_sim_policy_graph_shows_predicted_actions(tmp_path):
    # The whole pick graph with a tiny random SmolVLA (offline), each node its own process: plans reach the
    # visualizer, markers and the ghost pose come out, while the arm and the simulated camera keep streaming.
    tiny = pytest.importorskip("roarm_training.small_smolvla")
    checkpoint = tiny.build_tiny_checkpoint(tmp_path / "ckpt")
    graph = g.load_graph("pick", sim=True, overrides={"checkpoint": str(checkpoint), "task": "Pick up the white box"})
    with GraphRunner(graph, log=lambda _: None) as runner:
        assert runner.activated == ["arm_driver", "vla_policy"]
        runner.wait_for_topic("vla/markers", count=2, timeout=120.0)
        counts = runner.topic_counts()
    for topic in ("joint_states", "camera/image_raw", "joint_trajectory", "vla/markers",
                  "vla/predicted_joint_states", "sim/box_pose"):
        assert counts[topic] > 0, f"nothing on {topic}: {counts}"


def test_cli_show_prints_the_graph(capsys):
    assert main(["show", "pick"]) == 0
    out = capsys.readouterr().out
    assert "lifecycle arm_driver" in out and "predicted_state_publisher" in out and "(launch only)" in out
