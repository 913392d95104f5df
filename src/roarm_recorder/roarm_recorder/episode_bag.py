"""One demonstration episode = one rosbag2 directory: the ROS-free core of episode_recorder (the bag contract).

The episode bag contract (the converter, training/roarm_training/convert.py, reads bags by it; both READMEs
document it):
- One rosbag2 directory per episode, written with the ``rosbags`` library (version 9 metadata, typestore
  ROS2_JAZZY): MCAP by default (``<dir>/<dir-name>.mcap``), sqlite3 as an option. Messages are the raw CDR bytes
  the subscriptions received, written as they are; timestamp = receive time (ns, the recorder's ROS clock).
- Compression ``zstd`` (see COMPRESSIONS): MCAP compresses its chunks (what ``ros2 bag record -s mcap`` does by
  default; metadata.yaml's compression fields stay empty, as rosbag2 writes them), sqlite3 each message
  (rosbag2's ``--compression-mode message --compression-format zstd``); either way a crash loses no more than
  without it. ``none`` writes the bytes as they are.
- Episode metadata in metadata.yaml's ``custom_data`` (all strings), keys ``roarm_vla.*``: see CUSTOM_KEYS.
- Crash safety: while an episode is written its directory holds the marker file RECORDING_INCOMPLETE, created
  before the first byte of the bag and removed only after the writer closed and metadata.yaml exists. A directory
  with the marker or without metadata.yaml is an incomplete episode (a converter skips it and says so); finished
  episodes are separate directories that a later crash never opens again.

Errors (a missing or unwritable folder, a full disk, an unknown message type) raise :class:`RecordingError` with
a message that says what to fix; the node turns it into an ERROR diagnostic and a failed action.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

MARKER = "RECORDING_INCOMPLETE"
STORAGES = ("mcap", "sqlite3")
COMPRESSIONS = ("none", "zstd")
TELEOP_MODES = ("leader_follower", "hand_guiding", "scripted_expert", "policy")
OUTCOMES = ("success", "timeout", "unknown")
ROBOT_TYPE = "roarm_m3"
JOINT_UNITS = "radians"
PREFIX = "roarm_vla."
CUSTOM_KEYS = ("task", "robot_type", "joint_names", "joint_units", "fps", "teleop_mode", "action_source",
               "parameters", "episode_index", "seed", "start_pose", "outcome")
EPISODE_DIR = re.compile(r"^episode_(\d{6})(?:_.*)?$")


class RecordingError(RuntimeError):
    """A bag could not be created or written; the message says why and what to do."""


def explain_os_error(exc: OSError, path: Path) -> str:
    """An OSError from creating or writing a bag -> the sentence an operator needs."""
    if exc.errno == errno.ENOSPC:
        return f"disk full while writing {path}: free space on that file system or choose another output_dir"
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded while writing {path}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write in {path.parent if not path.exists() else path}: {exc.strerror}"
    if exc.errno == errno.ENOENT:
        return f"folder {path.parent} does not exist: create it or set output_dir to an existing folder"
    return f"cannot write {path}: {exc}"


@dataclass
class EpisodeMetadata:
    """What the contract stores in custom_data. Lists and dicts become JSON, numbers their decimal text."""

    task: str
    joint_names: Sequence[str]
    fps: float
    teleop_mode: str
    action_source: str  # "command:<topic>" or "next_state"
    episode_index: int
    parameters: Mapping[str, Any] = field(default_factory=dict)  # {node: {param: value}}
    seed: int | None = None
    start_pose: Sequence[float] | None = None  # first measured joint positions, radians, joint_names order
    outcome: str = "unknown"
    robot_type: str = ROBOT_TYPE
    joint_units: str = JOINT_UNITS

    def __post_init__(self) -> None:
        if not self.task.strip():
            raise ValueError("the task text is empty: say what the demonstration does, e.g. 'Pick up the white box'")
        if self.teleop_mode not in TELEOP_MODES:
            raise ValueError(f"teleop_mode must be one of {list(TELEOP_MODES)}, got {self.teleop_mode!r}")
        if not (self.action_source == "next_state" or self.action_source.startswith("command:")):
            raise ValueError(f"action_source must be 'next_state' or 'command:<topic>', got {self.action_source!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {list(OUTCOMES)}, got {self.outcome!r}")

    def custom_data(self) -> dict[str, str]:
        values = {
            "task": self.task,
            "robot_type": self.robot_type,
            "joint_names": json.dumps(list(self.joint_names)),
            "joint_units": self.joint_units,
            "fps": _number_text(self.fps),
            "teleop_mode": self.teleop_mode,
            "action_source": self.action_source,
            "parameters": json.dumps(self.parameters, sort_keys=True, default=str),
            "episode_index": str(int(self.episode_index)),
            "seed": "" if self.seed is None else str(int(self.seed)),
            "start_pose": json.dumps([float(x) for x in self.start_pose]) if self.start_pose is not None else "",
            "outcome": self.outcome,
        }
        return {PREFIX + key: values[key] for key in CUSTOM_KEYS}


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def action_source_for(teleop_mode: str, command_topic: str) -> str:
    """hand_guiding has no command stream: its action is the measured state one frame later."""
    return "next_state" if teleop_mode == "hand_guiding" else f"command:{command_topic}"


# ------------------------------------------------------------------------------------------------------ folders
def episode_dir_name(index: int, wall_time: float) -> str:
    return f"episode_{index:06d}_{time.strftime('%Y%m%dT%H%M%S', time.gmtime(wall_time))}"


def next_episode_index(folder: Path) -> int:
    """One past the highest episode_NNNNNN directory in ``folder`` (complete or not): numbers are never reused."""
    highest = -1
    if folder.is_dir():
        for entry in folder.iterdir():
            match = EPISODE_DIR.match(entry.name)
            if match and entry.is_dir():
                highest = max(highest, int(match.group(1)))
    return highest + 1


def is_complete(bag_dir: Path) -> bool:
    """The contract's test: metadata.yaml present and no RECORDING_INCOMPLETE marker."""
    return (bag_dir / "metadata.yaml").is_file() and not (bag_dir / MARKER).exists()


