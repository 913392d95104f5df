"""rosbag2 episodes -> a LeRobotDataset v3.0, through LeRobot's own API (create / add_frame / save_episode /
finalize, or the resume constructor for --append; stats computed by LeRobot).

Per episode bag: pick the image, joint-state and action streams (options, else the bag's ``roarm_vla.*``
metadata, else the default topics), align them on the fps grid (``alignment.align``), and build each frame's
observation with ``vla_policy_node.observation`` (the same functions the live policy node calls) and its action:
the COMMAND (first point of the JointTrajectory aligned to the frame) or, for hand-guiding, the measured joint state
one frame later.

Nothing half-written: the dataset is built in a temporary folder next to ``out`` and moved into place at the end
(a failure removes it). Re-running with the same bags and options reports "up to date" without writing; --append
adds the bags the dataset does not hold yet. The episode sync reports (rates, gaps, dropped frames) are printed and
saved to meta/roarm_vla_sync_report.json; meta/roarm_vla.json says joint names, units, image key and size, fps,
source bags and teleop modes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from roarm_description.joints import JOINT_NAMES
from roarm_training.alignment import AlignmentError, Stream, align
from roarm_training.bags import (IMAGE_TYPES, JOINT_STATE_TYPE, TRAJECTORY_TYPE, BagError, EpisodeBag, Skipped,
                                 bag_fingerprint, find_bags)
from roarm_training.video_encoding import dropped_frames, uint8_frame_stats, wait_for_encoder_room
from vla_policy_node.observation import (ACTION_KEY, DEFAULT_IMAGE_KEY, STATE_KEY, ObservationSpec,
                                         action_from_trajectory, observation_from_messages, state_from_joint_state)

ROARM_META_FILE = Path("meta") / "roarm_vla.json"
SYNC_REPORT_FILE = Path("meta") / "roarm_vla_sync_report.json"
DEFAULT_IMAGE_TOPICS = ("camera/image_raw", "camera/image_raw/compressed")
DEFAULT_STATE_TOPIC = "joint_states"
DEFAULT_ACTION_TOPIC = "joint_trajectory"
ROLES = ("image", "state", "action")
UNIT_LABELS = {"radians": "rad", "degrees": "deg"}
DEFAULT_COMMAND_TOLERANCE_S = 0.25  # a streamed setpoint holds until the next one; the expert sends ~10 Hz


class ConvertError(ValueError):
    """Conversion refused (bad options, a dataset that exists with other inputs, nothing to convert)."""


class MissingFpsError(BagError, ConvertError):
    """A bag that does not say its fps when no --fps was given: one bad bag (--skip-bad skips it)."""


@dataclass
class ConvertOptions:
    out: Path
    fps: int | None = None  # None: the bags' roarm_vla.fps
    repo_id: str | None = None  # None: local/<out folder name>
    use_videos: bool = True
    joint_units: str = "radians"
    image_topic: str | None = None  # None: camera/image_raw, camera/image_raw/compressed, or the only image topic
    state_topic: str = DEFAULT_STATE_TOPIC
    action_topic: str | None = None  # None: the bag's roarm_vla.action_source, else joint_trajectory
    action_from_next_state: bool = False
    joint_map: dict[str, str] = field(default_factory=dict)  # bag joint name -> URDF joint name
    task: str | None = None  # overrides the bags' roarm_vla.task
    robot_type: str | None = None  # None: the bags' roarm_vla.robot_type, else roarm_m3
    tolerance_ms: dict[str, float] = field(default_factory=dict)  # role -> ms; defaults in _tolerance_ns
    timelines: dict[str, str] = field(default_factory=dict)  # role -> header | receive | auto (default auto)
    image_size: tuple[int, int] | None = None  # (height, width) to resize to; None keeps the camera's
    # (x, y, width, height) window of the camera image, taken before the resize (the workspace); None = all of it
    image_crop: tuple[int, int, int, int] | None = None
    max_dropped_fraction: float = 0.1  # an episode dropping more of its grid frames is skipped
    append: bool = False
    overwrite: bool = False
    skip_bad: bool = False  # skip a bag that fails instead of failing the conversion
    vcodec: str = "libsvtav1"
    # LeRobot's streaming encoder: frames go to the video encoder as they are added, no PNG files in between
    # (bench/convert.py: several times faster than writing PNGs and encoding them at save_episode)
    streaming_encoding: bool = True
    # Threads of the video encoder (SVT-AV1's lp; the same bitstream for any count). None = one fewer than the
    # cores this process may use (at least 1): the converter's own thread keeps one core busy reading and building
    # frames, and an encoder with a thread per core then fights it (bench/convert.py on 2 cores: 1 thread 10-30 %
    # faster than SVT-AV1's default of one per core).
    encoder_threads: int | None = None
    # An episode's camera messages are read once to align them, and again to build the frames; up to this many MiB
    # of them are kept from the first read instead (1024 MiB = 37 s of 640x480 rgb8 at 30 fps; 0 = always read
    # twice). Each read of a 0.9 MB image costs several copies in rosbags' MCAP reader (bench/convert.py).
    image_cache_mib: int = 1024
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.joint_units not in UNIT_LABELS:
            raise ConvertError(f"--joint-units must be one of {list(UNIT_LABELS)}, got {self.joint_units!r}")
        if self.action_topic and self.action_from_next_state:
            raise ConvertError("--action-topic and --action-from-next-state exclude each other")
        if self.append and self.overwrite:
            raise ConvertError("--append and --overwrite exclude each other")
        for role in (*self.tolerance_ms, *self.timelines):
            if role not in ROLES:
                raise ConvertError(f"unknown stream {role!r} (streams: {list(ROLES)})")
        for role, value in self.timelines.items():
            if value not in ("header", "receive", "auto"):
                raise ConvertError(f"timeline of {role} must be header, receive or auto, got {value!r}")
        if any(v < 0 for v in self.tolerance_ms.values()):
            raise ConvertError(f"tolerances must be >= 0 ms, got {self.tolerance_ms}")
        if self.encoder_threads is None:
            self.encoder_threads = max(1, len(os.sched_getaffinity(0)) - 1)
        elif self.encoder_threads < 1:
            raise ConvertError(f"encoder threads must be >= 1, got {self.encoder_threads}")
        if self.image_cache_mib < 0:
            raise ConvertError(f"the image cache must be >= 0 MiB, got {self.image_cache_mib}")
        if self.fps is not None and (self.fps <= 0 or int(self.fps) != self.fps):
            raise ConvertError(f"--fps must be a positive integer (LeRobot datasets have integer fps), got {self.fps}")
        if self.image_crop is not None:
            self.image_crop = tuple(int(v) for v in self.image_crop)
            try:  # the observation spec is the one judge of a valid crop
                ObservationSpec(image_crop=self.image_crop)
            except ValueError as exc:
                raise ConvertError(f"--image-crop X Y WIDTH HEIGHT: {exc}") from None
        unknown = sorted(set(self.joint_map.values()) - set(JOINT_NAMES))
        if unknown:
            raise ConvertError(f"--joint-map targets {unknown} are not URDF joints {list(JOINT_NAMES)}")

    def content_fields(self) -> dict:
        """Every option that changes the dataset's content (the idempotency fingerprint)."""
        keys = ("use_videos", "joint_units", "image_topic", "state_topic", "action_topic", "action_from_next_state",
                "joint_map", "task", "robot_type", "tolerance_ms", "timelines", "image_size", "max_dropped_fraction")
        fields = {k: getattr(self, k) for k in keys}
        fields["image_size"] = list(self.image_size) if self.image_size else None
        if self.image_crop is not None:  # absent when unset: datasets made before the option keep their fingerprint
            fields["image_crop"] = list(self.image_crop)
        return json.loads(json.dumps(fields, sort_keys=True))


