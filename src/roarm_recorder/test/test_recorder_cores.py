"""ROS-free cores of roarm_recorder: the episode bag (contract, rosbag2 format, errors), episode bookkeeping, the
leader -> follower setpoint rule, the scripted leader's path. Hand-worked numbers; real rosbags files."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from roarm_description import joints
from roarm_recorder.episode_bag import (
    CUSTOM_KEYS,
    MARKER,
    EpisodeBag,
    EpisodeMetadata,
    RecordingError,
    TopicRecord,
    action_source_for,
    is_complete,
    list_episodes,
    read_custom_data,
    next_episode_index,
)
from roarm_recorder.recorder_core import OutcomeTracker, TopicActivity, end_reason
from roarm_recorder.relay_core import FollowerStream, RelayConfig
from roarm_recorder.sim_leader import START_POSE, leader_pose

JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE = "sensor_msgs/msg/Image"
RELIABLE = {"history": "keep_last", "depth": 10, "reliability": "reliable", "durability": "volatile"}
# What Fast DDS reports for a remote publisher (and rosbag2's own recorder stores): unknown history, depth 0,
# infinite durations as 9223372036 s + 854775807 ns.
INFINITE = (9223372036, 854775807)
REMOTE_BEST_EFFORT = {"history": "unknown", "depth": 0, "reliability": "best_effort", "durability": "volatile",
                      "deadline": INFINITE, "lifespan": INFINITE, "liveliness": "automatic",
                      "liveliness_lease_duration": INFINITE}


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def joint_state_cdr(positions, stamp_ns: int = 0) -> bytes:
    store = _typestore()
    types = store.types
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="")
    msg = types[JOINT_STATE](header=header, name=list(joints.JOINT_NAMES), position=np.asarray(positions, float),
                             velocity=np.array([], float), effort=np.array([], float))
    return bytes(store.serialize_cdr(msg, JOINT_STATE))


def metadata(**overrides) -> EpisodeMetadata:
    values = dict(task="Pick up the white box", joint_names=joints.JOINT_NAMES, fps=30.0,
                  teleop_mode="leader_follower", action_source="command:/joint_trajectory", episode_index=4,
                  parameters={"arm_driver": {"max_step": 0.2}}, seed=7, start_pose=[0.0] * 6, outcome="success")
    values.update(overrides)
    return EpisodeMetadata(**values)


def write_episode(folder: Path, name: str = "episode_000004_x", storage: str = "mcap", n: int = 5) -> Path:
    bag = EpisodeBag(folder, name, storage)
    bag.open([TopicRecord("/joint_states", JOINT_STATE, (RELIABLE,)),
              TopicRecord("/camera/image_raw", IMAGE, (REMOTE_BEST_EFFORT,))])
    assert (bag.path / MARKER).exists() and not is_complete(bag.path)
    for i in range(n):
        bag.write("/joint_states", 1_000_000_000 + i * 20_000_000, joint_state_cdr([0.1 * i] * 6))
    assert bag.counts == {"/joint_states": n, "/camera/image_raw": 0}
    return bag.close(metadata())


# ------------------------------------------------------------------------------------------------- the bag
@pytest.mark.parametrize("storage, suffix", [("mcap", ".mcap"), ("sqlite3", ".db3")])
def test_episode_bag_round_trip_raw_bytes_and_contract_metadata(tmp_path, storage, suffix):
    from rosbags.rosbag2 import Reader

    path = write_episode(tmp_path, storage=storage)
    assert is_complete(path) and not (path / MARKER).exists()
    assert (path / f"{path.name}{suffix}").is_file()
    with Reader(path) as reader:
        got = [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]
    custom = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]
    # the bytes written are the bytes read back, at the receive times given
    assert got == [("/joint_states", 1_000_000_000 + i * 20_000_000, joint_state_cdr([0.1 * i] * 6))
                   for i in range(5)]
    assert set(custom) == {f"roarm_vla.{k}" for k in CUSTOM_KEYS}
    assert all(isinstance(v, str) for v in custom.values())
    assert custom["roarm_vla.task"] == "Pick up the white box"
    assert json.loads(custom["roarm_vla.joint_names"]) == list(joints.JOINT_NAMES)
    assert custom["roarm_vla.joint_units"] == "radians" and custom["roarm_vla.robot_type"] == "roarm_m3"
    assert custom["roarm_vla.fps"] == "30" and custom["roarm_vla.seed"] == "7"
    assert custom["roarm_vla.episode_index"] == "4" and custom["roarm_vla.outcome"] == "success"
    assert json.loads(custom["roarm_vla.parameters"]) == {"arm_driver": {"max_step": 0.2}}
    # the reader gives the same values back, without the prefix; a folder without metadata gives nothing
    assert read_custom_data(path) == {k[len("roarm_vla."):]: v for k, v in custom.items()}
    assert read_custom_data(path)["seed"] == "7" and read_custom_data(tmp_path / "missing") == {}


def image_cdr(rows: int = 120, cols: int = 160, stamp_ns: int = 0) -> bytes:
    """An rgb8 frame like the sim camera's: flat colour areas (a table, a box)."""
    types = _typestore().types
    pixels = np.zeros((rows, cols, 3), np.uint8)
    pixels[:, :] = (90, 110, 80)
    pixels[rows // 3: rows // 2, cols // 3: cols // 2] = 255
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="cam")
    msg = types[IMAGE](header=header, height=rows, width=cols, encoding="rgb8", is_bigendian=0, step=cols * 3,
                       data=pixels.reshape(-1))
    return bytes(_typestore().serialize_cdr(msg, IMAGE))


