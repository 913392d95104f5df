"""DART demonstrations through the real record graph (each node its own process): the scripted expert executes
perturbed setpoints, the bag holds both streams, and the converted dataset's actions are the expert's CLEAN setpoints
(the bag's action_source), never the perturbed ones the arm executed."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")
from rclpy.serialization import deserialize_message  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from roarm_recorder.expert_demos import record_expert_episodes, record_graph  # noqa: E402
from roarm_training.convert import ConvertOptions, convert  # noqa: E402

SMALL_CAMERA = {"sim_world.image_width": 96, "sim_world.image_height": 72}


def test_graph_records_and_labels_with_the_intended_setpoints(tmp_path):
    graph = record_graph(tmp_path, perturbation=0.05)
    recorder = graph.node("episode_recorder").parameters()
    assert recorder["command_topic"] == "expert/intended_trajectory"
    assert recorder["topics"][-1] == "expert/intended_trajectory" and "joint_trajectory" in recorder["topics"]
    assert len(recorder["topics"]) == len(recorder["topic_types"])
    assert graph.node("scripted_expert").parameters()["perturbation_std"] == 0.05
    plain = record_graph(tmp_path).node("episode_recorder").parameters()
    assert plain["command_topic"] == "joint_trajectory" and "expert/intended_trajectory" not in plain["topics"]
    # missed grasps alone (no walk) are labelled with the clean plan too
    misses = record_graph(tmp_path, miss_fraction=0.3)
    assert misses.node("episode_recorder").parameters()["command_topic"] == "expert/intended_trajectory"
    expert = misses.node("scripted_expert").parameters()
    assert expert["perturbation_miss_fraction"] == 0.3 and expert["perturbation_std"] == 0.0
    assert record_graph(tmp_path).node("scripted_expert").parameters()["perturbation_miss_fraction"] == 0.0


def _setpoints(bag, topic):
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        return np.array([deserialize_message(bytes(raw), JointTrajectory).points[0].positions
                         for _, _, raw in reader.messages(connections=connections)])


@pytest.mark.slow
def test_perturbed_demonstration_converts_with_the_clean_labels(tmp_path):
    lines: list[str] = []
    bags = record_expert_episodes(tmp_path / "bags", [3], log=lines.append, overrides=SMALL_CAMERA,
                                  perturbation=0.05)
    assert len(bags) == 1, "\n".join(lines)  # the perturbed expert still picks the box
    custom = yaml.safe_load((bags[0] / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]
    assert custom["roarm_vla.action_source"] == "command:/expert/intended_trajectory"
    executed = _setpoints(bags[0], "/joint_trajectory")
    intended = _setpoints(bags[0], "/expert/intended_trajectory")
    assert len(executed) == len(intended) > 20
    offsets = np.abs(executed - intended)
    assert offsets[:, :5].max() > 0.01 and offsets[:, 5].max() == 0.0  # the arm joints were pushed, never the jaws

    result = convert(bags, ConvertOptions(out=tmp_path / "dataset", fps=10, use_videos=False, progress=False,
                                          max_dropped_fraction=0.5),  # camera gaps on a busy machine
                     log=lambda _m: None)
    assert result.episodes[0].report["action_source"] == "command:/expert/intended_trajectory"
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/dataset", root=tmp_path / "dataset")
    actions = np.stack([dataset[i]["action"].numpy() for i in range(len(dataset))])

    def nearest(rows, table):
        return np.abs(rows[:, None, :] - table[None, :, :].astype(np.float32)).max(axis=2).min(axis=1)

    assert nearest(actions, intended).max() < 1e-6  # every label is one of the clean setpoints
    assert nearest(actions, executed).max() > 0.01  # ... and some frames' labels are no executed setpoint


@pytest.mark.slow
def test_a_missed_first_grasp_is_recorded_with_its_recovery(tmp_path):
    lines: list[str] = []
    bags = record_expert_episodes(tmp_path / "bags", [4], log=lines.append, overrides=SMALL_CAMERA,
                                  miss_fraction=1.0)
    assert len(bags) == 1, "\n".join(lines)  # the expert missed, picked again and succeeded
    executed = _setpoints(bags[0], "/joint_trajectory")
    intended = _setpoints(bags[0], "/expert/intended_trajectory")
    gripper = intended[:, 5]
    closes = np.flatnonzero((gripper[1:] < 0.05) & (gripper[:-1] >= 0.05))  # the jaws reach closed: twice
    assert len(closes) == 2, np.round(gripper, 2).tolist()
    assert gripper[closes[0]:closes[1]].max() > 0.3  # reopened in between
    base_offset = np.abs(executed[:, 0] - intended[:, 0])
    assert 0.08 - 1e-6 <= base_offset[:closes[0] + 1].max() <= 0.14 + 1e-6  # the first close was off the box
    assert base_offset[closes[1]] < 1e-6  # the second was not