@dataclass
class EpisodeResult:
    bag: Path
    episode_index: int | None
    frames: int
    report: dict
    skipped_reason: str | None = None


@dataclass
class ConvertResult:
    out: Path
    up_to_date: bool
    episodes: list[EpisodeResult]
    skipped: list[Skipped]
    # seconds per stage: read_align (bag opened, stamps and joint messages read, alignment), decode_build (image
    # messages read and decoded, observations built), encoder_wait (waiting for room in LeRobot's video encoder
    # queue: the encoder is the slower side), add_frame (LeRobot's frame buffer, image files), save_episode
    # (LeRobot: parquet, video encoding, stats), finalize (writers closed, meta written, moved into place)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def frames_added(self) -> int:
        return sum(e.frames for e in self.episodes if e.skipped_reason is None)

    @property
    def episodes_added(self) -> int:
        return sum(e.skipped_reason is None for e in self.episodes)


# ------------------------------------------------------------------------------------------------ per bag
def _resolve_topic(bag: EpisodeBag, name: str) -> str | None:
    """``name`` as the bag spells it (with or without the leading slash), or None."""
    for candidate in (name, "/" + name.lstrip("/"), name.lstrip("/")):
        if candidate in bag.topics:
            return candidate
    return None


def _image_topic(bag: EpisodeBag, options: ConvertOptions) -> str:
    if options.image_topic:
        topic = _resolve_topic(bag, options.image_topic) or options.image_topic
        bag.require_topic(topic, IMAGE_TYPES, "image")
        return topic
    for name in DEFAULT_IMAGE_TOPICS:
        topic = _resolve_topic(bag, name)
        if topic and bag.topics[topic] in IMAGE_TYPES:
            bag.require_topic(topic, IMAGE_TYPES, "image")
            return topic
    images = [t for t, m in bag.topics.items() if m in IMAGE_TYPES]
    if len(images) == 1:
        bag.require_topic(images[0], IMAGE_TYPES, "image")
        return images[0]
    listing = ", ".join(f"{t} [{m}]" for t, m in sorted(bag.topics.items())) or "none"
    raise BagError(f"{bag.path}: {'several' if images else 'no'} image topics; choose one with --image-topic "
                   f"(its topics: {listing})")