@pytest.mark.parametrize("storage, metadata_compression", [("mcap", ("", "")), ("sqlite3", ("zstd", "message"))])
def test_zstd_bags_read_back_the_same_bytes_in_less_space(tmp_path, storage, metadata_compression):
    """compression zstd: MCAP compresses chunks (metadata.yaml says nothing, as rosbag2 writes it), sqlite3 each
    message (metadata.yaml says zstd/message, which rosbag2 decompresses on reading); the bytes read back are the
    bytes written, and the converter's bag reader reads them."""
    from rosbags.rosbag2 import Reader

    find_bags = pytest.importorskip("roarm_training.bags").find_bags
    frames = [image_cdr(stamp_ns=i) for i in range(30)]
    sizes = {}
    for compression in ("none", "zstd"):
        bag = EpisodeBag(tmp_path / compression, "episode_000000_x", storage, compression)
        (tmp_path / compression).mkdir()
        bag.open([TopicRecord("/camera/image_raw", IMAGE, (REMOTE_BEST_EFFORT,))])
        for i, frame in enumerate(frames):
            bag.write("/camera/image_raw", 1_000_000_000 + i * 33_000_000, frame)
        path = bag.close(metadata())
        sizes[compression] = sum(f.stat().st_size for f in path.iterdir() if f.suffix in (".mcap", ".db3"))
        with Reader(path) as reader:
            assert [bytes(raw) for _, _, raw in reader.messages()] == frames
        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        expected = metadata_compression if compression == "zstd" else ("", "")
        assert (info["compression_format"], info["compression_mode"]) == expected
        assert find_bags([tmp_path / compression])[0] == [path]
    assert sizes["zstd"] * 10 < sizes["none"]  # flat colours: far smaller (the sim's frames: about 65x)
    with pytest.raises(ValueError, match="compression must be one of"):
        EpisodeBag(tmp_path, "episode_000001_x", storage, "lz4")


RMW_HISTORY = {"system_default", "keep_last", "keep_all", "unknown"}
RMW_RELIABILITY = {"system_default", "reliable", "best_effort", "unknown", "best_available"}
RMW_DURABILITY = {"system_default", "transient_local", "volatile", "unknown", "best_available"}
RMW_LIVELINESS = {"system_default", "automatic", "manual_by_topic", "unknown", "best_available"}