def read_custom_data(bag_dir: Path) -> dict[str, str]:
    """The ``roarm_vla.*`` custom data of a finished episode's metadata.yaml, keys without the prefix ({} when the
    file is missing or unreadable): what EpisodeMetadata.custom_data wrote."""
    import yaml

    try:
        info = yaml.safe_load((Path(bag_dir) / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        custom = info.get("custom_data") or {}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return {}
    return {k[len(PREFIX):]: v for k, v in custom.items() if k.startswith(PREFIX)}


def list_episodes(folder: Path) -> list[tuple[Path, bool]]:
    """(directory, complete) for every episode directory in ``folder``, in index order."""
    found = []
    for entry in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        if entry.is_dir() and EPISODE_DIR.match(entry.name):
            found.append((entry, is_complete(entry)))
    return found


def check_output_folder(folder: Path) -> None:
    """Raise RecordingError unless ``folder`` exists and this process may create directories in it."""
    if not folder.exists():
        raise RecordingError(f"output folder {folder} does not exist: create it or set output_dir to an existing folder")
    if not folder.is_dir():
        raise RecordingError(f"output_dir {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RecordingError(f"no permission to create episode folders in {folder} (user id {os.getuid()})")


# ------------------------------------------------------------------------------------------------------- typing
def typestore_for(msgtypes: Iterable[str]):
    """rosbags' ROS 2 Jazzy typestore, plus the definitions of any type it lacks read from the installed .msg
    files (ament index: share/<package>/msg/<Name>.msg), so a custom interface gets a real definition and hash."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    pending = [t for t in msgtypes if t not in store.fielddefs]
    seen: set[str] = set()
    while pending:
        msgtype = pending.pop()
        if msgtype in seen or msgtype in store.fielddefs:
            continue
        seen.add(msgtype)
        text = _installed_msg_text(msgtype)
        types = get_types_from_msg(text, msgtype)
        store.register(types)
    return store


def _installed_msg_text(msgtype: str) -> str:
    package, kind, name = msgtype.split("/")
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        path = Path(get_package_share_directory(package)) / kind / f"{name}.{kind}"
    except (ImportError, PackageNotFoundError) as exc:
        raise RecordingError(f"message type {msgtype} is unknown: neither in the ROS 2 Jazzy type store nor an "
                             f"installed package ({exc})") from exc
    if not path.is_file():
        raise RecordingError(f"message type {msgtype} is unknown: {path} does not exist")
    return path.read_text()


def qos_from_dict(values: Mapping[str, Any]):
    """A QoS profile as plain names/numbers (what the node reads from the publishers) -> rosbags' Qos."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    def duration(key: str) -> QosTime:
        sec, nsec = values.get(key, (0, 0))
        return QosTime(int(sec), int(nsec))

    return Qos(
        history=QosHistory[str(values.get("history", "keep_last")).upper()],
        depth=int(values.get("depth", 10)),
        reliability=QosReliability[str(values.get("reliability", "reliable")).upper()],
        durability=QosDurability[str(values.get("durability", "volatile")).upper()],
        deadline=duration("deadline"),
        lifespan=duration("lifespan"),
        liveliness=QosLiveliness[str(values.get("liveliness", "automatic")).upper()],
        liveliness_lease_duration=duration("liveliness_lease_duration"),
        avoid_ros_namespace_conventions=bool(values.get("avoid_ros_namespace_conventions", False)),
    )


@dataclass(frozen=True)
class TopicRecord:
    """A topic of the episode: name (as recorded: absolute, e.g. /joint_states), type, the publishers' QoS."""

    name: str
    msgtype: str  # "sensor_msgs/msg/JointState"
    offered_qos: tuple[Mapping[str, Any], ...] = ()


# ------------------------------------------------------------------------------------------------------- writer
class EpisodeBag:
    """Writes one episode: ``open`` -> ``write``* -> ``close(metadata)`` (kept) or ``discard()``.

    Not thread-safe by itself: the node serialises calls with one lock.
    """

    FLUSH_PERIOD_S = 1.0  # push buffered MCAP chunks to the OS at least this often (a crash keeps more on disk)

    def __init__(self, folder: Path, name: str, storage: str = "mcap", compression: str = "none"):
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {list(STORAGES)}, got {storage!r}")
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {list(COMPRESSIONS)}, got {compression!r}")
        self.folder = Path(folder)
        self.path = self.folder / name
        self.storage, self.compression = storage, compression
        self.counts: dict[str, int] = {}
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self._writer = None
        self._connections: dict[str, Any] = {}
        self._last_flush = 0.0
        self.closed = False

    def open(self, topics: Sequence[TopicRecord], typestore=None) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
        from rosbags.rosbag2.errors import WriterError

        check_output_folder(self.folder)
        if self.path.exists():
            raise RecordingError(f"{self.path} exists already: an episode folder is never overwritten")
        store = typestore if typestore is not None else typestore_for(t.msgtype for t in topics)
        try:
            # The marker goes in first, in a directory of our own: a crash at any later point leaves it behind.
            self.path.mkdir(mode=0o755)
            (self.path / MARKER).write_text(
                "episode being recorded (or the recorder died while recording it): not a finished episode\n")
            plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
            self._writer = _WriterInExistingDir(self.path, version=9, storage_plugin=plugin)
            if self.compression == "zstd":
                mode = CompressionMode.STORAGE if self.storage == "mcap" else CompressionMode.MESSAGE
                self._writer.set_compression(mode, CompressionFormat.ZSTD)
            self._writer.open()
            for topic in topics:
                qos = [qos_from_dict(q) for q in topic.offered_qos]
                self._connections[topic.name] = self._writer.add_connection(
                    topic.name, topic.msgtype, typestore=store, offered_qos_profiles=qos)
                self.counts[topic.name] = 0
        except OSError as exc:
            self._abandon()
            raise RecordingError(explain_os_error(exc, self.path)) from exc
        except (WriterError, KeyError, ValueError) as exc:
            self._abandon()
            raise RecordingError(f"cannot create the bag {self.path}: {exc}") from exc

    def write(self, topic: str, receive_ns: int, data: bytes) -> None:
        if self._writer is None:
            raise RecordingError("the episode bag is not open")
        try:
            self._writer.write(self._connections[topic], int(receive_ns), data)
            now = time.monotonic()
            if now - self._last_flush >= self.FLUSH_PERIOD_S:
                self._last_flush = now
                bio = getattr(self._writer.storage, "bio", None)  # MCAP's file object (sqlite3 commits at close)
                if bio is not None:
                    bio.flush()
        except OSError as exc:
            raise RecordingError(explain_os_error(exc, self.path)) from exc
        self.counts[topic] += 1
        self.first_ns = receive_ns if self.first_ns is None else min(self.first_ns, receive_ns)
        self.last_ns = receive_ns if self.last_ns is None else max(self.last_ns, receive_ns)

    def close(self, metadata: EpisodeMetadata) -> Path:
        """Finish the bag: storage index, metadata.yaml with the contract's custom_data, then remove the marker."""
        if self._writer is None:
            raise RecordingError("the episode bag is not open")
        try:
            for key, value in metadata.custom_data().items():
                self._writer.set_custom_data(key, value)
            self._writer.close()
            self._writer = None
            if not (self.path / "metadata.yaml").is_file():
                raise RecordingError(f"{self.path}/metadata.yaml missing after close")
            _fsync_tree(self.path)  # the marker must not vanish before the data is on disk
            (self.path / MARKER).unlink()
            _fsync_dir(self.path)
        except OSError as exc:
            raise RecordingError(explain_os_error(exc, self.path)) from exc
        self.closed = True
        return self.path

    def discard(self) -> None:
        """Drop the episode: its directory goes entirely (nothing of it is left to be mistaken for data)."""
        self._abandon()
        shutil.rmtree(self.path, ignore_errors=True)

    def _abandon(self) -> None:
        if self._writer is not None:
            try:
                self._writer.abort()
            except Exception:  # noqa: BLE001 - aborting a broken writer; the directory is removed or marked
                pass
            self._writer = None


def _fsync_tree(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_file():
            fd = os.open(entry, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _writer_class():
    from rosbags.rosbag2 import Writer

    return Writer


class _WriterInExistingDir(_writer_class()):
    """rosbags' Writer, allowed to start in an EMPTY directory we created (holding only our marker).

    rosbags refuses an existing path so that it never overwrites a bag; the marker must exist before the writer's
    first byte, so the directory is ours. Everything else (storage files, metadata.yaml) is rosbags' own code.
    """

    def __init__(self, path: Path, **kwargs: Any):
        path = Path(path)
        contents = {p.name for p in path.iterdir()}
        if contents - {MARKER}:
            raise RecordingError(f"{path} is not empty ({sorted(contents)}): refusing to write a bag into it")
        hidden = path.with_name(path.name + ".opening")
        # Writer.__init__ checks path.exists(): construct it on a path that does not exist, then point it home.
        super().__init__(hidden, **kwargs)
        self.path = path
        self.metapath = path / "metadata.yaml"

    def open(self) -> None:
        self.storage = self.STORAGE_PLUGINS[self.storage_plugin](self.path, self.compression_mode)