def _action_source(bag: EpisodeBag, options: ConvertOptions) -> tuple[str, str | None]:
    """("command", topic) or ("next_state", None), from the options, else the bag's metadata, else the default."""
    if options.action_from_next_state:
        return "next_state", None
    if options.action_topic:
        return "command", options.action_topic
    source = bag.meta("action_source")
    if source:
        if source == "next_state":
            return "next_state", None
        if source.startswith("command:") and source[len("command:"):]:
            return "command", source[len("command:"):]
        raise BagError(f"{bag.path}: roarm_vla.action_source {source!r} is neither 'command:<topic>' nor "
                       f"'next_state'")
    if bag.meta("teleop_mode") == "hand_guiding":
        return "next_state", None
    if _resolve_topic(bag, DEFAULT_ACTION_TOPIC):
        return "command", DEFAULT_ACTION_TOPIC
    raise BagError(f"{bag.path}: no action source: the bag has no {DEFAULT_ACTION_TOPIC!r} topic and no "
                   f"roarm_vla.action_source; pass --action-topic TOPIC or --action-from-next-state")


def _timeline(role: str, header_ns: np.ndarray, options: ConvertOptions) -> str:
    choice = options.timelines.get(role, "auto")
    if choice == "auto":
        return "header" if header_ns.size and np.all(header_ns > 0) else "receive"
    if choice == "header" and not np.all(header_ns > 0):
        raise BagError(f"the {role} stream's header stamps are zero; use the receive timeline for it")
    return choice


def _tolerance_ns(role: str, fps: float, options: ConvertOptions, command: bool) -> int:
    if role in options.tolerance_ms:
        return int(round(options.tolerance_ms[role] * 1e6))
    if role == "action" and command:
        return int(round(DEFAULT_COMMAND_TOLERANCE_S * 1e9))
    return int(round(2e9 / fps))  # two frame periods: a 30 Hz camera on a 30 fps grid, with jitter


def _renamed_joint_state(msg: Any, mapping: dict[str, str]) -> Any:
    if not mapping:
        return msg
    return SimpleNamespace(header=msg.header, name=[mapping.get(n, n) for n in msg.name], position=msg.position,
                           velocity=msg.velocity, effort=msg.effort)


def _renamed_trajectory(msg: Any, mapping: dict[str, str]) -> Any:
    if not mapping:
        return msg
    return SimpleNamespace(header=msg.header, joint_names=[mapping.get(n, n) for n in msg.joint_names],
                           points=msg.points)


@dataclass
class _Episode:
    """An aligned episode: its frames come from ``frames()`` (a generator reading the images lazily)."""

    bag: EpisodeBag
    task: str
    teleop_mode: str
    action_source: str
    alignment: Any
    report: dict
    frames: Callable[[], Iterator[dict]]