def test_metadata_yaml_is_what_rosbag2_jazzy_reads(tmp_path):
    """The fields rosbag2 (rosbag2_storage/yaml.hpp + qos.cpp, metadata version 9) decodes, each of the type it
    decodes it as; checked against rosbag2's own test bags (rosbag2_tests/resources/*/metadata.yaml)."""
    path = write_episode(tmp_path)
    doc = yaml.safe_load((path / "metadata.yaml").read_text())
    assert list(doc) == ["rosbag2_bagfile_information"]
    info = doc["rosbag2_bagfile_information"]
    assert info["version"] == 9
    assert info["storage_identifier"] == "mcap"
    assert info["relative_file_paths"] == [f"{path.name}.mcap"]
    assert info["message_count"] == 5 and isinstance(info["duration"]["nanoseconds"], int)
    assert info["starting_time"]["nanoseconds_since_epoch"] == 1_000_000_000
    assert info["duration"]["nanoseconds"] == 4 * 20_000_000
    assert info["compression_format"] == "" and info["compression_mode"] == ""
    assert isinstance(info["ros_distro"], str)
    assert [f["path"] for f in info["files"]] == [f"{path.name}.mcap"]
    assert info["files"][0]["message_count"] == 5
    custom = info["custom_data"]
    assert isinstance(custom, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in custom.items())
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    assert set(topics) == {"/joint_states", "/camera/image_raw"}
    assert topics["/joint_states"]["message_count"] == 5 and topics["/camera/image_raw"]["message_count"] == 0
    for entry in topics.values():
        meta = entry["topic_metadata"]
        assert meta["serialization_format"] == "cdr"
        # version >= 7: RIHS01 type hash, the one rclpy's publishers report for the same type
        assert re.fullmatch(r"RIHS01_[0-9a-f]{64}", meta["type_description_hash"])
        # version >= 9: a YAML list of QoS maps with rmw's policy names (not the version <= 8 string of ints)
        profiles = meta["offered_qos_profiles"]
        assert isinstance(profiles, list) and len(profiles) == 1
        qos = profiles[0]
        assert qos["history"] in RMW_HISTORY and qos["reliability"] in RMW_RELIABILITY
        assert qos["durability"] in RMW_DURABILITY and qos["liveliness"] in RMW_LIVELINESS
        assert isinstance(qos["depth"], int) and isinstance(qos["avoid_ros_namespace_conventions"], bool)
        for key in ("deadline", "lifespan", "liveliness_lease_duration"):
            assert set(qos[key]) == {"sec", "nsec"}
    image_qos = topics["/camera/image_raw"]["topic_metadata"]["offered_qos_profiles"][0]
    assert image_qos["reliability"] == "best_effort" and image_qos["history"] == "unknown"
    assert (image_qos["deadline"]["sec"], image_qos["deadline"]["nsec"]) == INFINITE
    # the hash is rosbags' (ROS 2 Jazzy type store): the known RIHS01 of sensor_msgs/msg/Image in Jazzy
    assert topics["/camera/image_raw"]["topic_metadata"]["type_description_hash"] == (
        "RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47")


def test_discard_removes_the_episode_and_numbers_are_never_reused(tmp_path):
    write_episode(tmp_path, "episode_000000_a")
    bag = EpisodeBag(tmp_path, "episode_000001_b")
    bag.open([TopicRecord("/joint_states", JOINT_STATE, (RELIABLE,))])
    bag.write("/joint_states", 5, joint_state_cdr([0] * 6))
    assert next_episode_index(tmp_path) == 2  # an unfinished episode keeps its number
    assert [(p.name, done) for p, done in list_episodes(tmp_path)] == [("episode_000000_a", True),
                                                                       ("episode_000001_b", False)]
    bag.discard()
    assert not bag.path.exists()
    assert next_episode_index(tmp_path) == 1
    with pytest.raises(RecordingError, match="never overwritten"):
        EpisodeBag(tmp_path, "episode_000000_a").open([TopicRecord("/joint_states", JOINT_STATE)])


def test_missing_folder_and_unknown_type_are_clear_errors(tmp_path):
    with pytest.raises(RecordingError, match="does not exist"):
        EpisodeBag(tmp_path / "nowhere", "episode_000000_x").open([TopicRecord("/joint_states", JOINT_STATE)])
    with pytest.raises(RecordingError, match="unknown"):
        EpisodeBag(tmp_path, "episode_000000_x").open([TopicRecord("/x", "no_such_pkg/msg/Thing")])
    assert not (tmp_path / "episode_000000_x").exists()  # nothing half-made is left behind


