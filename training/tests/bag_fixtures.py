"""Episode bags for the converter tests, written with rosbags' Writer by the episode bag contract.

Every message is recognisable: image i has pixel values derived from i (``image_pixels``), joint state i holds
``state_positions(i)`` and command i ``command_positions(i)``, so a test can tell which message a frame took.
Times are in ms; each message is written at its receive time (stamp + latency), as the recorder does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from roarm_description.joints import HOME_POSITIONS, JOINT_NAMES

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
MS = 1_000_000
T0_MS = 1_700_000_000_000  # an epoch-like ROS time, so stamps are never zero
TASK = "Pick up the white box"


def image_pixels(i: int, height: int = 48, width: int = 64) -> np.ndarray:
    """HxWx3 uint8: a gradient plus the message index, distinct per message."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([(xx * 3 + i * 11) % 256, (yy * 5 + i * 7) % 256, np.full_like(xx, (i * 29) % 256)], axis=2)
    return image.astype(np.uint8)


def state_positions(i: int) -> np.ndarray:
    return HOME_POSITIONS + 0.01 * i + np.arange(6) * 0.001


def command_positions(i: int) -> np.ndarray:
    return HOME_POSITIONS + 0.2 + 0.01 * i


def _stamp(ns: int):
    Time = TYPESTORE.types["builtin_interfaces/msg/Time"]
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def _header(ns: int, frame: str = ""):
    return TYPESTORE.types["std_msgs/msg/Header"](stamp=_stamp(ns), frame_id=frame)


def image_msg(i: int, stamp_ns: int, height: int = 48, width: int = 64, compressed: bool = False,
              pixels_of=image_pixels):
    pixels = pixels_of(i, height, width)
    if compressed:
        import cv2

        ok, png = cv2.imencode(".png", pixels[..., ::-1])
        return TYPESTORE.types["sensor_msgs/msg/CompressedImage"](
            header=_header(stamp_ns, "camera"), format="rgb8; png compressed bgr8", data=png.reshape(-1))
    return TYPESTORE.types["sensor_msgs/msg/Image"](
        header=_header(stamp_ns, "camera"), height=height, width=width, encoding="rgb8", is_bigendian=0,
        step=width * 3, data=pixels.reshape(-1))


def joint_state_msg(positions: Sequence[float], stamp_ns: int, names: Sequence[str] = JOINT_NAMES):
    n = len(names)
    return TYPESTORE.types["sensor_msgs/msg/JointState"](
        header=_header(stamp_ns), name=list(names), position=np.asarray(positions, dtype=np.float64),
        velocity=np.zeros(n), effort=np.zeros(n))


def trajectory_msg(positions: Sequence[float], stamp_ns: int, names: Sequence[str] = JOINT_NAMES):
    Point = TYPESTORE.types["trajectory_msgs/msg/JointTrajectoryPoint"]
    Duration = TYPESTORE.types["builtin_interfaces/msg/Duration"]
    point = Point(positions=np.asarray(positions, dtype=np.float64), velocities=np.zeros(0),
                  accelerations=np.zeros(0), effort=np.zeros(0), time_from_start=Duration(sec=0, nanosec=0))
    return TYPESTORE.types["trajectory_msgs/msg/JointTrajectory"](
        header=_header(stamp_ns), joint_names=list(names), points=[point])


def custom_data(task: str = TASK, fps: int = 30, teleop_mode: str = "scripted_expert",
                action_source: str = "command:joint_trajectory", **extra) -> dict[str, str]:
    data = {
        "roarm_vla.task": task, "roarm_vla.robot_type": "roarm_m3",
        "roarm_vla.joint_names": json.dumps(list(JOINT_NAMES)), "roarm_vla.joint_units": "radians",
        "roarm_vla.fps": str(fps), "roarm_vla.teleop_mode": teleop_mode, "roarm_vla.action_source": action_source,
        "roarm_vla.parameters": json.dumps({"scripted_expert": {"rate_hz": 10.0}}),
        "roarm_vla.episode_index": "0", "roarm_vla.seed": "7", "roarm_vla.outcome": "success",
    }
    data.update({f"roarm_vla.{k}": str(v) for k, v in extra.items()})
    return data


