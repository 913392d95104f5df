"""sim_world through real rclpy: topics, QoS, services. The arm's joints come from a joint_states publisher here
(the end-to-end test with the driver and the firmware simulator is test_end_to_end.py)."""

import math
import threading
import time

import numpy as np
import pytest
import rclpy
from roarm_common.executors import QueueAwareMultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data

from geometry_msgs.msg import PoseStamped
from roarm_description import joints
from roarm_interfaces.msg import EpisodeOutcome
from roarm_interfaces.srv import GetEpisodeOutcome, ResetEpisode
from sensor_msgs.msg import CameraInfo, Image, JointState

from roarm_sim.scene import CameraModel, draw_episode
from roarm_sim.sim_world_node import SimWorldNode


@pytest.fixture
def graph():
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = QueueAwareMultiThreadedExecutor(num_threads=4, context=context)
    nodes = []

    def add(node):
        nodes.append(node)
        executor.add_node(node)
        return node

    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield context, add
    executor.shutdown(timeout_sec=5.0)
    thread.join(timeout=5.0)
    for node in nodes:
        node.destroy_node()
    rclpy.try_shutdown(context=context)


def wait_for(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def call(client, request, timeout=10.0):
    assert client.wait_for_service(timeout_sec=timeout)
    future = client.call_async(request)
    assert wait_for(future.done, timeout)
    return future.result()


def test_world_publishes_camera_box_and_outcome_and_serves_resets(graph):
    context, add = graph
    add(SimWorldNode(context=context, parameter_overrides=[
        Parameter("reset_move_arm", value=False), Parameter("auto_start", value=False),
        Parameter("image_width", value=320), Parameter("image_height", value=240),
        Parameter("camera_rate", value=15.0), Parameter("time_limit", value=1.5)]))
    probe = add(Node("probe", context=context))
    got = {"image": [], "info": [], "box": [], "outcome": []}
    probe.create_subscription(Image, "camera/image_raw", got["image"].append, qos_profile_sensor_data)
    probe.create_subscription(CameraInfo, "camera/camera_info", got["info"].append, qos_profile_sensor_data)
    probe.create_subscription(PoseStamped, "sim/box_pose", got["box"].append, 10)
    probe.create_subscription(EpisodeOutcome, "sim/episode_outcome", got["outcome"].append, 10)
    state_pub = probe.create_publisher(JointState, "joint_states", 10)
    q = np.array([2.0, 0.0, 1.4, 0.3, 0.0, 0.0])  # turned away from the boxes, in view

    def publish_state():
        msg = JointState()
        msg.header.stamp = probe.get_clock().now().to_msg()
        msg.name, msg.position = list(joints.JOINT_NAMES), [float(v) for v in q]
        state_pub.publish(msg)

    probe.create_timer(0.02, publish_state)
    assert wait_for(lambda: len(got["image"]) >= 5 and got["info"] and got["box"])
    image = got["image"][-1]
    assert (image.width, image.height, image.encoding, image.step) == (320, 240, "rgb8", 960)
    assert image.header.frame_id == "camera_optical_frame"
    assert abs(time.time() - (image.header.stamp.sec + image.header.stamp.nanosec * 1e-9)) < 2.0
    info = got["info"][-1]
    assert info.k[0] == pytest.approx(CameraModel(width=320, height=240).fx)
    assert got["outcome"] == []  # no episode before the first reset

    reset = probe.create_client(ResetEpisode, "sim/reset_episode")
    request = ResetEpisode.Request()
    request.seed = 42
    first = call(reset, request)
    assert first.success and first.seed_used == 42
    expected = draw_episode(42).box
    assert first.box_pose.pose.position.x == pytest.approx(expected.x)
    assert first.box_pose.header.frame_id == "base_link"
    # the box pose topic follows the reset
    assert wait_for(lambda: got["box"][-1].pose.position.x == pytest.approx(expected.x))
    # the episode runs, nobody picks: timeout after time_limit
    assert wait_for(lambda: got["outcome"] and got["outcome"][-1].status == EpisodeOutcome.RUNNING, 5.0)
    assert wait_for(lambda: got["outcome"][-1].status == EpisodeOutcome.TIMEOUT, 5.0)
    latest = got["outcome"][-1]
    assert latest.seed == 42 and latest.elapsed >= 1.5 and not latest.grasped
    outcome = call(probe.create_client(GetEpisodeOutcome, "sim/get_outcome"), GetEpisodeOutcome.Request()).outcome
    assert outcome.status == EpisodeOutcome.TIMEOUT and "time limit" in outcome.detail
    # a reset with a negative seed takes the world's next seed: a new box pose
    request.seed = -1
    second = call(reset, request)
    answered = time.time()
    assert second.success and second.seed_used == 43 and second.episode_index == first.episode_index + 1
    assert math.dist((second.box_pose.pose.position.x, second.box_pose.pose.position.y),
                     (expected.x, expected.y)) > 1e-3
    # the white box is where the new pose says, in the published image
    assert wait_for(lambda: got["box"][-1].pose.position.x == pytest.approx(second.box_pose.pose.position.x))
    def stamp(msg):
        return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9

    assert wait_for(lambda: stamp(got["image"][-1]) > answered + 0.05)  # rendered after the reset
    img = np.frombuffer(bytes(got["image"][-1].data), np.uint8).reshape(240, 320, 3)
    ys, xs = np.nonzero(np.all(img >= 190, axis=2) & (img.max(axis=2) - img.min(axis=2) < 20))
    p = second.box_pose.pose.position
    u, v = CameraModel(width=320, height=240).project(np.array([[p.x, p.y, p.z]]))[0][0]
    assert math.dist((xs.mean(), ys.mean()), (u, v)) < 4.0
