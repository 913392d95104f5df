"""What the policy is trained on is what it sees: the converter's dataset rows against the live policy node's
observation, built from the same messages of a recorded bag.

The bag is recorded for real: ``episode_recorder`` in its own process (raw CDR from its DDS subscriptions) records a
rig in this process that plays camera (bgr8, 96x128: the encoding and the resize to the checkpoint's 64x64 are on
the path) and arm driver (joint states at 50 Hz, commands at 10 Hz). The bag is converted to a PNG dataset (lossless,
so equality is exact). For each dataset row, the frame's image and joint-state messages are found by the alignment
rule worked out here from the bag's stamps (latest header stamp at or before the row's grid time) and:

- node functions: the messages deserialized by rclpy (the objects the node's callbacks get) go through the node's
  observation path: ``_on_joint_state``'s ``state_from_joint_state(msg, URDF_SPEC)``, then ``PolicyRuntime.predict``'s
  ``build_observation(image_to_rgb(image), joint_vector(JOINT_NAMES, state, spec), spec)`` with the spec read from
  the dataset's meta/roarm_vla.json (the keys fit copies into the checkpoint, which the runtime reads). Compared
  bit for bit with the row, in radians and in degrees.
- node process: ``vla_policy`` runs the tiny SmolVLA in its own process; the two messages of a row are replayed over
  DDS (the bag's CDR bytes, header stamps moved to now so they are fresh, nothing else changed) and the chunk it
  publishes on vla/action_chunk is compared with the same checkpoint run in this process on the dataset row
  (same start noise). A row's neighbour gives another chunk, so a different observation would show.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow

FPS = 10
TASK = "Pick up the white box"
IMAGE_HW = (96, 128)
CROP = (16, 8, 96, 80)  # x, y, width, height of the 128x96 camera image


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def stop_process(child: subprocess.Popen) -> str:
    child.send_signal(2)  # SIGINT: the node shuts down cleanly
    try:
        return child.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        child.kill()
        return child.communicate()[0]


class Ros:
    """An rclpy context with a spinning executor in a thread, for the rig nodes of this test."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.nodes = []

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        if not self.thread.is_alive():
            self.thread.start()
        return node

    def close(self):
        import rclpy

        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(10.0)
        for node in self.nodes:
            node.destroy_node()
        rclpy.shutdown(context=self.context)


def make_arm_rig(context):
    """Camera + arm driver stand-in: distinct random images, smoothly moving joints, 10 Hz commands."""
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from roarm_description.joints import HOME_POSITIONS, JOINT_NAMES

    class ArmRig(Node):
        def __init__(self):
            super().__init__("parity_arm_rig", context=context)
            self.image_pub = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
            self.state_pub = self.create_publisher(JointState, "joint_states", 10)
            self.command_pub = self.create_publisher(JointTrajectory, "joint_trajectory", 10)
            self.rng = np.random.default_rng(3)
            self.start = time.monotonic()
            self.create_timer(1.0 / 15.0, self.camera)
            self.create_timer(1.0 / 50.0, self.joints)
            self.create_timer(1.0 / 10.0, self.command)

        def pose(self):
            t = time.monotonic() - self.start
            # irrational-looking values: every float64 -> float32 rounding is exercised
            return HOME_POSITIONS + 0.3 * np.sin(1.7 * t + np.arange(6) * 0.731) + 1e-3 / 3.0

        def camera(self):
            msg = Image()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.header.frame_id = "camera"
            msg.height, msg.width = IMAGE_HW
            msg.encoding, msg.step = "bgr8", IMAGE_HW[1] * 3
            msg.data = self.rng.integers(0, 256, IMAGE_HW[0] * IMAGE_HW[1] * 3, dtype=np.uint8).tobytes()
            self.image_pub.publish(msg)

        def joints(self):
            msg = JointState()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.name = list(JOINT_NAMES)
            msg.position = [float(x) for x in self.pose()]
            self.state_pub.publish(msg)

        def command(self):
            msg = JointTrajectory()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.joint_names = list(JOINT_NAMES)
            msg.points = [JointTrajectoryPoint(positions=[float(x) for x in self.pose() + 0.05])]
            self.command_pub.publish(msg)

    return ArmRig()


