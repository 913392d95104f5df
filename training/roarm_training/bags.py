"""Reading episode bags (rosbag2 directories or single .mcap files) with the `rosbags` library, ROS-free.

The episode bag contract (shared with the recorder; see training/README.md):
- one rosbag2 directory per episode (metadata.yaml version 9, MCAP ``<dir>/<dir-name>.mcap`` or sqlite3), raw CDR
  as received, timestamp = receive time (ns);
- episode metadata in metadata.yaml's ``custom_data`` under ``roarm_vla.*`` keys (``CUSTOM_KEYS``);
- while an episode is being written its directory holds ``RECORDING_INCOMPLETE``; a directory with that marker, or
  without metadata.yaml, is an incomplete episode: skipped, never touched.

Any other rosbag2 (a ``ros2 bag record`` directory, a single .mcap from another writer) reads the same way; it just
lacks the ``roarm_vla.*`` metadata, which the converter's options then supply.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

INCOMPLETE_MARKER = "RECORDING_INCOMPLETE"
METADATA_FILE = "metadata.yaml"
STORAGE_SUFFIXES = (".mcap", ".db3")
CUSTOM_PREFIX = "roarm_vla."
CUSTOM_KEYS = ("task", "robot_type", "joint_names", "joint_units", "fps", "teleop_mode", "action_source",
               "parameters", "episode_index", "seed", "start_pose", "outcome")

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
TRAJECTORY_TYPE = "trajectory_msgs/msg/JointTrajectory"
# These types begin with a std_msgs/Header, so the stamp sits right after the 4-byte CDR encapsulation header.
HEADER_FIRST_TYPES = (*IMAGE_TYPES, JOINT_STATE_TYPE, TRAJECTORY_TYPE)


class BagError(ValueError):
    """A bag that cannot be converted: the message names the bag and what is wrong with it."""


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


def _is_incomplete_dir(path: Path) -> str | None:
    """Why a directory is an incomplete episode, or None when it is a finished one."""
    if (path / INCOMPLETE_MARKER).exists():
        return f"{INCOMPLETE_MARKER} marker present (recording did not finish)"
    if not (path / METADATA_FILE).exists():
        return f"no {METADATA_FILE} (recording did not finish)"
    return None


def _looks_like_episode_dir(path: Path) -> bool:
    """A rosbag2 directory: metadata.yaml, the marker, or storage named after the directory (<dir>[_0].mcap)."""
    if (path / METADATA_FILE).exists() or (path / INCOMPLETE_MARKER).exists():
        return True
    return any((path / f"{path.name}{suffix}").exists() or (path / f"{path.name}_0{suffix}").exists()
               for suffix in STORAGE_SUFFIXES)


def find_bags(paths: Sequence[str | Path]) -> tuple[list[Path], list[Skipped]]:
    """Episode bags under ``paths`` (bag directories, single .mcap files, or folders of them), sorted by name.

    Incomplete episode directories come back in the second list with the reason. Raises BagError for a path that
    does not exist or holds no bag at all.
    """
    bags: list[Path] = []
    skipped: list[Skipped] = []

    def visit_dir(path: Path) -> None:
        reason = _is_incomplete_dir(path)
        if reason:
            skipped.append(Skipped(path, reason))
        else:
            bags.append(path)

    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise BagError(f"{path}: no such file or directory")
        found_before = len(bags) + len(skipped)
        if path.is_file():
            if path.suffix != ".mcap":
                raise BagError(f"{path}: not a rosbag2 directory or .mcap file")
            bags.append(path)
        elif _looks_like_episode_dir(path):
            visit_dir(path)
        else:
            for child in sorted(path.iterdir()):
                if child.is_dir() and _looks_like_episode_dir(child):
                    visit_dir(child)
                elif child.is_file() and child.suffix == ".mcap":
                    bags.append(child)
        if len(bags) + len(skipped) == found_before:
            raise BagError(f"{path}: holds no rosbag2 directory or .mcap file")
    unique = list(dict.fromkeys(p.resolve() for p in bags))
    return unique, skipped


def bag_fingerprint(path: Path) -> str:
    """Content fingerprint of a bag: metadata.yaml + each storage file's name, size, first and last MiB."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}\n".encode())
        with file.open("rb") as handle:
            if file.name == METADATA_FILE or size <= 2 << 20:
                digest.update(handle.read())
            else:
                digest.update(handle.read(1 << 20))
                handle.seek(size - (1 << 20))
                digest.update(handle.read())
    return digest.hexdigest()[:32]