def _prepare_episode(bag: EpisodeBag, options: ConvertOptions, fps: int, spec: ObservationSpec) -> _Episode:
    task = options.task or bag.meta("task")
    if not task:
        raise BagError(f"{bag.path}: no task text (no roarm_vla.task in the bag); pass --task TEXT")
    units = bag.meta("joint_units", "radians")
    if units != "radians":
        raise BagError(f"{bag.path}: roarm_vla.joint_units is {units!r}; joint topics must carry URDF radians")
    image_topic = _image_topic(bag, options)
    state_topic = _resolve_topic(bag, options.state_topic) or options.state_topic
    bag.require_topic(state_topic, (JOINT_STATE_TYPE,), "joint-state")
    kind, action_topic = _action_source(bag, options)
    if kind == "command":
        action_topic = _resolve_topic(bag, action_topic) or action_topic
        action_type = bag.require_topic(action_topic, (TRAJECTORY_TYPE, JOINT_STATE_TYPE), "action")

    images = bag.read_topic(image_topic, keep_messages=False, keep_raw_bytes=options.image_cache_mib << 20)
    states = bag.read_topic(state_topic, keep_messages=True)
    state_msgs = [_renamed_joint_state(m, options.joint_map) for m in states.messages]
    streams = []
    for role, data in (("image", images), ("state", states)):
        timeline = _timeline(role, data.header_ns, options)
        streams.append(Stream(role, data.header_ns if timeline == "header" else data.receive_ns, timeline,
                              _tolerance_ns(role, fps, options, False), 0,
                              data.receive_ns if timeline == "header" else None))
    if kind == "command":
        commands = bag.read_topic(action_topic, keep_messages=True)
        if action_type == TRAJECTORY_TYPE:
            action_msgs = [_renamed_trajectory(m, options.joint_map) for m in commands.messages]
            to_action = action_from_trajectory
        else:
            action_msgs = [_renamed_joint_state(m, options.joint_map) for m in commands.messages]
            to_action = state_from_joint_state
        timeline = _timeline("action", commands.header_ns, options)
        streams.append(Stream("action", commands.header_ns if timeline == "header" else commands.receive_ns,
                              timeline, _tolerance_ns("action", fps, options, True), 0,
                              commands.receive_ns if timeline == "header" else None))
        source = f"command:{action_topic}"
    else:
        action_msgs, to_action = state_msgs, state_from_joint_state
        state_stream = streams[1]
        streams.append(Stream("action", state_stream.times_ns, state_stream.timeline,
                              _tolerance_ns("action", fps, options, False), 1, state_stream.receive_ns))
        source = "next_state"
    for role, msg, to_vector in (("joint-state", state_msgs[0], state_from_joint_state),
                                 ("action", action_msgs[0], to_action)):
        try:  # before any frame is written: a robot with other joint names fails here, with the way out
            to_vector(msg, spec)
        except ValueError as err:
            hint = ("; map the bag's joint names to the URDF's with --joint-map SRC=DST" if "lacks joint" in str(err)
                    else "")
            raise BagError(f"{bag.path}: {role} topic: {err}{hint}") from None
    try:
        alignment = align(streams, fps)
    except AlignmentError as err:
        raise BagError(f"{bag.path}: {err}") from None
    report = alignment.report()
    report["topics"] = {"image": image_topic, "state": state_topic, "action": source}
    expected_shape: list[tuple[int, ...]] = []

    def frames() -> Iterator[dict]:
        image_index = alignment.indices["image"]
        uses = Counter(image_index.tolist())
        pending = bag.iter_images(image_topic, images.raw)  # the kept bytes, else a second read of the bag
        cache: dict[int, Any] = {}
        for k in range(alignment.kept_frames):
            wanted = int(image_index[k])
            while wanted not in cache:
                try:
                    index, msg = next(pending)
                except StopIteration:
                    raise BagError(f"{bag.path}: image message {wanted} missing on a second read") from None
                if uses[index]:
                    cache[index] = msg
            image_msg = cache[wanted]
            uses[wanted] -= 1
            if not uses[wanted]:
                del cache[wanted]
            try:
                observation = observation_from_messages(image_msg, state_msgs[alignment.indices["state"][k]], spec)
                action = to_action(action_msgs[alignment.indices["action"][k]], spec)
            except ValueError as err:
                raise BagError(f"{bag.path}: frame {k}: {err}") from None
            shape = observation[spec.image_key].shape
            if not expected_shape:
                expected_shape.append(shape)
            elif shape != expected_shape[0]:
                raise BagError(f"{bag.path}: image size changes within the episode at frame {k}: {shape[:2]} after "
                               f"{expected_shape[0][:2]}; pass --image-size H W to resize every image")
            yield {**observation, ACTION_KEY: action}

    return _Episode(bag, task, bag.meta("teleop_mode", "unknown"), source, alignment, report, frames)


