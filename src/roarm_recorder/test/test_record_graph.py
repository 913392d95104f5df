"""The `record` graph of graph.py (read by record.launch.py and the runner): node sets per controller, parameters
from episode_recorder.yaml / teleop_relay.yaml, and the leader-follower graph in sim through the runner (every node
its own process): the simulated leader's motion reaches the follower through teleop_relay and the follower's
driver, and an episode recorded through the record_episode action holds command and state."""

from __future__ import annotations

import importlib
import math
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from roarm_vla_bringup import graph as g

RECORD_YAMLS = {"episode_recorder": "episode_recorder.yaml", "teleop_relay": "teleop_relay.yaml",
                "sim_leader": "teleop_relay.yaml", "leader_arm_driver": "teleop_relay.yaml"}
PARAMETER_TABLES = {"episode_recorder": "roarm_recorder.episode_recorder_node:PARAMETERS",
                    "teleop_relay": "roarm_recorder.teleop_relay_node:PARAMETERS",
                    "sim_leader": "roarm_recorder.sim_leader:_node_parameters",
                    "leader_arm_driver": "roarm_driver.arm_driver_node:PARAMETERS"}


def _table(path: str):
    module, _, attr = path.partition(":")
    value = getattr(importlib.import_module(module), attr)
    return {p.name: p for p in (value() if callable(value) else value)}


def test_record_graph_node_sets_per_controller():
    expert = g.load_graph("record", sim=True, controller="expert")
    assert expert.node_names == ["arm_driver", "sim_world", "scripted_expert", "robot_state_publisher",
                                 "episode_recorder"]
    assert {n.name for n in expert.nodes if n.spec.lifecycle} == {"arm_driver", "episode_recorder"}
    leader_sim = g.load_graph("record", sim=True, controller="leader")
    assert leader_sim.node_names == ["arm_driver", "sim_world", "robot_state_publisher", "sim_leader",
                                     "leader_arm_driver", "teleop_relay", "episode_recorder"]
    assert "leader/joint_states" in leader_sim.topic_names
    leader_real = g.load_graph("record", controller="leader")
    assert leader_real.node_names == ["arm_driver", "camera_publisher", "robot_state_publisher",
                                      "leader_arm_driver", "teleop_relay", "episode_recorder"]
    hand = g.load_graph("record", controller="hand")
    assert hand.node_names == ["arm_driver", "camera_publisher", "robot_state_publisher", "episode_recorder"]
    assert "vla/markers" not in g.load_graph("record").topic_names  # no action_visualizer in the record graph
    with pytest.raises(ValueError, match="needs the simulated world"):
        g.load_graph("record", controller="expert")
    with pytest.raises(ValueError, match="controller must be one of"):
        g.load_graph("pick", controller="leader")  # the pick graph is unchanged: policy or expert only


def test_recorder_parameters_follow_the_controller_and_sim():
    modes = {c: g.load_graph("record", sim=c == "expert", controller=c).node("episode_recorder").parameters()
             for c in g.RECORD_CONTROLLERS}
    assert {c: p["teleop_mode"] for c, p in modes.items()} == {
        "policy": "policy", "expert": "scripted_expert", "leader": "leader_follower", "hand": "hand_guiding"}
    assert modes["expert"]["outcome_topic"] == "sim/episode_outcome" and modes["expert"]["stop_on_outcome"]
    assert modes["leader"]["outcome_topic"] == "" and not modes["leader"]["stop_on_outcome"]
    # everything else comes from the YAML, the one source of truth
    yaml_values = g.yaml_section(g.config_path("episode_recorder.yaml"), "episode_recorder")
    assert modes["leader"]["topics"] == yaml_values["topics"] and modes["leader"]["fps"] == yaml_values["fps"]
    # the user's choice still wins over the graph's
    graph = g.load_graph("record", sim=True, controller="expert",
                         overrides={"episode_recorder.stop_on_outcome": "false", "output_dir": "/data/eps",
                                    "storage": "sqlite3"})
    params = graph.node("episode_recorder").parameters()
    assert params["stop_on_outcome"] is False and params["output_dir"] == "/data/eps" and params["storage"] == "sqlite3"


def test_sim_world_moves_the_arm_to_its_start_pose_only_when_no_person_drives_it():
    moves = {c: g.load_graph("record", sim=True, controller=c).node("sim_world").parameters()["reset_move_arm"]
             for c in g.RECORD_CONTROLLERS}
    yaml_value = g.yaml_section(g.config_path("sim_world.yaml"), "sim_world")["reset_move_arm"]
    assert yaml_value is True
    assert moves == {"policy": True, "expert": True, "leader": False, "hand": False}
    assert g.load_graph("pick", sim=True, controller="policy").node("sim_world").parameters()["reset_move_arm"]