def write_episode(path: Path, *, image_ms: Sequence[float], state_ms: Sequence[float],
                  command_ms: Sequence[float] | None = None, latency_ms: float = 2.0, height: int = 48,
                  width: int = 64, compressed: bool = False, custom: dict[str, str] | None = None,
                  joint_names: Sequence[str] = JOINT_NAMES, storage: str = "mcap",
                  image_topic: str | None = None, command_stamps_zero: bool = True,
                  image_size_of=None, image_receive_ms: Sequence[float] | None = None,
                  pixels_of=image_pixels) -> Path:
    """One episode bag. ``*_ms``: header stamps after T0 (receive = stamp + latency, or ``image_receive_ms``;
    commands: receive times, header stamps zero unless ``command_stamps_zero`` is False). ``pixels_of(i, h, w)``:
    image i's HxWx3 uint8 content."""
    image_topic = image_topic or ("camera/image_raw/compressed" if compressed else "camera/image_raw")
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    records = []  # (receive ns, topic, message, type)
    for i, t in enumerate(image_ms):
        stamp = int((T0_MS + t) * MS)
        h, w = image_size_of(i) if image_size_of else (height, width)
        receive = int((T0_MS + image_receive_ms[i]) * MS) if image_receive_ms else stamp + int(latency_ms * MS)
        records.append((receive, image_topic, image_msg(i, stamp, h, w, compressed, pixels_of), image_type))
    for i, t in enumerate(state_ms):
        stamp = int((T0_MS + t) * MS)
        records.append((stamp + int(latency_ms * MS), "joint_states",
                        joint_state_msg(state_positions(i), stamp, joint_names), "sensor_msgs/msg/JointState"))
    for i, t in enumerate(command_ms or []):
        receive = int((T0_MS + t) * MS)
        records.append((receive, "joint_trajectory",
                        trajectory_msg(command_positions(i), 0 if command_stamps_zero else receive, joint_names),
                        "trajectory_msgs/msg/JointTrajectory"))
    records.sort(key=lambda r: r[0])
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        for key, value in (custom if custom is not None else custom_data()).items():
            writer.set_custom_data(key, value)
        connections = {}
        for _, topic, _, msgtype in records:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=TYPESTORE)
        for receive, topic, msg, msgtype in records:
            writer.write(connections[topic], receive, TYPESTORE.serialize_cdr(msg, msgtype))
    return path


def regular_episode(path: Path, seconds: float = 1.0, fps: int = 30, **kwargs) -> Path:
    """Camera at fps, joint states at 50 Hz from t=0, commands at 10 Hz: every frame valid."""
    n = int(round(seconds * fps))
    image_ms = [k * 1000.0 / fps for k in range(n)]
    state_ms = list(np.arange(0.0, seconds * 1000.0 + 20.0, 20.0))
    command_ms = list(np.arange(0.0, seconds * 1000.0 + 100.0, 100.0))
    return write_episode(path, image_ms=image_ms, state_ms=state_ms, command_ms=command_ms, **kwargs)


# ------------------------------------------------------------------------------ another writer: ros2 bag record
HUMBLE_QOS = ("- history: 3\n  depth: 0\n  reliability: 1\n  durability: 2\n  deadline:\n    sec: 2147483647\n"
              "    nsec: 4294967295\n  lifespan:\n    sec: 2147483647\n    nsec: 4294967295\n  liveliness: 1\n"
              "  liveliness_lease_duration:\n    sec: 2147483647\n    nsec: 4294967295\n"
              "  avoid_ros_namespace_conventions: false")


def write_ros2_record_bag(path: Path, records: Sequence[tuple[int, str, str, bytes]]) -> Path:
    """A bag laid out as ``ros2 bag record -s sqlite3`` writes it on Humble (metadata.yaml version 5, sqlite3
    schema 3, no message definitions), written with sqlite3 and plain text, not by rosbags.

    ``records``: (receive ns, topic, message type, CDR bytes). Topics of types unknown to ROS 2 are fine: such a
    bag carries no message definitions, as a Humble bag does not.
    """
    import sqlite3

    path.mkdir(parents=True)
    records = sorted(records, key=lambda r: r[0])
    topics: dict[str, str] = {}
    for _, topic, msgtype, _ in records:
        topics.setdefault(topic, msgtype)
    db_name = f"{path.name}_0.db3"
    db = sqlite3.connect(path / db_name)
    db.executescript(
        "CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);"
        "INSERT INTO schema VALUES (3, 'humble');"
        "CREATE TABLE metadata(id INTEGER PRIMARY KEY, metadata_version INTEGER NOT NULL, metadata TEXT NOT NULL);"
        "CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, "
        "serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL);"
        "CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, timestamp INTEGER NOT NULL, "
        "data BLOB NOT NULL);")
    ids = {topic: i + 1 for i, topic in enumerate(topics)}
    db.executemany("INSERT INTO topics VALUES (?, ?, ?, 'cdr', ?)",
                   [(ids[t], t, m, HUMBLE_QOS) for t, m in topics.items()])
    db.executemany("INSERT INTO messages(topic_id, timestamp, data) VALUES (?, ?, ?)",
                   [(ids[topic], stamp, data) for stamp, topic, _, data in records])
    db.commit()
    db.close()
    start = records[0][0] if records else 0
    duration = records[-1][0] - start if records else 0
    counts = {t: sum(r[1] == t for r in records) for t in topics}
    quoted_qos = HUMBLE_QOS.replace("\n", "\\n")
    topic_lines = "".join(
        f"    - topic_metadata:\n        name: {t}\n        type: {m}\n        serialization_format: cdr\n"
        f"        offered_qos_profiles: \"{quoted_qos}\"\n      message_count: {counts[t]}\n"
        for t, m in topics.items())
    (path / "metadata.yaml").write_text(
        "rosbag2_bagfile_information:\n  version: 5\n  storage_identifier: sqlite3\n"
        f"  duration:\n    nanoseconds: {duration}\n  starting_time:\n    nanoseconds_since_epoch: {start}\n"
        f"  message_count: {len(records)}\n  topics_with_message_count:\n{topic_lines}"
        "  compression_format: \"\"\n  compression_mode: \"\"\n"
        f"  relative_file_paths:\n    - {db_name}\n"
        f"  files:\n    - path: {db_name}\n      starting_time:\n        nanoseconds_since_epoch: {start}\n"
        f"      duration:\n        nanoseconds: {duration}\n      message_count: {len(records)}\n")
    return path