# ------------------------------------------------------------------------------------------------ dataset
def _features(image_shape: tuple[int, int, int], options: ConvertOptions, spec: ObservationSpec) -> dict:
    unit = UNIT_LABELS[options.joint_units]
    joints = {"dtype": "float32", "shape": (spec.state_dim,), "names": list(spec.state_joint_names), "units": unit}
    return {
        STATE_KEY: dict(joints),
        ACTION_KEY: dict(joints),
        spec.image_key: {"dtype": "video" if options.use_videos else "image", "shape": tuple(image_shape),
                         "names": ["height", "width", "channels"]},
    }


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise ConvertError(f"{path} is not valid JSON ({err})") from None


def _options_fingerprint(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _print_report(episode: EpisodeResult, stream=sys.stdout) -> None:
    r = episode.report
    head = (f"episode {episode.episode_index} <- {episode.bag.name}: {r['kept_frames']}/{r['grid_frames']} frames "
            f"kept ({r['dropped_frames']} dropped), {r['duration_s']:.2f} s")
    if episode.skipped_reason:
        head = f"SKIPPED {episode.bag.name}: {episode.skipped_reason}"
    print(head, file=stream)
    for name, s in r.get("streams", {}).items():
        latency = f", latency {s['median_latency_s'] * 1e3:.1f} ms" if s.get("median_latency_s") is not None else ""
        print(f"  {name:6s} {r['topics'].get(name, ''):28s} {s['messages']:6d} msgs {s['rate_hz']:6.1f} Hz "
              f"({s['timeline']}), max gap {s['max_gap_s'] * 1e3:.0f} ms, {s['gaps']} gaps, "
              f"{s['backwards_steps']} backwards (max {s['largest_backwards_s'] * 1e3:.0f} ms), "
              f"{s['dropped_frames']} frames dropped{latency}", file=stream)


def _progress(iterable, **kwargs):
    from tqdm import tqdm

    return tqdm(iterable, **kwargs)


def _discard(dataset: Any, tmp: Path) -> None:
    """Remove a failed conversion's temporary folder. LeRobot's metadata writer flushes its buffered episodes when
    it is closed, at the latest when the dataset object is garbage collected, which would recreate files in the
    removed folder: close its writers first."""
    if dataset is not None:
        try:
            dataset.finalize()
        except Exception:  # the folder goes anyway; the conversion's own error is the one to report
            pass
    shutil.rmtree(tmp, ignore_errors=True)


def _timed(iterable, stages: dict[str, float], key: str) -> Iterator:
    """``iterable``'s items, the time spent producing them added to ``stages[key]``."""
    iterator = iter(iterable)
    while True:
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            stages[key] += time.perf_counter() - start
            return
        stages[key] += time.perf_counter() - start
        yield item


def _swap_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.parent / f".{out.name}.replaced-{os.getpid()}"
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def convert(inputs: Sequence[str | Path], options: ConvertOptions, log=print) -> ConvertResult:
    """Convert the episode bags under ``inputs`` into the dataset at ``options.out`` (see the module docstring)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out = options.out.resolve()
    bags, skipped = find_bags(inputs)
    for item in skipped:
        log(f"skipping incomplete episode {item.path}: {item.reason}")
    if not bags:
        raise ConvertError(f"no complete episode bag in {[str(p) for p in inputs]}")
    fingerprints = {bag: bag_fingerprint(bag) for bag in bags}
    content = options.content_fields()
    options_fp = _options_fingerprint(content)

    existing = None
    if out.exists():
        existing = _read_json(out / ROARM_META_FILE)
        if existing is None:
            if not options.overwrite:
                raise ConvertError(f"{out} exists and is not a dataset written by this converter (no "
                                   f"{ROARM_META_FILE}); choose another --out or pass --overwrite")
        else:
            conversion = existing.get("conversion", {})
            held = {b["fingerprint"] for b in existing.get("source_bags", []) + existing.get("skipped_bags", [])}
            same_options = conversion.get("options_fingerprint") == options_fp
            if not options.overwrite and same_options and set(fingerprints.values()) <= held and (
                    options.append or set(fingerprints.values()) == held):
                log(f"{out}: up to date ({len(held)} bag(s) already converted with these options)")
                return ConvertResult(out, True, [], skipped)
            if options.append and not same_options:
                changed = sorted(k for k in content if conversion.get("options", {}).get(k) != content[k])
                raise ConvertError(f"{out} was converted with other options ({', '.join(changed)} differ): "
                                   f"--append needs the same options; convert into another folder")
            if not options.append and not options.overwrite:
                raise ConvertError(f"{out} exists and was converted from other bags or options; pass --append to "
                                   f"add episodes or --overwrite to rebuild it")
    elif options.append:
        log(f"{out} does not exist yet: creating it")
    appending = options.append and existing is not None
    if appending:
        held = {b["fingerprint"] for b in existing.get("source_bags", []) + existing.get("skipped_bags", [])}
        for bag in [b for b in bags if fingerprints[b] in held]:
            log(f"already in the dataset: {bag}")
        bags = [b for b in bags if fingerprints[b] not in held]

    fps = options.fps
    if fps is None and appending:
        fps = int(existing["fps"])
    spec = ObservationSpec(state_joint_names=JOINT_NAMES, joint_units=options.joint_units,
                           image_key=DEFAULT_IMAGE_KEY, image_size=options.image_size, image_crop=options.image_crop)
    repo_id = options.repo_id or (existing or {}).get("repo_id") or f"local/{out.name}"

    tmp = out.parent / f".{out.name}.converting-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    dataset = None
    image_shape = tuple(existing["image_shape"]) if appending else None
    results: list[EpisodeResult] = []
    stages = dict.fromkeys(("read_align", "decode_build", "encoder_wait", "add_frame", "save_episode", "finalize"),
                           0.0)
    stats_patch = uint8_frame_stats()  # the same video statistics as LeRobot's, from value counts (video_encoding)
    stats_patch.__enter__()
    try:
        if appending:
            shutil.copytree(out, tmp)
            if fps != int(existing["fps"]):
                raise ConvertError(f"{out} holds {existing['fps']} fps episodes; --fps {fps} cannot be appended")
            dataset = LeRobotDataset(repo_id, root=tmp, vcodec=options.vcodec,
                                     streaming_encoding=options.streaming_encoding and options.use_videos,
                                     encoder_threads=options.encoder_threads)
        next_index = dataset.meta.total_episodes if dataset is not None else 0
        for path in _progress(bags, desc="bags", unit="bag", disable=not options.progress):
            try:
                started = time.perf_counter()
                with EpisodeBag(path) as bag:
                    if fps is None:
                        bag_fps = bag.meta("fps")
                        if not bag_fps:
                            raise MissingFpsError(f"{path}: no roarm_vla.fps in the bag; pass --fps")
                        fps = int(round(float(bag_fps)))
                    episode = _prepare_episode(bag, options, fps, spec)
                    stages["read_align"] += time.perf_counter() - started
                    result = EpisodeResult(path, None, episode.alignment.kept_frames, episode.report)
                    drop = episode.alignment.dropped_frames / max(episode.alignment.grid_frames, 1)
                    if drop > options.max_dropped_fraction or episode.alignment.kept_frames < 2:
                        result.skipped_reason = (f"{episode.alignment.dropped_frames} of "
                                                 f"{episode.alignment.grid_frames} frames dropped (more than "
                                                 f"{options.max_dropped_fraction:.0%}) or under 2 frames kept")
                    else:
                        bar = _progress(_timed(episode.frames(), stages, "decode_build"), total=episode.alignment.kept_frames, desc=path.name,
                                        unit="frame", leave=False, disable=not options.progress)
                        for frame in bar:
                            if dataset is None:
                                image_shape = frame[spec.image_key].shape
                                dataset = LeRobotDataset.create(
                                    repo_id, fps, _features(image_shape, options, spec), root=tmp,
                                    robot_type=options.robot_type or bag.meta("robot_type") or "roarm_m3",
                                    use_videos=options.use_videos, vcodec=options.vcodec,
                                    streaming_encoding=options.streaming_encoding and options.use_videos,
                                    encoder_threads=options.encoder_threads, image_writer_threads=2)
                            elif frame[spec.image_key].shape != tuple(image_shape):
                                raise BagError(f"{path}: images are {frame[spec.image_key].shape[:2]}, the dataset's "
                                               f"are {tuple(image_shape)[:2]}; pass --image-size H W to resize all")
                            started = time.perf_counter()
                            wait_for_encoder_room(dataset)  # LeRobot's feed_frame drops a frame when it is full
                            stages["encoder_wait"] += time.perf_counter() - started
                            started = time.perf_counter()
                            dataset.add_frame({**frame, "task": episode.task})
                            stages["add_frame"] += time.perf_counter() - started
                        started = time.perf_counter()
                        dataset.save_episode()
                        stages["save_episode"] += time.perf_counter() - started
                        lost = dropped_frames(dataset)
                        if lost:  # the video would be shorter than the episode's frames: never write that
                            raise ConvertError(f"{path}: the video encoder dropped frames {lost}")
                        result.episode_index = next_index
                        next_index += 1
                    result.report.update(task=episode.task, teleop_mode=episode.teleop_mode,
                                         action_source=episode.action_source, fingerprint=fingerprints[path],
                                         outcome=bag.meta("outcome"), seed=bag.meta("seed"),
                                         bag_episode_index=bag.meta("episode_index"))
            except BagError as err:
                if dataset is not None and dataset.episode_buffer and dataset.episode_buffer.get("size"):
                    dataset.clear_episode_buffer()
                if not options.skip_bad:
                    raise
                log(f"skipping bad bag {path}: {err}")
                result = EpisodeResult(path, None, 0, {"fingerprint": fingerprints[path]}, f"bad bag: {err}")
                results.append(result)
                continue
            results.append(result)
            if result.report.get("streams"):
                _print_report(result)
        if dataset is None:
            raise ConvertError("no episode was converted: " + "; ".join(
                f"{r.bag.name}: {r.skipped_reason}" for r in results if r.skipped_reason))
        started = time.perf_counter()
        dataset.finalize()
        _write_meta(tmp, existing if appending else None, results, options, content, options_fp, fps, repo_id,
                    image_shape, spec)
        _swap_into_place(tmp, out)
        stages["finalize"] += time.perf_counter() - started
    except BaseException:
        _discard(dataset, tmp)
        raise
    finally:
        stats_patch.__exit__(None, None, None)
    log(f"{out}: {sum(r.skipped_reason is None for r in results)} episode(s), "
        f"{sum(r.frames for r in results if r.skipped_reason is None)} frames added")
    return ConvertResult(out, False, results, skipped, {k: round(v, 4) for k, v in stages.items()})


def _write_meta(root: Path, existing: dict | None, results: list[EpisodeResult], options: ConvertOptions,
                content: dict, options_fp: str, fps: int, repo_id: str, image_shape, spec: ObservationSpec) -> None:
    converted = [r for r in results if r.skipped_reason is None]
    source_bags = list((existing or {}).get("source_bags", []))
    skipped_bags = list((existing or {}).get("skipped_bags", []))
    for r in converted:
        source_bags.append({"path": str(r.bag), "name": r.bag.name, "fingerprint": r.report["fingerprint"],
                            "episode_index": r.episode_index, "frames": r.frames, "task": r.report.get("task"),
                            "teleop_mode": r.report.get("teleop_mode"), "action_source": r.report.get("action_source"),
                            "outcome": r.report.get("outcome"), "seed": r.report.get("seed")})
    for r in results:
        if r.skipped_reason is not None:
            skipped_bags.append({"path": str(r.bag), "name": r.bag.name, "fingerprint": r.report["fingerprint"],
                                 "reason": r.skipped_reason})
    meta = {
        "joint_names": list(spec.state_joint_names),
        "joint_units": options.joint_units,
        "image_key": spec.image_key,
        "image_size": [int(image_shape[0]), int(image_shape[1])],
        "image_crop": list(spec.image_crop) if spec.image_crop else None,
        "image_shape": [int(v) for v in image_shape],
        "fps": int(fps),
        "repo_id": repo_id,
        "state_key": STATE_KEY,
        "action_key": ACTION_KEY,
        "teleop_modes": sorted({b.get("teleop_mode") or "unknown" for b in source_bags}),
        "action_sources": sorted({b.get("action_source") or "" for b in source_bags}),
        "source_bags": source_bags,
        "skipped_bags": skipped_bags,
        "conversion": {"options": content, "options_fingerprint": options_fp},
    }
    (root / ROARM_META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    previous = _read_json(root / SYNC_REPORT_FILE) or {"episodes": []}
    for r in results:
        previous["episodes"].append({"bag": str(r.bag), "episode_index": r.episode_index,
                                     "skipped": r.skipped_reason, **r.report})
    (root / SYNC_REPORT_FILE).write_text(json.dumps(previous, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