def header_stamp_ns(raw: bytes | memoryview) -> int:
    """The header stamp (ns) of a CDR message whose first field is a std_msgs/Header, read without decoding."""
    if len(raw) < 12:
        raise BagError(f"message of {len(raw)} bytes is too short to hold a header")
    little = raw[1] in (0x01, 0x03)  # CDR_LE / PL_CDR_LE encapsulation
    sec, nanosec = struct.unpack_from("<iI" if little else ">iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


@dataclass(frozen=True)
class RawImage:
    """The fields of a sensor_msgs/Image that the observation reads, with ``data`` the pixel bytes (no copy of a
    decoded message in between): what :func:`image_from_cdr` returns."""

    header_stamp_ns: int
    frame_id: str
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes


def image_from_cdr(raw: bytes) -> RawImage | None:
    """A little-endian CDR sensor_msgs/Image read field by field (header stamp, frame_id, height, width, encoding,
    is_bigendian, step, data), or None when the buffer is not that (big-endian, sizes that do not add up): the
    caller then decodes it with rosbags. CDR aligns each field to its size, counted from after the 4-byte
    encapsulation header. rosbags' generic deserializer built a message object and copied the pixel buffer once
    more for every camera frame (bench/convert.py)."""
    if len(raw) < 32 or raw[1] != 0x01:  # CDR_LE
        return None
    try:
        sec, nanosec, frame_len = struct.unpack_from("<iII", raw, 4)
        pos = 16 + frame_len
        frame_id = raw[16:pos - 1].decode()
        pos += -(pos - 4) % 4
        height, width, encoding_len = struct.unpack_from("<III", raw, pos)
        pos += 12
        encoding = raw[pos:pos + encoding_len - 1].decode()
        pos += encoding_len
        is_bigendian = raw[pos]
        pos += 1
        pos += -(pos - 4) % 4
        step, size = struct.unpack_from("<II", raw, pos)
        pos += 8
    except (struct.error, UnicodeDecodeError, IndexError):
        return None
    if pos + size > len(raw) or frame_len == 0 or encoding_len == 0:
        return None
    return RawImage(sec * 1_000_000_000 + nanosec, frame_id, height, width, encoding, is_bigendian, step,
                    raw[pos:pos + size])


@dataclass
class TopicData:
    """One topic of one bag: per message (receive order) its receive time and header stamp, maybe the messages."""

    topic: str
    msgtype: str
    receive_ns: np.ndarray
    header_ns: np.ndarray
    messages: list[Any] | None = None
    raw: list[bytes] | None = None  # the CDR bytes of every message, when asked for and within the budget


@dataclass
class EpisodeBag:
    """An open bag: topics, custom metadata, stamps and messages. Use as a context manager."""

    path: Path
    reader: Any = None
    topics: dict[str, str] = field(default_factory=dict)  # topic -> message type
    counts: dict[str, int] = field(default_factory=dict)
    custom: dict[str, str] = field(default_factory=dict)

    def __enter__(self) -> "EpisodeBag":
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        try:
            self.reader = AnyReader([self.path], default_typestore=get_typestore(Stores.ROS2_JAZZY))
            self.reader.open()
        except Exception as err:  # rosbags raises several types for unreadable metadata or storage
            raise BagError(f"{self.path}: cannot open the bag ({type(err).__name__}: {err}); "
                           f"it may be truncated or not a rosbag2") from None
        for connection in self.reader.connections:
            self.topics[connection.topic] = connection.msgtype
            self.counts[connection.topic] = self.counts.get(connection.topic, 0) + int(connection.msgcount)
        storage = getattr(self.reader.readers[0], "storage", None)
        metadata = getattr(storage, "metadata", None)
        self.custom = dict(getattr(metadata, "custom", None) or {})
        return self

    def __exit__(self, *exc: object) -> None:
        if self.reader is not None and self.reader.stack is not None:
            self.reader.close()

    # ------------------------------------------------------------------------------------------- metadata
    def meta(self, key: str, default: Any = None) -> Any:
        """A ``roarm_vla.<key>`` custom-data value (JSON-decoded for lists/objects), or ``default``."""
        value = self.custom.get(CUSTOM_PREFIX + key)
        if value is None:
            return default
        if key in ("joint_names", "parameters", "start_pose"):
            try:
                return json.loads(value)
            except ValueError:
                raise BagError(f"{self.path}: custom data {CUSTOM_PREFIX}{key} is not JSON: {value[:80]!r}") from None
        return value

    def require_topic(self, topic: str, types: Sequence[str], role: str) -> str:
        """The topic's type, checked: BagError naming the bag's topics when it is missing or of another type."""
        if topic not in self.topics:
            listing = ", ".join(f"{t} [{m}]" for t, m in sorted(self.topics.items())) or "none"
            raise BagError(f"{self.path}: {role} topic {topic!r} is not in the bag (its topics: {listing})")
        msgtype = self.topics[topic]
        if msgtype not in types:
            raise BagError(f"{self.path}: {role} topic {topic!r} carries {msgtype}, a message type the converter "
                           f"does not read as {role} (expected {' or '.join(types)})")
        if self.counts.get(topic, 0) == 0:
            raise BagError(f"{self.path}: {role} topic {topic!r} has no messages")
        return msgtype

    # ------------------------------------------------------------------------------------------- messages
    def _raw(self, topic: str) -> Iterator[tuple[int, bytes]]:
        connections = [c for c in self.reader.connections if c.topic == topic]
        if not connections:  # rosbags reads EVERY topic when given no connection
            raise BagError(f"{self.path}: no topic {topic!r} in the bag (its topics: {sorted(self.topics)})")
        try:
            for _, timestamp, raw in self.reader.messages(connections=connections):
                yield timestamp, raw
        except BagError:
            raise
        except Exception as err:
            raise BagError(f"{self.path}: reading {topic!r} failed ({type(err).__name__}: {err}); the bag is "
                           f"truncated or corrupt") from None

    def _deserialize(self, raw: bytes, msgtype: str, topic: str) -> Any:
        try:
            return self.reader.deserialize(raw, msgtype)
        except Exception as err:
            raise BagError(f"{self.path}: a {msgtype} message on {topic!r} does not decode ({err})") from None

    def read_topic(self, topic: str, keep_messages: bool, keep_raw_bytes: int = 0) -> TopicData:
        """Receive times and header stamps of every message on ``topic`` (+ the decoded messages if asked).

        ``keep_raw_bytes`` > 0: also keep each message's CDR bytes while their total stays within that many bytes
        (``raw`` is None when the topic is larger), so that a second pass need not read the bag again."""
        msgtype = self.topics[topic]
        receive, header, messages = [], [], []
        raws: list[bytes] | None = [] if keep_raw_bytes > 0 else None
        kept = 0
        for timestamp, raw in self._raw(topic):
            receive.append(timestamp)
            if keep_messages:
                msg = self._deserialize(raw, msgtype, topic)
                messages.append(msg)
                stamp = msg.header.stamp
                header.append(int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec))
            else:
                header.append(header_stamp_ns(raw))
            if raws is not None:
                kept += len(raw)
                if kept > keep_raw_bytes:  # over the budget: the caller reads the bag again
                    raws = None
                else:
                    raws.append(raw)
        if not receive:
            raise BagError(f"{self.path}: topic {topic!r} has no messages (the bag may be truncated)")
        return TopicData(topic, msgtype, np.array(receive, dtype=np.int64), np.array(header, dtype=np.int64),
                         messages if keep_messages else None, raws)

    def iter_messages(self, topic: str) -> Iterator[tuple[int, Any]]:
        """(index in receive order, decoded message) for every message on ``topic``."""
        msgtype = self.topics[topic]
        for index, (_, raw) in enumerate(self._raw(topic)):
            yield index, self._deserialize(raw, msgtype, topic)

    def decode_image(self, raw: bytes, topic: str) -> Any:
        """An image message from its CDR bytes: raw sensor_msgs/Image as :class:`RawImage` (read straight from the
        bytes), anything else decoded by rosbags."""
        msgtype = self.topics[topic]
        image = image_from_cdr(raw) if msgtype == IMAGE_TYPE else None
        return image if image is not None else self._deserialize(raw, msgtype, topic)

    def iter_images(self, topic: str, raws: list[bytes | None] | None = None) -> Iterator[tuple[int, Any]]:
        """(index in receive order, image message, see :meth:`decode_image`) for every message on an image topic,
        read from the bag or, given ``raws`` (``read_topic``'s ``raw``), from those bytes, each entry released
        (set to None) once decoded."""
        if raws is None:
            for index, (_, raw) in enumerate(self._raw(topic)):
                yield index, self.decode_image(raw, topic)
            return
        for index in range(len(raws)):
            raw, raws[index] = raws[index], None
            if raw is None:
                raise BagError(f"{self.path}: image message {index} was already consumed")
            yield index, self.decode_image(raw, topic)

    def iter_raw(self, topic: str) -> Iterator[tuple[int, bytes]]:
        """(index in receive order, raw CDR bytes) for every message on ``topic``."""
        for index, (_, raw) in enumerate(self._raw(topic)):
            yield index, bytes(raw)