def test_custom_message_types_get_their_installed_definition(tmp_path):
    pytest.importorskip("roarm_interfaces")
    from rosbags.rosbag2 import Reader

    bag = EpisodeBag(tmp_path, "episode_000000_x")
    bag.open([TopicRecord("/sim/episode_outcome", "roarm_interfaces/msg/EpisodeOutcome")])
    path = bag.close(metadata())
    with Reader(path) as reader:
        (connection,) = reader.connections
        assert "uint8 SUCCESS=1" in connection.msgdef.data and connection.digest.startswith("RIHS01_")


def _mount_tmpfs(target: Path, options: str) -> bool:
    target.mkdir(exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True).returncode == 0


def test_disk_full_is_a_clear_error_and_leaves_the_episode_marked(tmp_path):
    folder = tmp_path / "tiny"
    if os.geteuid() != 0 or not _mount_tmpfs(folder, "size=256k"):
        pytest.skip("needs root to mount a 256 KiB tmpfs (manual check: README, 'Disk full')")
    try:
        bag = EpisodeBag(folder, "episode_000000_x")
        bag.open([TopicRecord("/joint_states", JOINT_STATE, (RELIABLE,))])
        payload = joint_state_cdr([0.5] * 6) + bytes(20_000)  # bigger messages fill the disk sooner
        with pytest.raises(RecordingError, match="disk full"):
            for i in range(1000):
                bag.write("/joint_states", i, payload)
            bag.close(metadata())
        assert (bag.path / MARKER).exists() and not is_complete(bag.path)
        bag.discard()  # closes the storage file (a file left open keeps the tmpfs busy)
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_no_permission_is_a_clear_error(tmp_path):
    folder = tmp_path / "locked"
    if os.geteuid() == 0:
        if not _mount_tmpfs(folder, "ro,size=64k"):
            pytest.skip("cannot mount a read-only tmpfs")
    else:
        folder.mkdir()
        folder.chmod(0o555)
    try:
        with pytest.raises(RecordingError, match="no permission"):
            EpisodeBag(folder, "episode_000000_x").open([TopicRecord("/joint_states", JOINT_STATE)])
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(folder)], check=False)


def test_metadata_rules():
    assert action_source_for("hand_guiding", "/joint_trajectory") == "next_state"
    assert action_source_for("leader_follower", "/joint_trajectory") == "command:/joint_trajectory"
    assert metadata(fps=29.97, seed=None, start_pose=None).custom_data()["roarm_vla.fps"] == "29.97"
    assert metadata(seed=None).custom_data()["roarm_vla.seed"] == ""
    with pytest.raises(ValueError, match="task"):
        metadata(task="  ")
    with pytest.raises(ValueError, match="teleop_mode"):
        metadata(teleop_mode="joystick")
    with pytest.raises(ValueError, match="action_source"):
        metadata(action_source="joint_trajectory")


# ------------------------------------------------------------------------------------------- bookkeeping
def test_topic_activity_counts_and_silence():
    activity = TopicActivity(["camera/image_raw", "joint_states"], started=10.0)
    activity.seen("joint_states", 10.5)
    activity.seen("joint_states", 11.0)
    assert activity.counts == {"camera/image_raw": 0, "joint_states": 2}
    assert activity.silent_for(11.25) == [-1.0, 0.25]
    # the camera never sent: silent once the episode is older than the timeout (1.25 s > 1.0 s)
    assert activity.silent_topics(11.25, timeout=1.0) == ["camera/image_raw"]
    assert activity.silent_topics(10.75, timeout=1.0) == []
    assert activity.silent_topics(12.5, timeout=1.0) == ["camera/image_raw", "joint_states"]  # 1.5 s quiet


def test_outcome_tracker_ignores_the_previous_episodes_final_outcome():
    tracker = OutcomeTracker()
    tracker.update(episode_index=3, seed=30, status=OutcomeTracker.SUCCESS)  # latched from before the start
    assert not tracker.finished and tracker.outcome == "unknown"
    tracker.update(4, 40, OutcomeTracker.RUNNING)
    tracker.update(4, 40, OutcomeTracker.RUNNING)
    assert (tracker.episode_index, tracker.seed, tracker.finished) == (4, 40, False)
    tracker.update(4, 40, OutcomeTracker.TIMEOUT)
    assert tracker.finished and tracker.outcome == "timeout"
    tracker.update(5, 50, OutcomeTracker.RUNNING)  # the next sim episode does not relabel this one
    assert tracker.seed == 40 and tracker.outcome == "timeout"


