"""roarm-vla-record: the ROS-free session (keys -> requests, feedback -> screen lines, hand-worked numbers), and the
client as a process on a pseudo-terminal driving a real episode_recorder process (keys s, k, s, d, q)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from roarm_recorder.record_session import DISCARD, KEEP, QUIT, RECORDING, START, STOPPING, RecordSession

TOPICS = ["camera/image_raw", "joint_states", "joint_trajectory"]


def test_keys_follow_the_episode_state():
    s = RecordSession()
    assert s.key("k", 0.0) is None and "no episode" in s.message  # nothing to stop yet
    assert s.key("s", 0.0) == START
    assert s.key("s", 0.1) is None and "k keeps it" in s.message  # one episode at a time
    s.goal_answered(True, 0.2)
    assert s.state == RECORDING
    assert s.key("K", 1.0) == KEEP and s.state == STOPPING  # upper case works too
    assert s.key("d", 1.1) is None  # already stopping
    s.finished(True, "episode 4 kept: 30 frames", episode_index=4)
    assert (s.kept, s.discarded, s.state, s.episode_index) == (1, 0, "idle", 4)
    assert s.key("s", 2.0) == START
    s.goal_answered(True, 2.1)
    assert s.key("d", 3.0) == DISCARD
    s.finished(False, "episode 5 discarded (discarded)", episode_index=5)
    assert (s.kept, s.discarded) == (1, 1)
    assert s.key("x", 3.5) is None and s.message.startswith("keys: s start")
    assert s.key("q", 4.0) == QUIT and s.done


def test_quit_while_recording_asks_first_then_discards():
    s = RecordSession()
    s.key("s", 0.0)
    s.goal_answered(True, 0.1)
    assert s.key("q", 1.0) is None and "q again discards" in s.message and not s.done
    assert s.key("k", 1.5) == KEEP  # changed their mind: k keeps, and disarms the quit
    s.finished(True, "kept")
    s.key("s", 2.0)
    s.goal_answered(True, 2.1)
    s.key("q", 3.0)
    assert s.key("q", 3.2) == DISCARD and s.done


def test_refused_goal_and_an_episode_that_ends_by_itself():
    s = RecordSession()
    s.key("s", 0.0)
    s.goal_answered(False, 0.1, "another episode is running")
    assert s.state == "idle" and "refused" in s.message and "another episode" in s.message
    s.key("s", 1.0)
    s.goal_answered(True, 1.1)
    s.finished(True, "episode 0 kept: 300 frames (outcome success)", episode_index=0)  # sim outcome ended it
    assert s.state == "idle" and s.kept == 1 and "s starts the next one" in s.message


def test_screen_counts_rates_and_silence_warnings():
    s = RecordSession(silence_timeout=1.0, feedback_timeout=2.0)
    s.key("s", 10.0)
    # feedback 4 s into the episode: camera 120 msgs (30/s), joints 200 (50/s), commands silent 1.5 s,
    s.feedback(7, 4.0, TOPICS, [120, 200, 60], [0.02, 0.01, 1.5], now=14.0)
    lines = s.lines(14.0)
    assert lines[0].startswith("episode 7  RECORDING") and "4.0 s" in lines[0]
    assert lines[0].endswith("waiting for episode_recorder...")  # until the ROS layer says it is connected
    assert "120 msgs" in lines[1] and "30.0 /s" in lines[1]
    assert "200 msgs" in lines[2] and "50.0 /s" in lines[2]
    assert s.warnings(14.0) == ["WARNING: joint_trajectory silent for 1.5 s"]
    # a topic never heard, once the episode is older than the silence timeout
    s.feedback(7, 4.5, TOPICS, [135, 225, 60], [0.02, 0.01, -1.0], now=14.5)
    assert s.warnings(14.5) == ["WARNING: joint_trajectory: nothing received since the episode started (4.5 s)"]
    # feedback itself stops (recorder gone): said so after feedback_timeout
    assert any("no feedback from episode_recorder for 2.5 s" in w for w in s.warnings(17.0))
    s.key("k", 17.1)
    assert s.warnings(17.2) == []  # only while recording


# ------------------------------------------------------------------------------------------------ as a process
def _read_until(fd: int, needle: str, timeout: float, seen: list[str]) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen.append(os.read(fd, 4096).decode("utf-8", "replace"))
            except OSError:
                break
            if needle in "".join(seen):
                return "".join(seen)
    raise AssertionError(f"{needle!r} not shown within {timeout:.0f} s; screen so far:\n{''.join(seen)[-3000:]}")


@pytest.mark.slow
def test_client_on_a_terminal_records_keeps_and_discards(tmp_path):
    pytest.importorskip("rclpy")
    from recorder_rig import Peer, child_env, start_node, stop_process
    from roarm_recorder.episode_bag import list_episodes

    out = tmp_path / "episodes"
    out.mkdir()
    recorder = start_node("roarm_recorder.episode_recorder_node",
                          {"output_dir": str(out), "topics": TOPICS + ["leader/joint_states"],
                           "topic_types": ["sensor_msgs/msg/Image", "sensor_msgs/msg/JointState",
                                           "trajectory_msgs/msg/JointTrajectory", "sensor_msgs/msg/JointState"],
                           "parameter_nodes": ["recorder_test_peer"]}, tmp_path / "recorder.log")
    peer = Peer()
    master, slave = pty.openpty()
    client = subprocess.Popen([sys.executable, "-m", "roarm_recorder.record_client", "--task", "Wave",
                               "--refresh", "0.1"], stdin=slave, stdout=slave, stderr=slave, env=child_env(),
                              start_new_session=True)
    os.close(slave)
    seen: list[str] = []
    try:
        peer.publish_stream(rate=30.0)
        assert peer.action.wait_for_server(timeout_sec=60.0)
        _read_until(master, "recorder connected", 60, seen)
        os.write(master, b"s")
        _read_until(master, "RECORDING", 60, seen)
        # live counts, and the unpublished leader topic warned about
        screen = _read_until(master, "leader/joint_states: nothing received", 60, seen)
        assert "camera/image_raw" in screen and "msgs" in screen
        os.write(master, b"k")
        _read_until(master, "episode 0 kept:", 60, seen)
        os.write(master, b"s")
        seen.clear()
        _read_until(master, "episode 1  RECORDING", 60, seen)
        os.write(master, b"d")
        _read_until(master, "episode 1 discarded (discarded)", 60, seen)
        os.write(master, b"q")
        _read_until(master, "episodes this session: 1 kept, 1 discarded", 60, seen)
        assert client.wait(15) == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(5)
        os.close(master)
        peer.close()
        stop_process(recorder)
    episodes = list_episodes(out)
    assert len(episodes) == 1 and episodes[0][1]  # the kept one, complete; the discarded one is gone
    assert Path(episodes[0][0]).name.startswith("episode_000000")
