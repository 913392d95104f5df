"""Every custom message, service and action of roarm_interfaces crosses a process boundary through real rclpy
(Fast DDS): this process publishes / calls, interface_echo_peer.py (a child process) echoes / serves."""

import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.action import ActionClient  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402

from roarm_interfaces.action import MoveJoints  # noqa: E402
from roarm_interfaces.msg import ActionChunk, EpisodeOutcome  # noqa: E402
from roarm_interfaces.srv import GetEpisodeOutcome, ResetEpisode, SetTask, StartEpisode, StopEpisode  # noqa: E402

PEER = Path(__file__).with_name("interface_echo_peer.py")
DISCOVERY_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def ros():
    peer = subprocess.Popen([sys.executable, str(PEER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert peer.stdout.readline().strip() == "READY", "peer process did not start"
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("interface_test_client", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    stop = threading.Event()

    def spin():  # own loop: stop it and join it before tearing down, so no callback runs into a dying context
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    yield node
    stop.set()
    spinner.join(timeout=5.0)
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)
    peer.stdin.close()
    try:
        peer.wait(timeout=10)
    except subprocess.TimeoutExpired:
        peer.kill()


def wait_for(predicate, timeout=DISCOVERY_TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def round_trip(node, msg_type, message, in_topic, echo_topic):
    received = []
    sub = node.create_subscription(msg_type, echo_topic, received.append, 10)
    pub = node.create_publisher(msg_type, in_topic, 10)
    try:
        wait_for(lambda: pub.get_subscription_count() > 0 and sub.get_publisher_count() > 0,
                 what=f"peer on {in_topic}/{echo_topic}")
        # Re-publish until the echo arrives: the peer's reader may match a moment after we see it.
        deadline = time.monotonic() + DISCOVERY_TIMEOUT
        while not received and time.monotonic() < deadline:
            pub.publish(message)
            time.sleep(0.2)
        assert received, f"no echo on {echo_topic}"
        return received[0]
    finally:
        node.destroy_subscription(sub)
        node.destroy_publisher(pub)


def call(node, srv_type, name, request):
    client = node.create_client(srv_type, name)
    try:
        assert client.wait_for_service(timeout_sec=DISCOVERY_TIMEOUT), f"service {name} not available"
        future = client.call_async(request)
        wait_for(future.done, timeout=10.0, what=f"response of {name}")
        return future.result()
    finally:
        node.destroy_client(client)


def test_action_chunk_round_trip(ros):
    msg = ActionChunk()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1234, 5678
    msg.joint_names = ["base_link_to_link1", "link1_to_link2"]
    msg.step_period = 1 / 30
    msg.num_steps = 3
    msg.positions = [0.1, -0.2, 0.3, -0.4, 0.5, math.pi]
    msg.inference_latency = 0.42
    msg.sequence = 7
    msg.task = "Pick up the white box"
    echo = round_trip(ros, ActionChunk, msg, "in/action_chunk", "echo/action_chunk")
    assert (echo.header.stamp.sec, echo.header.stamp.nanosec) == (1234, 5678)
    assert list(echo.joint_names) == msg.joint_names
    assert echo.num_steps == 3 and echo.sequence == 7 and echo.task == msg.task
    assert list(echo.positions) == pytest.approx(msg.positions)
    assert echo.step_period == pytest.approx(1 / 30) and echo.inference_latency == pytest.approx(0.42)


def test_episode_outcome_round_trip_and_get_outcome_service(ros):
    msg = EpisodeOutcome(episode_index=3, seed=99, status=EpisodeOutcome.SUCCESS, elapsed=4.5, time_limit=20.0,
                         box_height=0.08, grasped=True, detail="box lifted 0.08 m")
    echo = round_trip(ros, EpisodeOutcome, msg, "in/episode_outcome", "echo/episode_outcome")
    assert (echo.episode_index, echo.seed, echo.status, echo.grasped) == (3, 99, EpisodeOutcome.SUCCESS, True)
    assert echo.detail == "box lifted 0.08 m" and echo.box_height == pytest.approx(0.08)
    # The peer serves the last outcome it received.
    outcome = call(ros, GetEpisodeOutcome, "get_outcome", GetEpisodeOutcome.Request()).outcome
    assert outcome.status == EpisodeOutcome.SUCCESS and outcome.seed == 99


def test_recorder_services(ros):
    started = call(ros, StartEpisode, "start_episode", StartEpisode.Request(task="Pick up the white box"))
    assert started.success and "Pick up the white box" in started.message
    refused = call(ros, StartEpisode, "start_episode", StartEpisode.Request(task=""))
    assert not refused.success
    kept = call(ros, StopEpisode, "stop_episode", StopEpisode.Request(keep=True))
    assert kept.success and kept.message == "kept" and kept.message_count == 42
    dropped = call(ros, StopEpisode, "stop_episode", StopEpisode.Request(keep=False))
    assert dropped.message == "discarded" and dropped.message_count == 0
    assert dropped.episode_index == kept.episode_index + 1


def test_set_task_and_reset_episode(ros):
    first = call(ros, SetTask, "set_task", SetTask.Request(task="stack the cubes"))
    second = call(ros, SetTask, "set_task", SetTask.Request(task="Pick up the white box"))
    assert first.success and second.previous_task == "stack the cubes"
    reset = call(ros, ResetEpisode, "reset_episode", ResetEpisode.Request(seed=25))
    assert reset.seed_used == 25 and reset.box_pose.header.frame_id == "base_link"
    assert reset.box_pose.pose.position.x == pytest.approx(0.025)


def test_move_joints_action_with_feedback_and_cancel(ros):
    client = ActionClient(ros, MoveJoints, "move_joints")
    try:
        assert client.wait_for_server(timeout_sec=DISCOVERY_TIMEOUT)
        feedback = []
        goal = MoveJoints.Goal(joint_names=["link1_to_link2"], positions=[0.5], duration=0.5, tolerance=0.01)
        send = client.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
        wait_for(send.done, timeout=10.0, what="goal acceptance")
        handle = send.result()
        assert handle.accepted
        result_future = handle.get_result_async()
        wait_for(result_future.done, timeout=10.0, what="action result")
        result = result_future.result().result
        assert result.success and list(result.final_positions) == pytest.approx([0.5])
        assert feedback and feedback[-1].progress == pytest.approx(1.0)
        assert [round(f.progress, 3) for f in feedback] == sorted(round(f.progress, 3) for f in feedback)

        long_goal = MoveJoints.Goal(joint_names=["link1_to_link2"], positions=[1.0], duration=5.0)
        send = client.send_goal_async(long_goal)
        wait_for(send.done, timeout=10.0, what="second goal acceptance")
        handle = send.result()
        cancel = handle.cancel_goal_async()
        wait_for(cancel.done, timeout=10.0, what="cancel response")
        result_future = handle.get_result_async()
        wait_for(result_future.done, timeout=10.0, what="canceled result")
        assert result_future.result().result.message == "canceled"
    finally:
        client.destroy()