def record_episode(tmp_path) -> "Path":
    """One episode recorded by episode_recorder in its own process; returns the bag directory."""
    from roarm_common.action_client import ActionClient  # rclpy 7 can lose an answer (see the module)
    from rclpy.node import Node

    from roarm_interfaces.action import RecordEpisode

    out = tmp_path / "episodes"
    out.mkdir()
    recorder = subprocess.Popen(
        [sys.executable, "-m", "roarm_recorder.episode_recorder_node", "--ros-args", "-p", f"output_dir:={out}",
         "-p", f"fps:={float(FPS)}", "-p", "teleop_mode:=scripted_expert", "-p", "torque_service:=''"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    ros = Ros()
    try:
        ros.add(make_arm_rig(ros.context))
        client_node = ros.add(Node("parity_record_client", context=ros.context))
        client = ActionClient(client_node, RecordEpisode, "record_episode")
        assert wait_for(lambda: client.wait_for_server(timeout_sec=0.5) or recorder.poll() is not None, 120.0)
        assert recorder.poll() is None and client.server_is_ready(), "episode_recorder's action never came up"
        goal = RecordEpisode.Goal(task=TASK, max_duration=2.5)
        sent = client.send_goal_async(goal)
        assert wait_for(sent.done, 30.0) and sent.result().accepted, "goal not accepted"
        result_future = sent.result().get_result_async()
        assert wait_for(result_future.done, 60.0), "the episode did not end"
        result = result_future.result().result
        assert result.kept, result.message
        from pathlib import Path

        return Path(result.bag_path)
    finally:
        ros.close()
        output = stop_process(recorder)
        assert "Traceback" not in output, output[-3000:]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(bag, radians dataset, degrees dataset): one recorded episode converted twice."""
    from roarm_training.convert import ConvertOptions, convert

    tmp_path = tmp_path_factory.mktemp("parity")
    bag = record_episode(tmp_path)
    datasets = {}
    for units in ("radians", "degrees"):
        datasets[units] = convert([bag], ConvertOptions(out=tmp_path / f"ds_{units}", use_videos=False,
                                                        image_size=(64, 64), joint_units=units,
                                                        progress=False), log=lambda *_: None).out
    datasets["cropped"] = convert([bag], ConvertOptions(out=tmp_path / "ds_cropped", use_videos=False,
                                                        image_size=(64, 64), image_crop=CROP,
                                                        progress=False), log=lambda *_: None).out
    return bag, datasets


def bag_messages(bag):
    """Per topic: (header stamp ns, CDR bytes, rclpy message) in receive order, rclpy-deserialized."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image, JointState

    from roarm_training.bags import EpisodeBag

    out = {}
    with EpisodeBag(bag) as episode:
        for topic, cls in (("camera/image_raw", Image), ("joint_states", JointState)):
            rows = []
            for _, raw in episode.iter_raw(topic if topic in episode.topics else "/" + topic):
                msg = deserialize_message(raw, cls)
                rows.append((stamp_ns(msg.header.stamp), raw, msg))
            out[topic] = rows
    return out


def row_sources(dataset_root, messages):
    """Per dataset row: (image message index, joint-state message index), by the alignment rule worked out from
    the stamps here: row k is the k-th grid frame not dropped, at start + round(j * 1e9 / fps) ns; each stream gives
    its message with the latest header stamp at or before that time."""
    report = json.loads((dataset_root / "meta" / "roarm_vla_sync_report.json").read_text())["episodes"][0]
    assert report["streams"]["image"]["timeline"] == "header" and report["streams"]["state"]["timeline"] == "header"
    dropped = set(report["dropped_grid_frames"])
    grid = [j for j in range(report["grid_frames"]) if j not in dropped]
    sources = []
    for j in grid:
        t = report["start_ns"] + round(j * 1e9 / report["fps"])
        pick = []
        for topic in ("camera/image_raw", "joint_states"):
            candidates = [i for i, (stamp, _, _) in enumerate(messages[topic]) if stamp <= t]
            pick.append(max(candidates, key=lambda i: messages[topic][i][0]))
        sources.append(tuple(pick))
    return sources


def load(root):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(f"local/{root.name}", root=root)


def row_observation(frame, spec):
    """A dataset row as the HxWx3 uint8 image and float32 state it was written from (PNG: exact)."""
    image = np.round(frame[spec.image_key].numpy().transpose(1, 2, 0) * 255.0).astype(np.uint8)
    return image, frame["observation.state"].numpy()


def live_observation(image_msg, joint_state_msg, spec):
    """The node's path: _on_joint_state keeps state_from_joint_state(msg, URDF_SPEC) as float; the inference
    thread converts the image message; PolicyRuntime.predict builds the observation."""
    from roarm_description.joints import JOINT_NAMES
    from vla_policy_node.observation import build_observation, image_to_rgb, joint_vector, state_from_joint_state
    from vla_policy_node.vla_policy_node import URDF_SPEC

    measured = state_from_joint_state(joint_state_msg, URDF_SPEC).astype(float)
    return build_observation(image_to_rgb(image_msg), joint_vector(JOINT_NAMES, measured, spec), spec)


@pytest.mark.parametrize("variant", ["radians", "degrees", "cropped"])
def test_dataset_rows_equal_the_node_functions_observation(recorded, variant):
    from vla_policy_node.observation import STATE_KEY, spec_from_meta

    bag, datasets = recorded
    root = datasets[variant]
    units = "degrees" if variant == "degrees" else "radians"
    spec = spec_from_meta(json.loads((root / "meta" / "roarm_vla.json").read_text()))
    assert spec.joint_units == units and spec.image_size == (64, 64)
    assert spec.image_crop == (CROP if variant == "cropped" else None)  # the node crops as the converter did
    messages = bag_messages(bag)
    sources = row_sources(root, messages)
    ds = load(root)
    assert len(ds) == len(sources) >= 15, (len(ds), len(sources))
    assert len({i for i, _ in sources}) >= 10, "rows come from many different images"
    for k, (image_index, state_index) in enumerate(sources):
        image, state = row_observation(ds[k], spec)
        live = live_observation(messages["camera/image_raw"][image_index][2],
                                messages["joint_states"][state_index][2], spec)
        assert np.array_equal(live[spec.image_key], image), f"row {k}: image differs"
        assert live[STATE_KEY].dtype == np.float32 and state.dtype == np.float32
        assert np.array_equal(live[STATE_KEY], state), (
            f"row {k}: state differs by {np.abs(live[STATE_KEY].astype(float) - state).max()} {units}")
    # the rule above is not vacuous: the neighbouring joint state is another vector
    k = len(sources) // 2
    other = live_observation(messages["camera/image_raw"][sources[k][0]][2],
                             messages["joint_states"][sources[k][1] - 1][2], spec)
    assert not np.array_equal(other[STATE_KEY], row_observation(ds[k], spec)[1])
    if spec.image_crop:  # ... and the crop is not either: the whole camera image resized is another picture
        import dataclasses

        whole = live_observation(messages["camera/image_raw"][sources[k][0]][2],
                                 messages["joint_states"][sources[k][1]][2], dataclasses.replace(spec, image_crop=None))
        assert not np.array_equal(whole[spec.image_key], row_observation(ds[k], spec)[0])


def restamped(raw: bytes, ns: int) -> bytes:
    """The CDR bytes with the header stamp (right after the 4-byte encapsulation) set to ``ns``; nothing else."""
    little = raw[1] in (0x01, 0x03)
    stamp = struct.pack("<iI" if little else ">iI", ns // 1_000_000_000, ns % 1_000_000_000)
    return bytes(raw[:4]) + stamp + bytes(raw[12:])


def make_replay_rig(context):
    """Publishes CDR bytes from the bag on the node's topics and collects vla/action_chunk."""
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState

    from roarm_interfaces.msg import ActionChunk

    class ReplayRig(Node):
        def __init__(self):
            super().__init__("parity_replay_rig", context=context)
            self.image_pub = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
            self.state_pub = self.create_publisher(JointState, "joint_states", 10)
            self.lock = threading.Lock()
            self.chunks = []
            self.create_subscription(ActionChunk, "vla/action_chunk", self.on_chunk, 10)

        def on_chunk(self, msg):
            with self.lock:
                self.chunks.append(msg)

        def chunks_since(self, count):
            with self.lock:
                return list(self.chunks[count:])

    return ReplayRig()


def node_chunk_for(rig, image_raw: bytes, state_raw: bytes, settle_s: float = 0.4, timeout_s: float = 60.0):
    """Replay one (image, joint state) pair until the node publishes a chunk observed on one of its images.

    The joint state goes out alone for ``settle_s`` first (so it is the node's latest state, whatever the order of
    delivery across topics), then both, re-stamped to now, the image at 10 Hz; only images sent after that count.
    """
    start, count = time.monotonic(), len(rig.chunks_since(0))
    sent_images: list[int] = []
    next_image = start + settle_s
    while time.monotonic() - start < timeout_s:
        now = time.time_ns()
        rig.state_pub.publish(restamped(state_raw, now))
        if time.monotonic() >= next_image:
            rig.image_pub.publish(restamped(image_raw, now))
            sent_images.append(now)
            next_image += 0.1
        for chunk in rig.chunks_since(count):
            observed = stamp_ns(chunk.header.stamp)
            if any(abs(observed - sent) < 2_000 for sent in sent_images):
                return np.array(chunk.positions, dtype=float).reshape(chunk.num_steps, len(chunk.joint_names))
        time.sleep(0.02)
    raise AssertionError(f"no chunk on the replayed images within {timeout_s} s")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from roarm_training.small_smolvla import build_tiny_checkpoint, build_tiny_vlm

    vlm = build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"))
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt"), vlm_folder=vlm)


def test_node_process_fed_the_bag_messages_acts_as_on_the_dataset_rows(recorded, tiny_checkpoint):
    """The vla_policy process builds its observation from replayed bag messages; its chunk equals the checkpoint's
    chunk on the dataset row (same noise), and differs from the chunk on a neighbouring row."""
    from vla_policy_node.observation import spec_from_meta
    from vla_policy_node.policy_runtime import PolicyRuntime, RuntimeConfig

    bag, datasets = recorded
    root = datasets["radians"]
    spec = spec_from_meta(json.loads((root / "meta" / "roarm_vla.json").read_text()))
    runtime = PolicyRuntime(RuntimeConfig(checkpoint=str(tiny_checkpoint)))
    assert runtime.resolve_spec() == spec, "the tiny checkpoint reads what the dataset holds (64x64, radians)"
    messages = bag_messages(bag)
    sources = row_sources(root, messages)
    ds = load(root)
    rows = [2, len(sources) // 2, len(sources) - 2]
    expected = {}
    for k in rows + [k + 1 for k in rows]:
        image, state = row_observation(ds[k], spec)
        expected[k] = runtime.predict(image, state.astype(float), TASK, noise_seed=0).actions

    node = subprocess.Popen(
        [sys.executable, "-m", "vla_policy_node.vla_policy_node", "--ros-args", "-p", f"checkpoint:={tiny_checkpoint}",
         "-p", "noise_seed:=0", "-p", f"task:={TASK}", "-p", "observation_timeout_s:=0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    ros = Ros()
    try:
        rig = ros.add(make_replay_rig(ros.context))
        for k in rows:
            image_index, state_index = sources[k]
            time.sleep(0.8)  # silence: the node's input goes stale and its plan is dropped; the next image starts
            chunk = node_chunk_for(rig, messages["camera/image_raw"][image_index][1],
                                   messages["joint_states"][state_index][1], timeout_s=120.0 if k == rows[0] else 60.0)
            assert node.poll() is None
            neighbour = np.abs(chunk - expected[k + 1]).max()
            print(f"row {k}: node vs row {np.abs(chunk - expected[k]).max():.2e} rad, vs row {k + 1} {neighbour:.2e}")
            np.testing.assert_allclose(chunk, expected[k], atol=1e-5, err_msg=f"row {k}")
            assert neighbour > 1e-3, f"row {k}: the neighbouring row's chunk is as close ({neighbour})"
    finally:
        ros.close()
        output = stop_process(node)
    assert "Traceback" not in output, output[-3000:]
