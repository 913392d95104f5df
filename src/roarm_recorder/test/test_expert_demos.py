"""record_expert_episodes: the record graph in sim (each node its own process under the runner), one reset per seed,
one bag per SUCCESS with the seed, start pose, outcome and the expert's commands; failures leave nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")
from rclpy.serialization import deserialize_message  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from roarm_recorder.episode_bag import is_complete, list_episodes  # noqa: E402
from roarm_recorder.expert_demos import main, record_expert_episodes, record_graph  # noqa: E402
from roarm_sim.scene import draw_episode  # noqa: E402

SMALL_CAMERA = {"sim_world.image_width": 96, "sim_world.image_height": 72}


def test_graph_keeps_only_successes_and_waits_for_resets(tmp_path):
    graph = record_graph(tmp_path, "sqlite3", {"sim_world.time_limit": 20.0})
    recorder = graph.node("episode_recorder").parameters()
    assert recorder["output_dir"] == str(tmp_path) and recorder["storage"] == "sqlite3"
    assert recorder["stop_on_outcome"] is True and recorder["keep_failed"] is False
    assert recorder["teleop_mode"] == "scripted_expert" and recorder["outcome_topic"] == "sim/episode_outcome"
    assert graph.node("sim_world").parameters()["auto_start"] is False
    assert graph.node("sim_world").parameters()["time_limit"] == 20.0
    assert "scripted_expert" in graph.node_names and "vla_policy" not in graph.node_names


def _read(bag):
    from rosbags.rosbag2 import Reader

    messages: dict[str, list[bytes]] = {}
    with Reader(bag) as reader:
        for connection, _, raw in reader.messages():
            messages.setdefault(connection.topic, []).append(bytes(raw))
    custom = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]
    return messages, custom


@pytest.mark.slow
def test_expert_episodes_one_bag_per_success(tmp_path):
    out = tmp_path / "bags"
    lines: list[str] = []
    # seed 3 with sim_world's own time limit: the expert picks the box (SUCCESS, kept)
    paths = record_expert_episodes(out, [3], log=lines.append, overrides=SMALL_CAMERA)
    assert len(paths) == 1, "\n".join(lines)
    bag = paths[0]
    assert bag.parent == out.resolve() and is_complete(bag)
    messages, custom = _read(bag)
    assert custom["roarm_vla.seed"] == "3" and custom["roarm_vla.outcome"] == "success"
    assert custom["roarm_vla.teleop_mode"] == "scripted_expert"
    assert custom["roarm_vla.task"] == "Pick up the white box"
    assert custom["roarm_vla.action_source"] == "command:/joint_trajectory"
    # the bag opens where the seed put the arm (the recording starts after the reset's move)
    start = np.array(json.loads(custom["roarm_vla.start_pose"]))
    drawn = draw_episode(3).start_pose
    assert np.abs(start[:5] - np.asarray(drawn)[:5]).max() < 0.1, (start, drawn)
    first_state = deserialize_message(messages["/joint_states"][0], JointState)
    assert np.allclose(first_state.position, start)
    commands = [deserialize_message(m, JointTrajectory) for m in messages["/joint_trajectory"]]
    assert len(commands) > 20 and len(messages["/camera/image_raw"]) > 20
    stored = json.loads(custom["roarm_vla.parameters"])
    assert stored["sim_world"]["image_width"] == 96 and stored["scripted_expert"]["enabled"] is True

    # a failed demonstration (time limit too short for the expert) is discarded: no new folder
    failed = record_expert_episodes(out, [4], log=lines.append,
                                    overrides={**SMALL_CAMERA, "sim_world.time_limit": 2.0})
    assert failed == []
    assert [p for p, _ in list_episodes(out)] == [bag]
    assert any("timeout, discarded" in line for line in lines), "\n".join(lines)


def test_cli_refuses_bad_counts(capsys):
    with pytest.raises(SystemExit):
        main(["--out", "/tmp/x", "--episodes", "0"])
    assert "--episodes must be >= 1" in capsys.readouterr().err
