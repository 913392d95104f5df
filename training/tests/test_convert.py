"""rosbag2 episodes (written with rosbags' Writer, known stamp patterns) -> LeRobotDataset v3.0, loaded back."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bag_fixtures import (TASK, command_positions, custom_data, image_pixels, regular_episode, state_positions,
                          write_episode)
from roarm_description.joints import JOINT_NAMES, sdk_degrees_to_urdf, urdf_to_sdk_degrees
from roarm_training.bags import INCOMPLETE_MARKER, BagError
from roarm_training.convert import ROARM_META_FILE, SYNC_REPORT_FILE, ConvertError, ConvertOptions, convert

IMAGE_KEY = "observation.images.top"


def load(root):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(f"local/{root.name}", root=root)


def frame_image(frame):
    """LeRobot's float CHW [0, 1] image -> HxWx3 uint8 (exact for PNG-stored images)."""
    return np.round(frame[IMAGE_KEY].numpy().transpose(1, 2, 0) * 255.0).astype(np.uint8)


def gap_episode(path):
    """fps 10, tolerance 200 ms: images 0 100 205 300 | 700 800 900 ms, joint states every 20 ms, commands every
    100 ms. Frame 600 sees a 300 ms-old image: dropped. Frame 200 must not take the image stamped 205."""
    return write_episode(path, image_ms=[0, 100, 205, 300, 700, 800, 900], state_ms=list(range(0, 901, 20)),
                         command_ms=list(range(0, 901, 100)), custom=custom_data(fps=10))


GAP_FRAMES_MS = [0, 100, 200, 300, 400, 500, 700, 800, 900]
GAP_IMAGES = [0, 1, 1, 3, 3, 3, 4, 5, 6]


def backwards_episode(path):
    """fps 10: image 4 is stamped 480 ms but arrives after image 3 (600 ms): 120 ms backwards (< 200 ms)."""
    return write_episode(path, image_ms=[0, 200, 400, 600, 480, 800, 1000],
                         image_receive_ms=[2, 202, 402, 602, 610, 802, 1002],
                         state_ms=list(range(0, 1001, 20)), command_ms=list(range(0, 1001, 100)),
                         custom=custom_data(fps=10))


BACKWARDS_IMAGES = [0, 0, 1, 1, 2, 4, 3, 3, 5, 5, 6]


def hand_guided_episode(path):
    """fps 10, no commands: action = joint state one frame (100 ms) later; frames 0..400."""
    return write_episode(path, image_ms=list(range(0, 501, 100)), state_ms=list(range(0, 501, 20)),
                         custom=custom_data(fps=10, teleop_mode="hand_guiding", action_source="next_state"))