def test_leader_driver_ports_and_remaps():
    real = g.load_graph("record", controller="leader", overrides={"leader_port": "/dev/ttyUSB7",
                                                                  "serial_port": "/dev/ttyUSB6"})
    assert real.node("leader_arm_driver").parameters()["port"] == "/dev/ttyUSB7"
    assert real.node("arm_driver").parameters()["port"] == "/dev/ttyUSB6"
    remaps = dict(real.node("leader_arm_driver").spec.remappings)
    # the relay's commands, sim_world's reset moves and e-stops must never reach the leader
    assert remaps["joint_trajectory"] == "leader/joint_trajectory" and remaps["move_joints"] == "leader/move_joints"
    assert remaps["joint_states"] == "leader/joint_states" and remaps["set_torque"] == "leader/set_torque"
    assert real.node("teleop_relay").parameters()["leader_torque_service"] == "leader/set_torque"
    sim = g.load_graph("record", sim=True, controller="leader", overrides={"sim_leader.link": "/tmp/x_leader"})
    assert sim.node("leader_arm_driver").parameters()["port"] == "/tmp/x_leader"
    with pytest.raises(ValueError, match="unknown override 'leader_port'"):
        g.load_graph("pick", overrides={"leader_port": "/dev/ttyUSB1"})


def test_record_yamls_match_the_declared_parameters():
    from roarm_common.parameters import check_value, compatible

    for node, file_name in RECORD_YAMLS.items():
        values = g.yaml_section(g.config_path(file_name), node)
        table = _table(PARAMETER_TABLES[node])
        assert values, f"{file_name} has no section {node}"
        unknown = sorted(set(values) - set(table))
        assert not unknown, f"{file_name}/{node}: keys the node does not declare: {unknown}"
        for key, value in values.items():
            assert compatible(table[key], value), (node, key, value)
            assert not check_value(table[key], value), (node, key, value)
        if node in ("episode_recorder", "teleop_relay", "sim_leader"):  # the nodes' own files list every key
            assert set(values) == set(table), (node, sorted(set(table) - set(values)))


