"""episode_recorder in its own process over DDS: record / keep / discard / cancel, what the bag holds, a SIGKILL
mid-episode, and the failures an operator must see (missing folder, no permission, disk full)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")
from action_msgs.msg import GoalStatus  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from recorder_rig import Peer, start_node, stop_process, wait_for  # noqa: E402
from roarm_description import joints  # noqa: E402
from roarm_recorder.episode_bag import MARKER, is_complete  # noqa: E402

MODULE = "roarm_recorder.episode_recorder_node"
TOPICS = ["camera/image_raw", "joint_states", "joint_trajectory", "leader/joint_states"]
TYPES = ["sensor_msgs/msg/Image", "sensor_msgs/msg/JointState", "trajectory_msgs/msg/JointTrajectory",
         "sensor_msgs/msg/JointState"]


def recorder_params(output_dir: Path, **extra):
    params = {"output_dir": str(output_dir), "topics": TOPICS, "topic_types": TYPES, "diagnostics_period": 0.2,
              "silence_timeout": 0.5, "teleop_mode": "leader_follower", "parameter_nodes": ["recorder_test_peer"]}
    params.update(extra)
    return params


@pytest.fixture
def peer():
    p = Peer()
    yield p
    p.close()


def read_bag(path: Path):
    from rosbags.rosbag2 import Reader

    messages: dict[str, list[tuple[int, bytes]]] = {}
    with Reader(path) as reader:
        for connection, stamp, raw in reader.messages():
            messages.setdefault(connection.topic, []).append((stamp, bytes(raw)))
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    return messages, info


def wait_counts(peer: Peer, at_least: int, timeout: float = 60.0):
    return wait_for(lambda: peer.feedback and min(peer.feedback[-1].counts[:3]) >= at_least, timeout,
                    f"feedback with >= {at_least} messages on each published topic")


def test_record_keep_discard_and_cancel(tmp_path, peer):
    out = tmp_path / "episodes"
    out.mkdir()
    proc = start_node(MODULE, recorder_params(out), tmp_path / "recorder.log")
    try:
        peer.publish_stream(rate=30.0)
        # --- episode 0: kept through stop_episode(keep=true)
        handle = peer.start_episode("Pick up the white box")
        assert handle.accepted
        wait_counts(peer, 15)
        # the leader topic is configured but nobody publishes it: reported silent, never a crash
        assert peer.feedback[-1].silent_for[3] == -1.0
        wait_for(lambda: any(s.level == DiagnosticStatus.WARN and "leader/joint_states" in s.message
                             for s in peer.diagnostics[-5:]), 30, "WARN diagnostic naming the silent topic")
        reply = peer.stop(keep=True)
        status, result = peer.result(handle)
        assert reply.success and status == GoalStatus.STATUS_SUCCEEDED
        assert result.kept and result.end_reason == "stopped" and result.episode_index == 0
        bag = Path(result.bag_path)
        assert bag.parent == out.resolve() and is_complete(bag)
        messages, info = read_bag(bag)
        counts = dict(zip(result.topics, result.counts))
        assert result.frame_count == counts["camera/image_raw"] == len(messages["/camera/image_raw"]) >= 15
        assert counts["joint_states"] == len(messages["/joint_states"])
        assert reply.message_count == sum(result.counts)
        # raw CDR, as published: decodes to what the peer sent; receive-time stamps ascend
        first_state = deserialize_message(messages["/joint_states"][0][1], JointState)
        assert list(first_state.name) == list(joints.JOINT_NAMES)
        command = deserialize_message(messages["/joint_trajectory"][0][1], JointTrajectory)
        assert len(command.points) == 1
        image = deserialize_message(messages["/camera/image_raw"][-1][1], Image)
        assert (image.width, image.encoding) == (8, "rgb8")
        stamps = [t for t, _ in messages["/joint_states"]]
        assert stamps == sorted(stamps)
        custom = info["custom_data"]
        assert custom["roarm_vla.task"] == "Pick up the white box"
        assert custom["roarm_vla.teleop_mode"] == "leader_follower"
        assert custom["roarm_vla.robot_type"] == "roarm_m3" and custom["roarm_vla.joint_units"] == "radians"
        assert json.loads(custom["roarm_vla.joint_names"]) == list(joints.JOINT_NAMES)
        assert float(custom["roarm_vla.fps"]) == 30.0
        assert custom["roarm_vla.action_source"] == "command:/joint_trajectory"
        assert custom["roarm_vla.episode_index"] == "0" and custom["roarm_vla.outcome"] == "unknown"
        assert np.allclose(json.loads(custom["roarm_vla.start_pose"]), first_state.position)
        parameters = json.loads(custom["roarm_vla.parameters"])
        assert parameters["episode_recorder"]["output_dir"] == str(out)
        assert "recorder_test_peer" in parameters  # a graph node that answers its parameter services is stored
        # the publishers' QoS as rosbag2 stores it, and the type hash rclpy's publisher announces
        topics = {t["topic_metadata"]["name"]: t["topic_metadata"] for t in info["topics_with_message_count"]}
        assert topics["/camera/image_raw"]["offered_qos_profiles"][0]["reliability"] == "best_effort"
        assert topics["/joint_states"]["offered_qos_profiles"][0]["reliability"] == "reliable"
        published = peer.node.get_publishers_info_by_topic("/camera/image_raw")
        assert str(published[0].topic_type_hash) == topics["/camera/image_raw"]["type_description_hash"]

        # --- episode 1: discarded: nothing of it is left
        handle = peer.start_episode("Pick up the white box")
        wait_for(lambda: peer.feedback and peer.feedback[-1].episode_index == 1, 30, "episode 1 feedback")
        discarded_path = Path(peer.feedback[-1].bag_path)
        assert (discarded_path / MARKER).exists()  # marked while it is written
        reply = peer.stop(keep=False)
        status, result = peer.result(handle)
        assert reply.success and not result.kept and result.end_reason == "discarded"
        assert not discarded_path.exists()

        # --- a second goal while one runs is refused; cancelling discards
        handle = peer.start_episode("Pick up the white box")
        refused = peer.start_episode("another")
        assert handle.accepted and not refused.accepted
        wait_counts(peer, 3)
        cancel = handle.cancel_goal_async()
        wait_for(cancel.done, 30, "cancel reply")
        status, result = peer.result(handle)
        assert status == GoalStatus.STATUS_CANCELED and not result.kept and result.end_reason == "cancelled"

        # --- max_duration ends and keeps it
        handle = peer.start_episode("Pick up the white box", max_duration=1.0)
        status, result = peer.result(handle)
        assert status == GoalStatus.STATUS_SUCCEEDED and result.kept and result.end_reason == "max_duration"
        assert result.episode_index == 1  # discarded/cancelled folders are gone, so their numbers are free again
        assert sorted(p.name[:14] for p in out.iterdir()) == ["episode_000000", "episode_000001"]
    finally:
        assert stop_process(proc) == 0, (tmp_path / "recorder.log").read_text()


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def test_sigkill_mid_episode_loses_no_finished_episode(tmp_path, peer):
    out = tmp_path / "episodes"
    out.mkdir()
    proc = start_node(MODULE, recorder_params(out), tmp_path / "recorder.log")
    peer.publish_stream(rate=30.0, image_size=64)
    try:
        handle = peer.start_episode()
        wait_counts(peer, 10)
        peer.stop(keep=True)
        _, first = peer.result(handle)
        finished = Path(first.bag_path)
        before = _tree_digest(finished)
        handle = peer.start_episode()
        wait_for(lambda: peer.feedback and peer.feedback[-1].episode_index == 1 and min(peer.feedback[-1].counts[:3]) >= 40, 60,
                 "episode 1 under way")
        partial = Path(peer.feedback[-1].bag_path)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    # the finished episode is complete and byte-for-byte untouched; the partial one is marked incomplete
    assert is_complete(finished) and _tree_digest(finished) == before
    messages, _ = read_bag(finished)
    assert len(messages["/camera/image_raw"]) == first.frame_count
    assert (partial / MARKER).exists() and not is_complete(partial)
    # the converter's bag finder takes the finished one and skips the partial one, saying why
    bags_module = pytest.importorskip("roarm_training.bags")
    found, skipped = bags_module.find_bags([out])
    assert found == [finished]
    assert [s.path for s in skipped] == [partial] and "RECORDING_INCOMPLETE" in skipped[0].reason
    # a restarted recorder never reuses the partial episode's number nor touches either folder. A new peer
    # (participant): the old one still believes in the killed server until its DDS lease runs out.
    peer.close()
    fresh = Peer("recorder_test_peer_2")
    proc = start_node(MODULE, recorder_params(out), tmp_path / "recorder2.log")
    try:
        fresh.publish_stream(rate=30.0)
        handle = fresh.start_episode()
        wait_counts(fresh, 3)
        fresh.stop(keep=True)
        _, third = fresh.result(handle)
        assert third.kept and third.episode_index == 2
        assert _tree_digest(finished) == before and (partial / MARKER).exists()
    finally:
        stop_process(proc)
        fresh.close()


def _mount(target: Path, options: str) -> bool:
    target.mkdir(exist_ok=True)
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                                                capture_output=True).returncode == 0


def _expect_failed_goal(peer: Peer, expected: str):
    handle = peer.start_episode()
    status, result = peer.result(handle)
    assert status == GoalStatus.STATUS_ABORTED and not result.kept and result.end_reason == "error"
    assert expected in result.message, result.message
    wait_for(lambda: any(s.level == DiagnosticStatus.ERROR and expected in s.message for s in peer.diagnostics[-5:]),
             10, f"ERROR diagnostic saying {expected!r}")
    return result


def test_missing_folder_and_no_permission_fail_the_goal_with_an_error_diagnostic(tmp_path, peer):
    missing = tmp_path / "not_there"
    proc = start_node(MODULE, recorder_params(missing), tmp_path / "recorder.log")
    try:
        peer.publish_stream(rate=30.0)
        _expect_failed_goal(peer, "does not exist")
        missing.mkdir()  # fixed by the operator: the next episode records and the ERROR clears
        handle = peer.start_episode()
        wait_counts(peer, 3)
        peer.stop(keep=True)
        assert peer.result(handle)[1].kept
        wait_for(lambda: peer.diagnostics and peer.diagnostics[-1].level != DiagnosticStatus.ERROR, 30,
                 "ERROR cleared after a good episode")
    finally:
        stop_process(proc)
    locked = tmp_path / "locked"
    mounted = _mount(locked, "ro,size=64k")
    if not mounted:
        locked.mkdir(exist_ok=True)
        locked.chmod(0o555)
    proc = start_node(MODULE, recorder_params(locked), tmp_path / "recorder2.log")
    try:
        _expect_failed_goal(peer, "no permission")
    finally:
        stop_process(proc)
        if mounted:
            subprocess.run(["umount", str(locked)], check=False)


def test_disk_full_mid_episode_fails_the_goal_and_keeps_earlier_episodes(tmp_path, peer):
    tiny = tmp_path / "tiny"
    if not _mount(tiny, "size=1m"):
        pytest.skip("needs root to mount a 1 MiB tmpfs (manual check in the README: 'Disk full')")
    proc = start_node(MODULE, recorder_params(tiny), tmp_path / "recorder.log")
    try:
        peer.publish_stream(rate=30.0, image_size=8, noisy_images=True)  # the bag's zstd cannot shrink them
        handle = peer.start_episode()
        wait_counts(peer, 5)
        peer.stop(keep=True)
        _, small = peer.result(handle)
        assert small.kept
        peer.feedback.clear()
        peer._image_size = 96  # 27 KB frames: the 1 MiB file system fills within seconds
        result = _expect_failed_goal(peer, "disk full")
        assert result.bag_path and (Path(result.bag_path) / MARKER).exists()
        assert is_complete(Path(small.bag_path))
    finally:
        stop_process(proc)
        subprocess.run(["umount", str(tiny)], check=False)