def test_end_reason_order():
    base = dict(elapsed=1.0, max_duration=10.0, stop_request=None, cancelled=False, error="",
                outcome_finished=False, stop_on_outcome=False)
    assert end_reason(**base) is None
    assert end_reason(**{**base, "elapsed": 10.0}) == ("max_duration", True)
    assert end_reason(**{**base, "stop_request": True}) == ("stopped", True)
    assert end_reason(**{**base, "stop_request": False}) == ("discarded", False)
    assert end_reason(**{**base, "outcome_finished": True}) is None  # only with stop_on_outcome
    assert end_reason(**{**base, "outcome_finished": True, "stop_on_outcome": True}) == ("outcome", True)
    ended = {**base, "outcome_finished": True, "stop_on_outcome": True, "keep_failed": False}
    assert end_reason(**{**ended, "outcome": "success"}) == ("outcome", True)
    assert end_reason(**{**ended, "outcome": "timeout"}) == ("outcome", False)  # a failed demonstration goes
    assert end_reason(**{**base, "cancelled": True, "stop_request": True}) == ("cancelled", False)
    assert end_reason(**{**base, "error": "disk full", "cancelled": True}) == ("error", True)


# ------------------------------------------------------------------------------------------- relay rule
def test_follower_stream_starts_at_the_follower_and_steps_toward_the_leader():
    stream = FollowerStream(RelayConfig(max_step=0.1, leader_timeout=0.25))
    assert stream.tick(0.0) is None  # nothing known yet
    stream.leader([0.35, 0, 0, 0, 0, -0.05], now=0.0)
    assert stream.tick(0.01) is None  # follower pose unknown: never invent a start
    stream.follower([0.0] * 6)
    # 0.35 away on joint 0: 0.1, 0.2, 0.3, then 0.35 (caught up); joint 5 reaches -0.05 in one step
    got = [stream.tick(0.02 + i * 0.01) for i in range(4)]
    assert np.allclose([g[0] for g in got], [0.1, 0.2, 0.3, 0.35])
    assert np.allclose(got[0][5], -0.05) and stream.caught_up
    stream.leader([0.40, 0, 0, 0, 0, -0.05], now=0.06)
    assert np.allclose(stream.tick(0.07)[0], 0.40)  # tracking: small leader moves pass straight through


def test_follower_stream_stops_on_a_silent_leader_and_restarts_from_the_follower():
    stream = FollowerStream(RelayConfig(max_step=0.1, leader_timeout=0.25))
    stream.follower([0.0] * 6)
    stream.leader([0.05] * 6, now=0.0)
    assert stream.tick(0.1) is not None
    assert stream.tick(0.3) is None  # 0.3 s since the leader's message > 0.25 s
    stream.follower([0.5] * 6)  # the arm was moved meanwhile
    stream.leader([0.0] * 6, now=1.0)
    assert np.allclose(stream.tick(1.01), [0.4] * 6)  # from the measured 0.5, one 0.1 step toward 0.0


def test_follower_stream_offsets_and_limits():
    stream = FollowerStream(RelayConfig(max_step=10.0, offsets=[0.1, 0, 0, 0, 0, 0],
                                        lower=joints.LOWER_LIMITS, upper=joints.UPPER_LIMITS))
    stream.follower(joints.HOME_POSITIONS)
    leader = joints.HOME_POSITIONS.copy()
    leader[1] = joints.UPPER_LIMITS[1] + 1.0  # beyond the shoulder's limit
    stream.leader(leader, now=0.0)
    setpoint = stream.tick(0.0)
    assert math.isclose(setpoint[0], joints.HOME_POSITIONS[0] + 0.1)
    assert math.isclose(setpoint[1], joints.UPPER_LIMITS[1])


def test_scripted_leader_path_stays_in_the_limits_and_starts_at_the_start_pose():
    assert np.allclose(leader_pose("wave", 0.0), START_POSE)
    for t in np.linspace(0, 6, 61):
        q = leader_pose("wave", t)
        assert np.all(q >= joints.LOWER_LIMITS - 1e-12) and np.all(q <= joints.UPPER_LIMITS + 1e-12)
    assert np.allclose(leader_pose("still", 3.0), START_POSE)
    with pytest.raises(ValueError, match="motion"):
        leader_pose("dance", 0.0)