def test_record_launch_file_reads_the_graph_table():
    # record.launch.py is evaluated by test_launch-style checks where `launch` is installed; here: it exists, is
    # the record graph's, and declares every record launch argument through graph.py (no list of its own).
    text = g.share_path("launch", "record.launch.py").read_text()
    assert 'GRAPH = "record"' in text and "graph.launch_args(GRAPH)" in text and "graph.RECORD_FLAG_ARGS" in text
    pytest.importorskip("launch", reason="ROS 2 'launch' is not installed (not on PyPI)")
    pytest.importorskip("launch_ros")
    import importlib.util

    from launch import LaunchContext

    spec = importlib.util.spec_from_file_location("record_launch", g.share_path("launch", "record.launch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = LaunchContext()
    context.launch_configurations.update({"sim": "true", "controller": "leader"})
    actions = []
    for entity in description.entities:
        actions += entity.visit(context) or []
    names = {getattr(a, "node_name", None) for a in actions}
    assert {"episode_recorder", "teleop_relay", "leader_arm_driver", "sim_leader"} <= {str(n).lstrip("/")
                                                                                       for n in names if n}


# ------------------------------------------------------------------------------------------------ through the runner
SMALL_CAMERA = {"sim_world.image_width": "64", "sim_world.image_height": "48"}


def _read_bag(bag_path: str) -> tuple[dict[str, list[bytes]], dict[str, str]]:
    """Raw messages per topic (rosbags' reader) and the bag's custom_data (metadata.yaml)."""
    from rosbags.rosbag2 import Reader

    messages: dict[str, list[bytes]] = {}
    with Reader(bag_path) as reader:
        for connection, _, raw in reader.messages():
            messages.setdefault(connection.topic, []).append(bytes(raw))
    info = yaml.safe_load((Path(bag_path) / "metadata.yaml").read_text())
    return messages, info["rosbag2_bagfile_information"]["custom_data"]


@pytest.mark.slow
def test_leader_follower_sim_graph_records_command_and_state(tmp_path):
    pytest.importorskip("rclpy")
    from action_msgs.msg import GoalStatus
    from roarm_common.action_client import ActionClient  # rclpy 7 can lose an answer (see the module)
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from roarm_interfaces.action import RecordEpisode
    from roarm_interfaces.srv import StopEpisode
    from roarm_vla_bringup.runner import GraphRunner
    from recorder_rig import wait_for

    out = tmp_path / "episodes"
    out.mkdir()
    graph = g.load_graph("record", sim=True, controller="leader",
                         overrides={"sim_leader.link": str(tmp_path / "leader"), "output_dir": str(out),
                                    "sim_leader.period": "4.0", "sim_world.camera_rate": "10.0", **SMALL_CAMERA})
    lines: list[str] = []
    with GraphRunner(graph, log=lines.append) as runner:
        for name in ("episode_recorder", "teleop_relay", "sim_leader", "leader_arm_driver"):
            expected = graph.node(name).launch_parameters()  # YAML layers, autostart false, overrides
            got = runner.get_parameters(name, sorted(expected))
            for key, value in expected.items():
                assert got[key] == value or (isinstance(value, float) and math.isclose(got[key], value)), \
                    (name, key, got[key], value)
        assert runner.activated == ["arm_driver", "leader_arm_driver", "episode_recorder"]
        runner.wait_for_topic("leader/joint_states", 20, timeout=60.0)
        runner.wait_for_topic("joint_trajectory", 20, timeout=60.0)  # the relay streams the leader to the follower
        node = runner.create_node("record_graph_test")
        action = ActionClient(node, RecordEpisode, "record_episode")
        stop = node.create_client(StopEpisode, "stop_episode")
        assert action.wait_for_server(timeout_sec=30.0)
        goal = action.send_goal_async(RecordEpisode.Goal(task="Wave the arm", max_duration=0.0))
        wait_for(goal.done, 20, "goal accepted")
        handle = goal.result()
        assert handle.accepted
        runner.spin_for(4.0)
        assert stop.wait_for_service(timeout_sec=10.0)
        reply = stop.call_async(StopEpisode.Request(keep=True))
        wait_for(reply.done, 30, "stop reply")
        result_future = handle.get_result_async()
        wait_for(result_future.done, 30, "result")
        wrapped = result_future.result()
    assert wrapped.status == GoalStatus.STATUS_SUCCEEDED, wrapped.result.message
    result = wrapped.result
    assert result.kept and result.frame_count > 0
    messages, custom = _read_bag(result.bag_path)
    assert custom["roarm_vla.teleop_mode"] == "leader_follower"
    assert custom["roarm_vla.action_source"] == "command:/joint_trajectory"
    stored = yaml.safe_load(custom["roarm_vla.parameters"])
    assert {"arm_driver", "leader_arm_driver", "teleop_relay", "sim_world", "episode_recorder"} <= set(stored)
    commands = np.array([deserialize_message(m, JointTrajectory).points[0].positions
                         for m in messages["/joint_trajectory"]])
    states = np.array([deserialize_message(m, JointState).position for m in messages["/joint_states"]])
    assert len(commands) >= 30 and len(states) >= 30
    # the leader waves the base by +-0.5 rad: the commands and the follower's measured base follow it
    assert np.ptp(commands[:, 0]) > 0.3 and np.ptp(states[:, 0]) > 0.3


@pytest.mark.slow
def test_hand_guiding_sim_graph_switches_torque_and_records_the_guided_motion(tmp_path):
    # controller hand: no command stream; the recorder switches the arm's torque off for the episode (the person
    # moves it: here the firmware simulator's guide(), what a hand does) and back on at the end.
    pytest.importorskip("rclpy")
    from roarm_common.action_client import ActionClient  # rclpy 7 can lose an answer (see the module)
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import JointState

    from roarm_interfaces.action import RecordEpisode
    from roarm_vla_bringup.runner import GraphRunner
    from recorder_rig import wait_for

    graph = g.load_graph("record", sim=True, controller="hand",
                         overrides={"output_dir": str(tmp_path), "episode_recorder.stop_on_outcome": False,
                                    "sim_world.auto_start": False, **SMALL_CAMERA})
    assert "scripted_expert" not in graph.node_names and "teleop_relay" not in graph.node_names
    with GraphRunner(graph, log=lambda _m: None) as runner:
        firmware = getattr(runner, "firmware", None)
        if firmware is None:
            pytest.skip("this runner has no firmware control (SimulatorControl)")
        runner.wait_for_topic("joint_states", 10, timeout=60.0)
        assert firmware.torque_on
        node = runner.create_node("hand_guiding_test")
        action = ActionClient(node, RecordEpisode, "record_episode")
        assert action.wait_for_server(timeout_sec=60.0)
        goal = action.send_goal_async(RecordEpisode.Goal(task="Wave by hand", max_duration=4.0))
        wait_for(goal.done, 30, "goal accepted")
        wait_for(lambda: not firmware.torque_on, 20, "torque off once the episode started")
        start = np.array(firmware.joints, dtype=float)
        t0 = time.monotonic()
        result_future = goal.result().get_result_async()
        while not result_future.done():  # the hand turns the base slowly (0.3 rad/s) until the episode ends
            t = time.monotonic() - t0
            firmware.guide(start + np.array([0.3 * min(t, 3.0), 0, 0, 0, 0, 0]))
            runner.spin_for(0.05)
        result = result_future.result().result
        wait_for(lambda: firmware.torque_on, 20, "torque back on after the episode")
    assert result.kept and result.end_reason == "max_duration", result.message
    counts = dict(zip(result.topics, result.counts))
    assert counts["joint_trajectory"] == 0 and counts["joint_states"] > 20
    messages, custom = _read_bag(result.bag_path)
    assert custom["roarm_vla.teleop_mode"] == "hand_guiding" and custom["roarm_vla.action_source"] == "next_state"
    base = [deserialize_message(raw, JointState).position[0] for raw in messages["/joint_states"]]
    assert base[-1] - base[0] > 0.5  # the guided turn (up to 0.9 rad) is in the recorded state