def test_episodes_convert_with_hand_worked_alignment_tasks_and_stats(tmp_path):
    bags = tmp_path / "bags"
    gap_episode(bags / "ep_0")
    backwards_episode(bags / "ep_1")
    hand_guided_episode(bags / "ep_2")
    out = tmp_path / "dataset"
    result = convert([bags], ConvertOptions(out=out, use_videos=False, progress=False))
    assert [e.frames for e in result.episodes] == [9, 11, 5]

    ds = load(out)
    assert ds.num_episodes == 3 and len(ds) == 25 and ds.fps == 10
    assert list(ds.meta.tasks.index) == [TASK]
    assert ds.meta.info["features"]["observation.state"]["names"] == list(JOINT_NAMES)
    assert ds.meta.info["features"]["observation.state"]["units"] == "rad"

    # episode 0: the gap drops frame 600; each frame holds the messages worked out by hand
    for k, (t, image) in enumerate(zip(GAP_FRAMES_MS, GAP_IMAGES)):
        frame = ds[k]
        assert np.array_equal(frame_image(frame), image_pixels(image))
        np.testing.assert_allclose(frame["observation.state"].numpy(), state_positions(t // 20), atol=1e-6)
        np.testing.assert_allclose(frame["action"].numpy(), command_positions(t // 100), atol=1e-6)
        assert frame["task"] == TASK
    # episode 1: the late, backwards-stamped image 4 is the latest at or before 500 ms
    for k, image in enumerate(BACKWARDS_IMAGES):
        assert np.array_equal(frame_image(ds[9 + k]), image_pixels(image))
    # episode 2: action = the measured state 100 ms (5 joint-state messages) later
    for k in range(5):
        frame = ds[20 + k]
        np.testing.assert_allclose(frame["observation.state"].numpy(), state_positions(5 * k), atol=1e-6)
        np.testing.assert_allclose(frame["action"].numpy(), state_positions(5 * k + 5), atol=1e-6)

    # stats computed by LeRobot over every frame
    stats = json.loads((out / "meta" / "stats.json").read_text())
    states = np.stack([ds[i]["observation.state"].numpy() for i in range(len(ds))])
    np.testing.assert_allclose(stats["observation.state"]["min"], states.min(axis=0), atol=1e-6)
    np.testing.assert_allclose(stats["observation.state"]["max"], states.max(axis=0), atol=1e-6)
    np.testing.assert_allclose(stats["observation.state"]["mean"], states.mean(axis=0), atol=1e-5)
    assert stats["observation.state"]["count"] == [25]

    meta = json.loads((out / ROARM_META_FILE).read_text())
    assert meta["joint_units"] == "radians" and meta["joint_names"] == list(JOINT_NAMES)
    assert meta["image_key"] == IMAGE_KEY and meta["image_size"] == [48, 64] and meta["fps"] == 10
    assert meta["teleop_modes"] == ["hand_guiding", "scripted_expert"]
    assert [b["name"] for b in meta["source_bags"]] == ["ep_0", "ep_1", "ep_2"]
    report = json.loads((out / SYNC_REPORT_FILE).read_text())["episodes"]
    assert report[0]["grid_frames"] == 10 and report[0]["dropped_frames"] == 1
    assert report[0]["streams"]["image"]["dropped_frames"] == 1
    assert report[0]["streams"]["image"]["max_gap_s"] == pytest.approx(0.4)
    assert report[0]["streams"]["action"]["timeline"] == "receive"  # command stamps are zero
    assert report[0]["streams"]["image"]["median_latency_s"] == pytest.approx(0.002)
    assert report[1]["streams"]["image"]["backwards_steps"] == 1
    assert report[1]["streams"]["image"]["largest_backwards_s"] == pytest.approx(0.12)
    assert report[2]["action_source"] == "next_state"
    assert not list(tmp_path.glob(".dataset*")), "no temporary folder left behind"


def test_degrees_option_and_conversion_both_ways(tmp_path):
    bag = regular_episode(tmp_path / "ep", seconds=0.4, fps=10, custom=custom_data(fps=10))
    radians = convert([bag], ConvertOptions(out=tmp_path / "rad", use_videos=False, progress=False)).out
    degrees = convert([bag], ConvertOptions(out=tmp_path / "deg", use_videos=False, joint_units="degrees",
                                            progress=False)).out
    rad, deg = load(radians), load(degrees)
    assert len(rad) == len(deg) == 4  # images at 0, 100, 200, 300 ms
    for key in ("observation.state", "action"):
        r = np.stack([rad[i][key].numpy() for i in range(len(rad))]).astype(float)
        d = np.stack([deg[i][key].numpy() for i in range(len(deg))]).astype(float)
        np.testing.assert_allclose(d, urdf_to_sdk_degrees(r), rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(sdk_degrees_to_urdf(d), r, atol=1e-6)
    assert deg.meta.info["features"]["action"]["units"] == "deg"
    assert json.loads((degrees / ROARM_META_FILE).read_text())["joint_units"] == "degrees"
    # elbow at home is pi/2 rad = 90 degrees (+ the fixture's offsets)
    assert deg[0]["observation.state"][2].item() == pytest.approx(np.degrees(state_positions(0)[2]), abs=1e-4)


OTHER_JOINTS = ["base", "shoulder", "elbow", "wrist_pitch", "wrist_roll", "hand"]


def other_robot_bag(path, n=12, fps=15):
    """A bag as ``ros2 bag record`` writes it on another robot (sqlite3, Humble layout, no roarm_vla metadata):
    JPEG CompressedImage on /front_cam/image_raw/compressed, JointState on /arm/joint_states and the commands as
    JointState on /arm/joint_commands, its own joint names, and a topic of a type ROS does not know.
    Image, state and command i are all stamped t_i = i / fps (received 2, 1 and 3 ms later): frame k takes
    message k of each stream."""
    import cv2

    from bag_fixtures import T0_MS, TYPESTORE, joint_state_msg, write_ros2_record_bag

    T = TYPESTORE.types
    records = []
    for i in range(n):
        t = T0_MS * 1_000_000 + round(i * 1e9 / fps)
        stamp = T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9)
        jpeg = cv2.imencode(".jpg", image_pixels(i)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].reshape(-1)
        image = T["sensor_msgs/msg/CompressedImage"](header=T["std_msgs/msg/Header"](stamp=stamp, frame_id="cam"),
                                                     format="jpeg", data=jpeg)
        records.append((t + 2_000_000, "/front_cam/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
                        bytes(TYPESTORE.serialize_cdr(image, "sensor_msgs/msg/CompressedImage"))))
        for topic, positions, latency in (("/arm/joint_states", state_positions(i), 1),
                                          ("/arm/joint_commands", command_positions(i), 3)):
            msg = joint_state_msg(positions, t, OTHER_JOINTS)
            records.append((t + latency * 1_000_000, topic, "sensor_msgs/msg/JointState",
                            bytes(TYPESTORE.serialize_cdr(msg, "sensor_msgs/msg/JointState"))))
        records.append((t + 4_000_000, "/acme/status", "acme_msgs/msg/Status", b"\x00\x01\x00\x00\x07\x00\x00\x00"))
    return write_ros2_record_bag(path, records)


def test_other_robot_bag_with_topic_options_and_joint_map_converts_to_video(tmp_path):
    bag = other_robot_bag(tmp_path / "other_bag")
    base = [sys.executable, "-m", "roarm_training.data_cli", "convert", str(bag), "--fps", "15", "--task", "Stack",
            "--image-topic", "/front_cam/image_raw/compressed", "--state-topic", "/arm/joint_states",
            "--action-topic", "/arm/joint_commands", "--no-progress"]
    joint_map = [f"{src}={dst}" for src, dst in zip(OTHER_JOINTS, JOINT_NAMES)]

    def run(*extra, out):
        return subprocess.run([*base, "--out", str(tmp_path / out), *extra], capture_output=True, text=True,
                              timeout=300)

    unmapped = run(out="unmapped")
    assert unmapped.returncode == 1 and "lacks joint(s)" in unmapped.stderr and "--joint-map" in unmapped.stderr
    assert not (tmp_path / "unmapped").exists()
    unknown = run("--joint-map", *joint_map, "--action-topic", "/acme/status", out="unknown")
    assert unknown.returncode == 1 and "carries acme_msgs/msg/Status" in unknown.stderr
    assert not (tmp_path / "unknown").exists()

    ok = run("--joint-map", *joint_map, out="ds")
    assert ok.returncode == 0, ok.stderr
    ds = load(tmp_path / "ds")
    assert ds.meta.video_keys == [IMAGE_KEY] and list((tmp_path / "ds" / "videos").rglob("*.mp4"))
    assert len(ds) == 12 and list(ds.meta.tasks.index) == ["Stack"]
    for k in range(12):
        frame = ds[k]
        np.testing.assert_allclose(frame["observation.state"].numpy(), state_positions(k), atol=1e-6)
        np.testing.assert_allclose(frame["action"].numpy(), command_positions(k), atol=1e-6)
    for k in (0, 6, 11):  # JPEG, then AV1: close to the frame's own image, far from its neighbours'
        image = frame_image(ds[k]).astype(int)
        errors = {j: np.abs(image - image_pixels(j).astype(int)).mean() for j in range(12)}
        assert min(errors, key=errors.get) == k and errors[k] < 12, errors
    report = json.loads((tmp_path / "ds" / SYNC_REPORT_FILE).read_text())["episodes"][0]
    assert report["topics"] == {"image": "/front_cam/image_raw/compressed", "state": "/arm/joint_states",
                                "action": "command:/arm/joint_commands"}
    assert report["streams"]["image"]["rate_hz"] == pytest.approx(15.0, rel=1e-3)
    meta = json.loads((tmp_path / "ds" / ROARM_META_FILE).read_text())
    assert meta["conversion"]["options"]["joint_map"] == dict(zip(OTHER_JOINTS, JOINT_NAMES))


def test_single_mcap_file_converts_with_options(tmp_path):
    """A bare .mcap (no metadata.yaml read): fps and task come from the options, the frames are the bag's."""
    bag = regular_episode(tmp_path / "ep", seconds=0.4, fps=10, custom=custom_data(fps=10))
    with pytest.raises(ConvertError, match="no roarm_vla.fps in the bag; pass --fps"):
        convert([bag / "ep.mcap"], ConvertOptions(out=tmp_path / "ds", use_videos=False, progress=False))
    assert not (tmp_path / "ds").exists()
    ds = load(convert([bag / "ep.mcap"], ConvertOptions(out=tmp_path / "ds", fps=10, task="Push", use_videos=False,
                                                        progress=False)).out)
    assert len(ds) == 4 and list(ds.meta.tasks.index) == ["Push"]
    for k in range(4):
        np.testing.assert_allclose(ds[k]["observation.state"].numpy(), state_positions(5 * k), atol=1e-6)
        assert np.array_equal(frame_image(ds[k]), image_pixels(k))
    # --skip-bad: a bag that cannot say its fps is one bad bag, the next one (with fps in its metadata) converts
    with_fps = regular_episode(tmp_path / "with_fps", seconds=0.4, fps=10, custom=custom_data(fps=10))
    result = convert([bag / "ep.mcap", with_fps], ConvertOptions(out=tmp_path / "skipped", use_videos=False,
                                                                   skip_bad=True, progress=False), log=lambda *_: None)
    assert result.episodes_added == 1 and "no roarm_vla.fps" in result.episodes[0].skipped_reason


def test_compressed_images_and_sqlite3_storage(tmp_path):
    """Our own episode contract with PNG CompressedImage on camera/image_raw/compressed, stored as sqlite3."""
    bag = regular_episode(tmp_path / "ep", seconds=0.4, fps=10, compressed=True, storage="sqlite3",
                          custom=custom_data(fps=10))
    ds = load(convert([bag], ConvertOptions(out=tmp_path / "ds", use_videos=False, progress=False)).out)
    assert len(ds) == 4
    for k in range(4):  # PNG and PNG-in-parquet: lossless
        assert np.array_equal(frame_image(ds[k]), image_pixels(k))


def test_incomplete_episodes_skipped_rerun_up_to_date_and_append(tmp_path):
    bags = tmp_path / "bags"
    regular_episode(bags / "ep_0", seconds=0.5, fps=10, custom=custom_data(fps=10))
    regular_episode(bags / "ep_1", seconds=0.5, fps=10, custom=custom_data(fps=10))
    (bags / "ep_1" / INCOMPLETE_MARKER).write_text("")
    regular_episode(bags / "ep_2", seconds=0.5, fps=10, custom=custom_data(fps=10))
    (bags / "ep_2" / "metadata.yaml").unlink()  # killed before the writer closed
    out = tmp_path / "dataset"
    logs = []
    result = convert([bags], ConvertOptions(out=out, progress=False), log=logs.append)
    assert result.episodes_added == 1 and [s.path.name for s in result.skipped] == ["ep_1", "ep_2"]
    assert any("ep_1" in line and INCOMPLETE_MARKER in line for line in logs)
    assert any("ep_2" in line and "metadata.yaml" in line for line in logs)
    assert (bags / "ep_1" / INCOMPLETE_MARKER).exists() and (bags / "ep_2" / "ep_2.mcap").exists()

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = convert([bags], ConvertOptions(out=out, progress=False), log=logs.append)
    assert again.up_to_date and "up to date" in logs[-1]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before

    regular_episode(bags / "ep_3", seconds=0.8, fps=10, custom=custom_data(fps=10, task="Push the box"))
    with pytest.raises(ConvertError, match="--append"):
        convert([bags], ConvertOptions(out=out, progress=False))
    with pytest.raises(ConvertError, match="joint_units"):
        convert([bags], ConvertOptions(out=out, append=True, joint_units="degrees", progress=False))
    added = convert([bags], ConvertOptions(out=out, append=True, progress=False), log=logs.append)
    assert added.episodes_added == 1 and any("already in the dataset" in line for line in logs)
    ds = load(out)
    assert ds.num_episodes == 2 and len(ds) == 5 + 8
    assert sorted(ds.meta.tasks.index) == ["Pick up the white box", "Push the box"]
    assert ds[5]["task"] == "Push the box"
    np.testing.assert_allclose(ds[12]["observation.state"].numpy(), state_positions(35), atol=1e-6)
    assert json.loads((out / "meta" / "stats.json").read_text())["action"]["count"] == [13]
    meta = json.loads((out / ROARM_META_FILE).read_text())
    assert [b["episode_index"] for b in meta["source_bags"]] == [0, 1]
    assert convert([bags], ConvertOptions(out=out, append=True, progress=False)).up_to_date
    assert not list(tmp_path.glob(".dataset*"))


def _assert_refused(tmp_path, bag, match, **options):
    out = tmp_path / f"out_{bag.name}"
    with pytest.raises((BagError, ConvertError), match=match):
        convert([bag], ConvertOptions(out=out, use_videos=False, progress=False, **options))
    assert not out.exists(), "a refused conversion leaves no dataset"
    assert not list(tmp_path.glob(f".{out.name}*")), "and no temporary folder"


def test_bad_inputs_are_clear_errors_and_leave_nothing(tmp_path):
    frames = dict(image_ms=list(range(0, 301, 100)), state_ms=list(range(0, 301, 20)),
                  command_ms=list(range(0, 301, 100)), custom=custom_data(fps=10))
    # missing topic: no joint states
    bag = write_episode(tmp_path / "no_states", **{**frames, "state_ms": []})
    _assert_refused(tmp_path, bag, r"joint-state topic 'joint_states' is not in the bag \(its topics: camera")
    # missing topic chosen by option
    bag = write_episode(tmp_path / "ok", **frames)
    _assert_refused(tmp_path, bag, "image topic 'front/image' is not in the bag", image_topic="front/image")
    # empty bag
    bag = write_episode(tmp_path / "empty", image_ms=[], state_ms=[], custom=custom_data(fps=10))
    _assert_refused(tmp_path, bag, "no image topics")
    # truncated storage file
    bag = write_episode(tmp_path / "truncated", **frames)
    storage = bag / "truncated.mcap"
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    _assert_refused(tmp_path, bag, "truncated|corrupt")
    # image size changes within an episode (the dataset had already been started)
    bag = write_episode(tmp_path / "sizes", **frames, image_size_of=lambda i: (48, 64) if i < 2 else (24, 32))
    _assert_refused(tmp_path, bag, r"image size changes .* --image-size")
    # ... which --image-size resolves
    out = convert([bag], ConvertOptions(out=tmp_path / "resized", use_videos=False, image_size=(24, 32),
                                        progress=False)).out
    assert load(out)[0][IMAGE_KEY].shape == (3, 24, 32)
    # episodes of different image sizes: refused, whether in one run or appended to an existing dataset
    mixed_sizes = tmp_path / "mixed_sizes"
    shutil.copytree(tmp_path / "ok", mixed_sizes / "a_48x64")
    write_episode(mixed_sizes / "b_24x32", **frames, height=24, width=32)
    _assert_refused(tmp_path, mixed_sizes, r"images are \(24, 32\), the dataset's are \(48, 64\).*--image-size")
    existing = convert([tmp_path / "ok"], ConvertOptions(out=tmp_path / "existing", use_videos=False,
                                                         progress=False)).out
    before = {p: p.stat().st_mtime_ns for p in existing.rglob("*") if p.is_file()}
    with pytest.raises(BagError, match=r"images are \(24, 32\)"):
        convert([mixed_sizes / "b_24x32"], ConvertOptions(out=existing, use_videos=False, append=True,
                                                          progress=False))
    assert {p: p.stat().st_mtime_ns for p in existing.rglob("*") if p.is_file()} == before, "dataset untouched"
    assert load(existing).num_episodes == 1 and not list(tmp_path.glob(".existing*"))
    # stamps jumping back by more than the tolerance (a clock reset)
    bag = write_episode(tmp_path / "clock_reset", image_ms=[0, 100, 200, 300, 0, 100],
                        image_receive_ms=[2, 102, 202, 302, 402, 502], state_ms=list(range(0, 601, 20)),
                        command_ms=list(range(0, 601, 100)), custom=custom_data(fps=10))
    _assert_refused(tmp_path, bag, r"image.*jumps back by 0\.300 s")
    # a message type the converter cannot read as an image
    bag = write_episode(tmp_path / "wrong_type", **frames)
    _assert_refused(tmp_path, bag, r"'joint_states' carries sensor_msgs/msg/JointState", image_topic="joint_states")
    # no action source
    bag = write_episode(tmp_path / "no_action", **{**frames, "command_ms": [], "custom": {}})
    _assert_refused(tmp_path, bag, "no action source", task="x", fps=10)
    # a folder without bags
    (tmp_path / "nothing").mkdir()
    _assert_refused(tmp_path, tmp_path / "nothing", "holds no rosbag2")
    # --skip-bad converts what it can
    good = tmp_path / "mixed"
    shutil.copytree(tmp_path / "ok", good / "a_ok")
    shutil.copytree(tmp_path / "truncated", good / "b_truncated")
    result = convert([good], ConvertOptions(out=tmp_path / "skipbad", use_videos=False, skip_bad=True,
                                            progress=False), log=lambda *_: None)
    assert result.episodes_added == 1 and "truncated" in result.episodes[1].skipped_reason


def test_cli_converts_and_reports_errors(tmp_path):
    bag = regular_episode(tmp_path / "ep", seconds=0.3, fps=10, custom=custom_data(fps=10))
    env = dict(os.environ)
    ok = subprocess.run([sys.executable, "-m", "roarm_training.data_cli", "convert", str(bag), "--out",
                         str(tmp_path / "ds"), "--images", "--no-progress", "--tolerance-ms", "150",
                         "action=300"], capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "episode 0 <- ep: 3/3 frames kept (0 dropped)" in ok.stdout  # images at 0, 100, 200 ms
    # the sync report, per stream: messages, rate, timeline, gaps, backward stamps, dropped frames, latency
    lines = {line.split()[0]: line for line in ok.stdout.splitlines() if line.startswith("  ")}
    assert lines["image"].split()[1:] == ["camera/image_raw", "3", "msgs", "10.0", "Hz", "(header),", "max", "gap",
                                          "100", "ms,", "0", "gaps,", "0", "backwards", "(max", "0", "ms),", "0",
                                          "frames", "dropped,", "latency", "2.0", "ms"]
    assert "16 msgs   50.0 Hz (header)" in lines["state"] and "command:joint_trajectory" in lines["action"]
    saved = json.loads((tmp_path / "ds" / SYNC_REPORT_FILE).read_text())["episodes"]
    assert [e["streams"]["state"]["messages"] for e in saved] == [16]
    options = json.loads((tmp_path / "ds" / ROARM_META_FILE).read_text())["conversion"]["options"]
    assert options["tolerance_ms"] == {"image": 150.0, "state": 150.0, "action": 300.0}
    bad = subprocess.run([sys.executable, "-m", "roarm_training.data_cli", "convert", str(bag), "--out",
                          str(tmp_path / "ds2"), "--state-topic", "arm/joints"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert bad.returncode == 1 and "error:" in bad.stderr and "'arm/joints' is not in the bag" in bad.stderr


@pytest.mark.parametrize("frame_id", ["", "a", "abc", "camera_link"])  # every padding before height and data
@pytest.mark.parametrize("encoding,channels", [("rgb8", 3), ("bgra8", 4), ("mono8", 1)])
def test_image_read_from_cdr_equals_rosbags_decoding(frame_id, encoding, channels):
    from rosbags.typesys import Stores, get_typestore

    from roarm_training.bags import IMAGE_TYPE, image_from_cdr

    store = get_typestore(Stores.ROS2_JAZZY)
    header = store.types["std_msgs/msg/Header"](store.types["builtin_interfaces/msg/Time"](5, 7), frame_id)
    width, height, step = 5, 3, 5 * channels + 1  # rows padded by one byte
    pixels = np.random.default_rng(0).integers(0, 256, height * step, dtype=np.uint8)
    raw = bytes(store.serialize_cdr(store.types[IMAGE_TYPE](header, height, width, encoding, 0, step, pixels),
                                    IMAGE_TYPE))
    fast, decoded = image_from_cdr(raw), store.deserialize_cdr(raw, IMAGE_TYPE)
    assert (fast.header_stamp_ns, fast.frame_id, fast.height, fast.width, fast.encoding, fast.step) == (
        5_000_000_007, frame_id, decoded.height, decoded.width, decoded.encoding, decoded.step)
    assert fast.data == decoded.data.tobytes()
    from vla_policy_node.observation import image_to_rgb

    assert np.array_equal(image_to_rgb(fast), image_to_rgb(decoded))
    big_endian = raw[:1] + b"\x00" + raw[2:]
    assert image_from_cdr(big_endian) is None and image_from_cdr(raw[:40]) is None  # -> rosbags decodes those


def test_encoder_threads_leave_a_core_to_the_converter(tmp_path):
    cores = len(os.sched_getaffinity(0))
    assert ConvertOptions(out=tmp_path / "ds").encoder_threads == max(1, cores - 1)
    assert ConvertOptions(out=tmp_path / "ds", encoder_threads=3).encoder_threads == 3
    with pytest.raises(ConvertError, match="encoder threads"):
        ConvertOptions(out=tmp_path / "ds", encoder_threads=0)


def test_images_kept_from_the_first_read_or_read_again_give_the_same_frames(tmp_path):
    from roarm_training.bags import EpisodeBag

    bag_path = backwards_episode(tmp_path / "bags" / "ep_1")
    with EpisodeBag(bag_path) as bag:
        topic = "camera/image_raw" if "camera/image_raw" in bag.topics else "/camera/image_raw"
        raw = [r for _, r in bag.iter_raw(topic)]
        total = sum(len(r) for r in raw)
        assert bag.read_topic(topic, keep_messages=False, keep_raw_bytes=total).raw == raw
        assert bag.read_topic(topic, keep_messages=False, keep_raw_bytes=total - 1).raw is None  # over budget
        assert bag.read_topic(topic, keep_messages=False).raw is None
    for cache_mib in (0, 1):  # 0: the second pass reads the bag again
        out = tmp_path / f"ds_{cache_mib}"
        convert([bag_path], ConvertOptions(out=out, use_videos=False, progress=False, image_cache_mib=cache_mib))
        ds = load(out)
        assert len(ds) == len(BACKWARDS_IMAGES)
        for k, image in enumerate(BACKWARDS_IMAGES):
            assert np.array_equal(frame_image(ds[k]), image_pixels(image))


def test_image_crop_is_checked_written_to_the_metadata_and_refused_when_it_does_not_fit(tmp_path):
    with pytest.raises(ConvertError, match="--image-crop X Y WIDTH HEIGHT: image_crop must be .* a size > 0"):
        ConvertOptions(out=tmp_path / "ds", image_crop=(0, 0, 0, 10))
    # unset, the crop is not part of the fingerprint: datasets converted before the option keep theirs
    assert "image_crop" not in ConvertOptions(out=tmp_path / "ds").content_fields()
    bag = regular_episode(tmp_path / "bags" / "ep_0", seconds=0.5, fps=10, custom=custom_data(fps=10))  # 64x48
    out = convert([bag], ConvertOptions(out=tmp_path / "ds", use_videos=False, image_crop=(8, 4, 32, 40),
                                        image_size=(20, 16), progress=False), log=lambda *_: None).out
    meta = json.loads((out / ROARM_META_FILE).read_text())
    assert meta["image_crop"] == [8, 4, 32, 40] and meta["image_size"] == [20, 16]
    assert meta["conversion"]["options"]["image_crop"] == [8, 4, 32, 40]
    with pytest.raises((ConvertError, BagError), match="does not fit the 64x48 camera image"):
        convert([bag], ConvertOptions(out=tmp_path / "too_big", use_videos=False, image_crop=(40, 0, 32, 48),
                                      progress=False), log=lambda *_: None)
    assert not (tmp_path / "too_big").exists(), "a refused conversion leaves no dataset"
